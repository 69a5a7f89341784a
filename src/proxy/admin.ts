// The proxy's own HTTP endpoints. 15021 `/healthz/ready`: ready only once the first certificate and
// the first config arrived. 15020 `/stats/prometheus`, and the app's probes rewritten by the injector
// (`/app-health/<container>/{livez,readyz,startupz}`), run here against the app over loopback so that
// kubelet probes keep working under STRICT mTLS (the kubelet speaks plaintext from the node), and
// `POST /quitquitquit` from loopback, which stops the proxy so that a Job with a classic sidecar can finish.
import http from 'node:http';
import type * as http2 from 'node:http2';
import { http2 as loadHttp2 } from './lazy.ts';
import https from 'node:https';
import net from 'node:net';
import type { Registry } from 'prom-client';
import { createProxyLogger, type ProxyLogger as Logger } from './log.ts';
import { plainIp } from './types.ts';

export const STATS_PORT = 15020;
export const READY_PORT = 15021;

/** Only these paths are probes (pilot-agent's rule, without the lifecycle hooks). */
export const APP_HEALTH_PATH = /^\/app-health\/[^/]+\/(livez|readyz|startupz)$/;

/** POST here from inside the pod stops the proxy (Istio's name, so Job scripts written for Istio work). */
export const QUIT_PATH = '/quitquitquit';

type ProbePort = number | string;

/** The original probe as in the pod spec (the injector's KUBE_APP_PROBERS map values). */
export type AppProbe = { timeoutSeconds?: number } & (
  | { httpGet: { port: ProbePort; path?: string; scheme?: string; host?: string; httpHeaders?: { name: string; value: string }[] } }
  | { tcpSocket: { port: ProbePort; host?: string } }
  | { grpc: { port: number; service?: string } }
);

export type Readiness = { ready: true } | { ready: false; reason: string };

export interface AdminOptions {
  registry: Registry;
  readiness: () => Readiness;
  /** Keyed by path, e.g. `/app-health/web/livez`. */
  probes?: Readonly<Record<string, AppProbe>>;
  /** Where the app is probed unless the probe names a host; default 127.0.0.1. */
  probeHost?: string;
  logger?: Logger;
  /** `POST /quitquitquit` from inside the pod: the proxy stops (how a classic-sidecar Job ends it; Istio's endpoint). */
  onQuit?: () => void;
}

export interface ProbeResult {
  ok: boolean;
  detail: string;
}

const DEFAULT_PROBE_TIMEOUT_S = 1;

export class AdminServer {
  readonly stats: http.Server;
  readonly ready: http.Server;
  private readonly options: AdminOptions;
  private readonly logger: Logger;

  constructor(options: AdminOptions) {
    this.options = options;
    this.logger = options.logger ?? createProxyLogger({ context: { component: 'proxy-admin' } });
    this.stats = http.createServer((req, res) => void this.onStats(req, res));
    this.ready = http.createServer((req, res) => this.onReady(req, res));
  }

  async listen(ports: { stats?: number; ready?: number; host?: string } = {}): Promise<{ stats: number; ready: number }> {
    const start = (server: http.Server, port: number): Promise<number> =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, ports.host, () => {
          server.removeListener('error', reject);
          resolve((server.address() as net.AddressInfo).port);
        });
      });
    const [stats, ready] = await Promise.all([start(this.stats, ports.stats ?? STATS_PORT), start(this.ready, ports.ready ?? READY_PORT)]);
    return { stats, ready };
  }

  async close(): Promise<void> {
    const stop = (server: http.Server): Promise<void> =>
      new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      });
    await Promise.all([stop(this.stats), stop(this.ready)]);
  }

  private onReady(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (pathOf(req.url) !== '/healthz/ready') return text(res, 404, 'not found\n');
    let state: Readiness;
    try {
      state = this.options.readiness();
    } catch (err) {
      state = { ready: false, reason: (err as Error).message };
    }
    if (state.ready) text(res, 200, 'ready\n');
    else text(res, 503, `not ready: ${state.reason}\n`);
  }

  private async onStats(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = pathOf(req.url);
    if (path === '/stats/prometheus') {
      try {
        const body = await this.options.registry.metrics();
        res.writeHead(200, { 'content-type': this.options.registry.contentType });
        res.end(body);
      } catch (err) {
        text(res, 500, `metrics failed: ${(err as Error).message}\n`);
      }
      return;
    }
    if (path === QUIT_PATH && this.options.onQuit) return this.onQuitRequest(req, res, this.options.onQuit);
    if (!APP_HEALTH_PATH.test(path)) return text(res, 404, 'not found\n');
    const probe = this.options.probes?.[path];
    if (!probe) return text(res, 404, `no probe for ${path}\n`);
    const result = await runProbe(probe, this.options.probeHost ?? '127.0.0.1');
    if (!result.ok) this.logger.debug('app probe failed', { path, detail: result.detail });
    text(res, result.ok ? 200 : 503, `${result.detail}\n`);
  }

  private onQuitRequest(req: http.IncomingMessage, res: http.ServerResponse, quit: () => void): void {
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return text(res, 405, `${QUIT_PATH} takes POST\n`);
    }
    // 15020 is reachable from the node (kubelet probes): only a process in the pod's own network namespace may stop the proxy.
    if (!isLoopback(req.socket.remoteAddress)) return text(res, 403, `${QUIT_PATH} is only accepted from inside the pod (loopback)\n`);
    this.logger.info('exit requested on /quitquitquit');
    res.once('finish', quit);
    text(res, 200, 'OK\n');
  }
}

function isLoopback(address: string | undefined): boolean {
  const ip = plainIp(address);
  return ip.startsWith('127.') || ip === '::1';
}

function pathOf(url: string | undefined): string {
  const target = url ?? '/';
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

function text(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function portNumber(port: ProbePort): number {
  const n = typeof port === 'number' ? port : Number(port);
  // Named ports are resolved to numbers by the injector; one left here cannot be probed.
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`probe port ${JSON.stringify(port)} is not a port number`);
  return n;
}

/** Runs one probe as the kubelet would: HTTP 200-399, TCP connect, or gRPC health SERVING. */
export async function runProbe(probe: AppProbe, defaultHost: string): Promise<ProbeResult> {
  const timeoutMs = (probe.timeoutSeconds ?? DEFAULT_PROBE_TIMEOUT_S) * 1000;
  try {
    if ('httpGet' in probe) return await httpProbe(probe.httpGet, defaultHost, timeoutMs);
    if ('tcpSocket' in probe) return await tcpProbe(probe.tcpSocket.host || defaultHost, portNumber(probe.tcpSocket.port), timeoutMs);
    if ('grpc' in probe) return await grpcProbe(defaultHost, portNumber(probe.grpc.port), probe.grpc.service ?? '', timeoutMs);
    return { ok: false, detail: 'unsupported probe' };
  } catch (err) {
    return { ok: false, detail: (err as Error).message };
  }
}

function httpProbe(spec: Extract<AppProbe, { httpGet: unknown }>['httpGet'], defaultHost: string, timeoutMs: number): Promise<ProbeResult> {
  const secure = (spec.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
  const headers: Record<string, string> = { 'user-agent': 'kube-probe/cinch', accept: '*/*' };
  for (const { name, value } of spec.httpHeaders ?? []) headers[name.toLowerCase()] = value;
  const port = portNumber(spec.port);
  return new Promise((resolve) => {
    const options = {
      host: spec.host || defaultHost,
      port,
      path: spec.path || '/',
      method: 'GET',
      headers,
      agent: false as const,
      timeout: timeoutMs,
    };
    // The kubelet does not verify the app's certificate, so neither do we.
    const req = secure ? https.request({ ...options, rejectUnauthorized: false }) : http.request(options);
    req.on('response', (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve({ ok: status >= 200 && status < 400, detail: `HTTP ${status}` });
      req.destroy();
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ok: false, detail: err.message }));
    req.end();
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no connection within ${timeoutMs} ms`)));
    socket.once('connect', () => {
      resolve({ ok: true, detail: `TCP ${port} open` });
      socket.destroy();
    });
    socket.once('error', (err) => resolve({ ok: false, detail: err.message }));
  });
}

const SERVING = 1;

/** grpc.health.v1.Health/Check over h2c, framed by hand: one length-prefixed protobuf message each way. */
function grpcProbe(host: string, port: number, service: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const session = loadHttp2().connect(`http://${host.includes(':') ? `[${host}]` : host}:${port}`);
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `no answer within ${timeoutMs} ms` }), timeoutMs);
    session.on('error', (err: Error) => finish({ ok: false, detail: err.message }));
    // HealthCheckRequest { string service = 1; }
    const name = Buffer.from(service, 'utf8');
    const message = name.length ? Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]) : Buffer.alloc(0);
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    const stream = session.request({
      ':method': 'POST',
      ':path': '/grpc.health.v1.Health/Check',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks: Buffer[] = [];
    let grpcStatus: string | undefined;
    stream.on('response', (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) grpcStatus = String(headers['grpc-status']);
    });
    stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
      if (trailers['grpc-status'] !== undefined) grpcStatus = String(trailers['grpc-status']);
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', (err: Error) => finish({ ok: false, detail: err.message }));
    stream.on('end', () => {
      if (grpcStatus !== '0') return finish({ ok: false, detail: `gRPC status ${grpcStatus ?? 'missing'}` });
      const status = healthStatus(Buffer.concat(chunks));
      finish(status === SERVING ? { ok: true, detail: 'SERVING' } : { ok: false, detail: `gRPC health status ${status ?? 'unreadable'}` });
    });
    stream.end(frame);
  });
}

function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

/** HealthCheckResponse { ServingStatus status = 1; } from one gRPC message; 0 (UNKNOWN) when absent. */
export function healthStatus(body: Buffer): number | undefined {
  if (body.length < 5 || body[0] !== 0) return undefined;
  const length = body.readUInt32BE(1);
  if (body.length < 5 + length) return undefined;
  let status = 0;
  for (let pos = 5; pos < 5 + length; ) {
    const key = body[pos++];
    const wire = key & 7;
    let value = 0;
    if (wire === 0) {
      for (let shift = 0; pos < 5 + length; shift += 7) {
        const b = body[pos++];
        value += (b & 0x7f) * 2 ** shift;
        if (!(b & 0x80)) break;
      }
      if (key >> 3 === 1) status = value;
    } else if (wire === 2) {
      let len = 0;
      for (let shift = 0; pos < 5 + length; shift += 7) {
        const b = body[pos++];
        len += (b & 0x7f) * 2 ** shift;
        if (!(b & 0x80)) break;
      }
      pos += len;
    } else return undefined;
  }
  return status;
}
