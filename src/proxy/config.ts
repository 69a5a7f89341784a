// What the control plane sends each proxy over the config stream (GET /v1/config on 15012, mTLS with
// the workload certificate), and the client that keeps it. The proxy compiles the policies itself with
// the same core as `cinch authz check`, so one evaluator decides everywhere.
import { EventEmitter } from 'node:events';
import https from 'node:https';
import type { AuthorizationPolicy, PeerAuthentication } from '../policy/index.ts';
import type { ProxyLogger as Logger } from './log.ts';
import { splitHostPort } from './agent.ts';
import { retryDelayMs } from './rotation.ts';
import type { MeshCredentials } from './types.ts';

export const CONFIG_PATH = '/v1/config';

export interface MeshedEndpoint {
  /** SPIFFE IDs (`spiffe://…`) a server at this address may present. */
  identities: string[];
  /** For metric labels. */
  workload?: { name?: string; namespace?: string };
  service?: string;
  /**
   * The destination's own PeerAuthentication turns mTLS off (DISABLE): callers must speak plaintext, as
   * Istio infers from the destination's policy. `disabled` is the workload-wide answer; `exceptPorts` the
   * target ports where port-level policy says the opposite.
   */
  mtls?: { disabled: boolean; exceptPorts?: number[] };
}

export interface ProxyConfig {
  /** Changes whenever anything below changes; the proxy ignores a push with the version it has. */
  version: string;
  workload: { namespace: string; name: string; serviceAccount: string; labels: Record<string, string> };
  trustDomain: string;
  rootNamespace: string;
  /** Roots (PEM) peers must chain to; several during root rotation. */
  trustBundle: string[];
  /** Valid policies of the mesh root namespace and the workload's namespace (the proxy selects and compiles). */
  peerAuthentications: PeerAuthentication[];
  authorizationPolicies: AuthorizationPolicy[];
  /** Pod and service IPs of meshed workloads → who may answer there. */
  meshedDestinations: Record<string, MeshedEndpoint>;
}

/** One line of the NDJSON stream. Heartbeats keep idle connections (and NATs) alive. */
export type ConfigMessage = { type: 'config'; config: ProxyConfig } | { type: 'heartbeat' } | { type: 'error'; error: { code: string; message: string } };

export interface ConfigClientOptions {
  /** host:port of the control plane's 15012. */
  address: string;
  podName: string;
  credentials: () => MeshCredentials | undefined;
  logger: Logger;
  /** No heartbeat or config for this long: reconnect. */
  idleTimeoutMs?: number;
}

/**
 * Keeps a config stream open; emits 'config' for every new version. When the control plane is
 * unreachable the last good config stays in force (nothing is emitted until a new one arrives).
 */
export class ConfigClient extends EventEmitter<{ config: [ProxyConfig] }> {
  private last?: ProxyConfig;
  private req?: ReturnType<typeof https.request>;
  private timer?: NodeJS.Timeout;
  private attempts = 0;
  private stopped = true;
  private readonly opts: ConfigClientOptions;

  constructor(opts: ConfigClientOptions) {
    super();
    this.opts = opts;
  }

  get current(): ProxyConfig | undefined {
    return this.last;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** Reconnect now (e.g. after a certificate rotation, so the control plane sees the fresh identity). */
  reconnect(): void {
    if (this.stopped) return;
    this.req?.destroy();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.req?.destroy();
  }

  private retry(why: string): void {
    if (this.stopped) return;
    const delay = retryDelayMs(this.attempts++, { baseMs: 500, maxMs: 30_000 });
    this.opts.logger.warn('config stream interrupted; keeping the last config', { why, retryInMs: delay, version: this.last?.version });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
    this.timer.unref();
  }

  private connect(): void {
    const credentials = this.opts.credentials();
    if (!credentials) return this.retry('no workload certificate yet');
    const [host, port] = splitHostPort(this.opts.address);
    const req = https.request({
      host,
      port: Number(port),
      path: `${CONFIG_PATH}?pod=${encodeURIComponent(this.opts.podName)}`,
      method: 'GET',
      key: credentials.keyPem,
      cert: credentials.certChainPem,
      ca: [...credentials.trustBundle],
      servername: /^[\d.]+$|:/.test(host) ? undefined : host,
      headers: { accept: 'application/x-ndjson' },
      agent: false,
    });
    this.req = req;
    const idleMs = this.opts.idleTimeoutMs ?? 45_000;
    req.setTimeout(idleMs, () => req.destroy(new Error(`no message for ${idleMs} ms`)));
    req.on('error', (err) => {
      if (this.req === req) this.retry(err.message);
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c.slice(0, 500)));
        res.on('end', () => this.retry(`control plane answered ${res.statusCode}: ${text.trim()}`));
        return;
      }
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) this.handle(line);
        }
      });
      res.on('end', () => {
        if (this.req === req) this.retry('stream ended');
      });
      res.on('error', () => undefined); // 'error' on req reports it
    });
    req.end();
  }

  private handle(line: string): void {
    let message: ConfigMessage;
    try {
      message = JSON.parse(line) as ConfigMessage;
    } catch {
      this.opts.logger.warn('unparsable config message ignored', { bytes: line.length });
      return;
    }
    if (message.type === 'config') {
      this.attempts = 0;
      if (message.config.version === this.last?.version) return;
      this.last = message.config;
      this.opts.logger.info('config received', { version: message.config.version, destinations: Object.keys(message.config.meshedDestinations).length });
      this.emit('config', message.config);
    } else if (message.type === 'error') {
      this.opts.logger.warn('control plane refused the config stream', { code: message.error.code, message: message.error.message });
    }
  }
}
