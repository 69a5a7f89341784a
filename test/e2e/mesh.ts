// A small mesh in network namespaces, for end-to-end tests of the proxy and the policies:
// the real control plane (in the test's own namespace, on loopback, against the test API server),
// "pods" as network namespaces on one LAN, each with the real `cinch init` rules, a small HTTP app
// and a real `cinch proxy` running as uid 1337, and the Kubernetes objects the control plane knows
// them by (ServiceAccount, Pod with status.podIP; there is no kubelet).
//
//   const mesh = await Mesh.start({ name: 'mtls' });        // in before(); mesh.cleanup() in after()
//   const server = await mesh.addPod({ label: 'server', meshed: true, app: true });
//   const client = await mesh.addPod({ label: 'client', meshed: true });
//   const outsider = await mesh.addPod({ label: 'outsider', meshed: false });
//   const [res] = await client.request(`http://${server.ip}:8080/hello`);
//
// Network: a bridge in its own namespace joins every pod and a "cp" namespace. The control plane
// listens on 127.0.0.1 (free ports) in the host namespace and is reached from the LAN at
// <CP_IP>:15012 through a relay over a Unix socket (cp namespace → socket → 127.0.0.1), so no
// address is ever added to the host's namespace and all traffic stays in namespaces the test made.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import type { V1CustomResourceDefinition, V1Pod } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { NODE, NetnsLab, REPO_ROOT, hasCommand, netnsUnsupportedReason } from './netns.ts';
import type { Netns, RunResult, Spawned } from './netns.ts';
import { freePort } from '../support/ports.ts';

export const PROXY_UID = 1337;
/** The uid apps and test clients run as: any uid but the proxy's, so their traffic is captured. */
export const APP_UID = 1000;
export const APP_PORT = 8080;
export const SUBNET = '10.78.0';
export const CP_IP = `${SUBNET}.254`;
export const CA_PORT_IN_MESH = 15012;
export const TLS_MODE_LABEL = 'security.cinch.dev/tls-mode';
const SECURITY_GROUP = 'security.istio.io';

// ---------------------------------------------------------------------------------------------
// Skips

/** Why mesh tests cannot run here (a skip message), or undefined. */
export function meshSkipReason(): string | undefined {
  const netns = netnsUnsupportedReason();
  if (netns) return netns;
  if (!hasCommand('iptables-nft-restore') && !hasCommand('iptables-legacy-restore') && !hasCommand('iptables-restore')) {
    return 'iptables is not installed: apt-get install -y iptables';
  }
  if (!hasCommand('setpriv')) return 'setpriv (util-linux) is not installed';
  if (!process.env.KUBECONFIG) return 'KUBECONFIG is not set: run with --test-global-setup=test/cluster/global-setup.ts (make test / make e2e)';
  return undefined;
}

/** Why packet captures cannot be taken (tests then check the proxies' metrics only). */
export function captureUnsupportedReason(): string | undefined {
  return hasCommand('tcpdump') ? undefined : 'tcpdump is not installed: apt-get install -y tcpdump';
}

// ---------------------------------------------------------------------------------------------
// Progress

const started = Date.now();
/** One progress line on stderr, with the seconds since the file started: long tests stay followable. */
export function step(message: string): void {
  process.stderr.write(`[mesh +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Scripts run inside the namespaces (as ES modules given as source text; arguments as JSON)

// The app: HTTP/1.1 on the given port, `hello from <name>` plus the path, one JSON line per request
// on stdout (so a test can tell exactly which requests reached it), long keep-alive.
const APP = `
import http from 'node:http';
const { port, name } = JSON.parse(process.argv[1]);
let n = 0;
const server = http.createServer((req, res) => {
  n++;
  const seen = { n, method: req.method, url: req.url, remote: req.socket.remoteAddress, xfcc: req.headers['x-forwarded-client-cert'] };
  process.stdout.write('REQ ' + JSON.stringify(seen) + '\\n');
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-app': name });
    res.end('hello from ' + name + ' ' + req.url + '\\n');
  });
});
server.keepAliveTimeout = 600000;
server.headersTimeout = 60000;
server.requestTimeout = 0;
server.listen(port, '0.0.0.0', () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
`;

// One or more requests, in sequence, on one keep-alive connection or each on a new one.
const REQUEST = `
import http from 'node:http';
const o = JSON.parse(process.argv[1]);
const agent = o.keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
const out = [];
for (let i = 0; i < (o.count ?? 1); i++) {
  const t0 = performance.now();
  out.push(await new Promise((resolve) => {
    const req = http.request(o.url, { method: o.method ?? 'GET', headers: o.headers ?? {}, agent, timeout: o.timeoutMs ?? 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers, ms: performance.now() - t0 }));
      res.on('error', (e) => resolve({ error: e.code ?? e.message, ms: performance.now() - t0 }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('no answer in ' + (o.timeoutMs ?? 5000) + ' ms'), { code: 'TIMEOUT' })));
    req.on('error', (e) => resolve({ error: e.code ?? e.message, ms: performance.now() - t0 }));
    req.end(o.body);
  }));
}
if (agent) agent.destroy();
console.log(JSON.stringify(out));
`;

// Requests every intervalMs on new connections, one JSON line each ({t: end time in epoch ms, status|error}),
// until durationMs has passed or a stop condition is met.
const WATCH = `
import http from 'node:http';
const o = JSON.parse(process.argv[1]);
const end = Date.now() + o.durationMs;
// SIGTERM ends the loop after the request in flight has its line (so every request sent is reported).
let stopping = false;
process.on('SIGTERM', () => (stopping = true));
const one = () => new Promise((resolve) => {
  const req = http.request(o.url, { agent: false, timeout: o.timeoutMs ?? 2000, headers: o.headers ?? {} }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d) => (body += d));
    res.on('end', () => resolve({ status: res.statusCode, body: body.slice(0, 200) }));
    res.on('error', (e) => resolve({ error: e.code ?? e.message }));
  });
  req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
  req.on('error', (e) => resolve({ error: e.code ?? e.message }));
  req.end();
});
while (!stopping && Date.now() < end) {
  const t0 = Date.now();
  const r = await one();
  const line = { t0, t: Date.now(), ...r };
  console.log(JSON.stringify(line));
  if (o.stopStatus !== undefined && r.status === o.stopStatus) break;
  if (o.stopError && r.error) break;
  await new Promise((res) => setTimeout(res, Math.max(0, o.intervalMs - (Date.now() - t0))));
}
process.exit(0);
`;

// Continuous load: keep-alive workers (each one connection, reused as long as it lives) and
// new-connection workers; a progress line every reportMs and a final summary, failures itemised.
const LOAD = `
import http from 'node:http';
const o = JSON.parse(process.argv[1]);
const end = Date.now() + o.durationMs;
const stats = { ok: 0, failed: 0, byKind: { keepAlive: 0, newConnection: 0 }, failures: [], sockets: [] };
function request(agent, kind, socketInfo) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const req = http.request(o.url, { agent, timeout: o.timeoutMs ?? 5000, headers: { 'x-load': kind } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        if (res.statusCode === 200 && body.startsWith(o.expectBody)) { stats.ok++; stats.byKind[kind]++; }
        else { stats.failed++; stats.failures.push({ t: t0, kind, status: res.statusCode, body: body.slice(0, 120) }); }
        resolve();
      });
      res.on('error', (e) => { stats.failed++; stats.failures.push({ t: t0, kind, error: e.code ?? e.message }); resolve(); });
    });
    req.on('socket', (s) => {
      if (!socketInfo || s.__seen) return;
      s.__seen = true;
      const info = { kind, opened: Date.now(), closed: null, requests: 0 };
      stats.sockets.push(info);
      s.__info = info;
      s.once('close', () => (info.closed = Date.now()));
    });
    req.on('finish', () => { if (req.socket && req.socket.__info) req.socket.__info.requests++; });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e) => { stats.failed++; stats.failures.push({ t: t0, kind, error: e.code ?? e.message }); resolve(); });
    req.end();
  });
}
async function worker(kind, pauseMs) {
  const agent = kind === 'keepAlive' ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
  while (Date.now() < end) {
    await request(agent, kind, true);
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  if (agent) agent.destroy();
}
const timer = setInterval(() => console.log(JSON.stringify({ progress: { t: Date.now(), ok: stats.ok, failed: stats.failed, sockets: stats.sockets.length } })), o.reportMs ?? 10000);
const workers = [];
for (let i = 0; i < o.keepAliveWorkers; i++) workers.push(worker('keepAlive', o.keepAlivePauseMs ?? 10));
for (let i = 0; i < o.newConnectionWorkers; i++) workers.push(worker('newConnection', o.newConnectionPauseMs ?? 100));
await Promise.all(workers);
clearInterval(timer);
stats.failures = stats.failures.slice(0, 50);
console.log(JSON.stringify({ summary: stats }));
`;

// A byte relay: listen (TCP host:port or a Unix socket path) and connect each client to the target.
const RELAY = `
import fs from 'node:fs';
const { listen, target } = JSON.parse(process.argv[1]);
const server = net.createServer((client) => {
  const upstream = net.connect(target);
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
});
if (listen.path) fs.rmSync(listen.path, { force: true });
server.listen(listen, () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
`;

// GET on loopback inside a namespace (admin and readiness ports are never captured).
const LOCAL_GET = `
const [url, timeoutMs] = process.argv.slice(1);
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(Number(timeoutMs)) });
  console.log(JSON.stringify({ status: res.status, body: await res.text() }));
} catch (err) {
  console.log(JSON.stringify({ error: err.cause?.code ?? err.name ?? String(err) }));
}
`;

// ---------------------------------------------------------------------------------------------
// Results

export interface HttpResult {
  status?: number;
  body?: string;
  headers?: Record<string, string>;
  error?: string;
  ms?: number;
}

export interface WatchLine extends HttpResult {
  /** When the request started and ended (epoch ms, same clock as the test process). */
  t0: number;
  t: number;
}

export interface AppRequest {
  n: number;
  method: string;
  url: string;
  remote: string;
  xfcc?: string;
}

export interface LoadSummary {
  ok: number;
  failed: number;
  byKind: { keepAlive: number; newConnection: number };
  failures: { t: number; kind: string; status?: number; error?: string; body?: string }[];
  sockets: { kind: string; opened: number; closed: number | null; requests: number }[];
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format → samples (enough for counters and gauges with quoted label values). */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples of one metric whose labels include all of `match`. */
export function sumOf(samples: readonly Sample[], name: string, match: Record<string, string | RegExp> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => (typeof v === 'string' ? s.labels[k] === v : v.test(s.labels[k] ?? ''))))
    .reduce((a, s) => a + s.value, 0);
}

// ---------------------------------------------------------------------------------------------
// Packet captures

export interface TcpSegment {
  time: number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  flags: number;
  payload: Buffer;
}

/** Reads a pcap file (Ethernet or Linux cooked, IPv4) into TCP segments. */
export function parsePcap(buf: Buffer): TcpSegment[] {
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const nano = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const linkType = u32(20);
  const out: TcpSegment[] = [];
  let off = 24;
  while (off + 16 <= buf.length) {
    const sec = u32(off);
    const frac = u32(off + 4);
    const incl = u32(off + 8);
    const frame = buf.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    let ip: Buffer;
    if (linkType === 1) {
      if (frame.length < 14 || frame.readUInt16BE(12) !== 0x0800) continue;
      ip = frame.subarray(14);
    } else if (linkType === 113) {
      if (frame.length < 16 || frame.readUInt16BE(14) !== 0x0800) continue;
      ip = frame.subarray(16);
    } else {
      continue;
    }
    if (ip.length < 20 || ip[0] >> 4 !== 4 || ip[9] !== 6) continue;
    const ihl = (ip[0] & 0x0f) * 4;
    const total = Math.min(ip.readUInt16BE(2), ip.length);
    const tcp = ip.subarray(ihl, total);
    if (tcp.length < 20) continue;
    const dataOffset = (tcp[12] >> 4) * 4;
    out.push({
      time: sec + frac / (nano ? 1e9 : 1e6),
      src: `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`,
      dst: `${ip[16]}.${ip[17]}.${ip[18]}.${ip[19]}`,
      srcPort: tcp.readUInt16BE(0),
      dstPort: tcp.readUInt16BE(2),
      flags: tcp[13],
      payload: Buffer.from(tcp.subarray(dataOffset)),
    });
  }
  return out;
}

export interface WireSummary {
  segments: number;
  /** TCP connections opened (SYN without ACK) towards the port. */
  connections: number;
  /** Segments that start a TLS ClientHello / ServerHello record. */
  clientHellos: number;
  serverHellos: number;
  /** Segments whose payload starts a TLS application-data record (0x17 0x03 0x03). */
  tlsApplicationData: number;
  /** Every payload byte, in capture order (for searching markers). */
  bytes: Buffer;
}

export function summariseWire(segments: readonly TcpSegment[], port: number): WireSummary {
  const relevant = segments.filter((s) => s.srcPort === port || s.dstPort === port);
  const isRecord = (p: Buffer, type: number) => p.length >= 6 && p[0] === type && p[1] === 3 && p[2] <= 4;
  return {
    segments: relevant.length,
    connections: relevant.filter((s) => s.dstPort === port && (s.flags & 0x12) === 0x02).length,
    clientHellos: relevant.filter((s) => s.dstPort === port && isRecord(s.payload, 0x16) && s.payload[5] === 1).length,
    serverHellos: relevant.filter((s) => s.srcPort === port && isRecord(s.payload, 0x16) && s.payload[5] === 2).length,
    tlsApplicationData: relevant.filter((s) => isRecord(s.payload, 0x17)).length,
    bytes: Buffer.concat(relevant.map((s) => s.payload)),
  };
}

export class Capture {
  readonly file: string;
  private readonly proc: Spawned;

  constructor(proc: Spawned, file: string) {
    this.proc = proc;
    this.file = file;
  }

  /** Stops tcpdump (after a short grace for the last packets) and parses what it wrote. */
  async stop(): Promise<TcpSegment[]> {
    await new Promise((r) => setTimeout(r, 300));
    const res = await this.proc.stop();
    if (!fs.existsSync(this.file)) throw new Error(`tcpdump wrote no file (${res.code ?? res.signal}): ${res.stderr.trim()}`);
    return parsePcap(fs.readFileSync(this.file));
  }
}

// ---------------------------------------------------------------------------------------------
// The mesh

export interface MeshOptions {
  /** Short name, shows in namespace names. */
  name: string;
  trustDomain?: string;
  /** Extra control-plane flags, e.g. ['--default-cert-ttl', '30']. */
  controlPlaneArgs?: string[];
  logLevel?: string;
  /** Check at start that the control plane serves GET /v1/trust-bundle on its CA port (default true). */
  requireCaServer?: boolean;
  /** Kubernetes namespace of the control plane (created, deleted at cleanup); default `cinch-mesh-<random>`. */
  namespace?: string;
  /** Control-plane ports to use instead of free ones (e.g. to know the webhook port for --webhook-url). */
  ports?: Partial<{ monitoring: number; webhook: number; ca: number }>;
  /** Create the LAN and the relay (needs network namespaces); false: the control plane only (default true). */
  lan?: boolean;
}

export interface PodOptions {
  /** Short name (netns, Pod name, app label). */
  label: string;
  /** Gets a ServiceAccount, a Pod labelled for the mesh, the `cinch init` rules and a proxy. */
  meshed: boolean;
  /** Kubernetes namespace (created if new); default: one per pod, `<label>-<random>`. */
  namespace?: string;
  serviceAccount?: string;
  /** Start the HTTP app on APP_PORT (default: true for meshed pods named server). */
  app?: boolean;
  /** Extra environment for the proxy, e.g. { CINCH_CERT_TTL_SECONDS: '30' }. */
  proxyEnv?: Record<string, string>;
  /** For a meshed pod: start the proxy now (default true); false leaves it to pod.startProxy(). */
  startProxy?: boolean;
}

function hostGet(url: string, timeoutMs = 2000): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

function hostHttpsGet(url: string, ca: string, timeoutMs = 2000): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca, timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function lastJsonLine<T>(res: RunResult, what: string): T {
  const line = res.stdout.trim().split('\n').pop();
  if (res.code !== 0 || !line) throw new Error(`${what} failed (${res.code ?? res.signal}): ${res.stderr.trim().slice(-2000)}`);
  return JSON.parse(line) as T;
}

/** Pods, policies and the control plane for one test file; cleanup() removes all of it. */
export class Mesh {
  readonly lab: NetnsLab;
  readonly kc: KubeConfig;
  readonly trustDomain: string;
  /** Kubernetes namespace of the control plane (also the mesh root namespace). */
  readonly cpNamespace: string;
  readonly dir: string;
  readonly pods: MeshPod[] = [];
  /** host:port the proxies use (through the relay). */
  readonly caAddress = `${CP_IP}:${CA_PORT_IN_MESH}`;
  controlPlane?: Spawned;
  ports = { monitoring: 0, webhook: 0, ca: 0 };
  private readonly opts: MeshOptions;
  private readonly suffix = randomBytes(3).toString('hex');
  private readonly k8sNamespaces = new Set<string>();
  private readonly policies: { plural: string; namespace: string; name: string }[] = [];
  private lan?: Netns;
  private cp?: Netns;
  private nextHost = 11;
  private rootCert = '';
  private cleaned = false;

  private constructor(opts: MeshOptions) {
    this.opts = opts;
    this.lab = new NetnsLab(`mesh${opts.name}`);
    this.kc = new KubeConfig();
    this.kc.loadFromDefault();
    this.trustDomain = opts.trustDomain ?? 'cluster.local';
    this.cpNamespace = opts.namespace ?? `cinch-mesh-${this.suffix}`;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `cinch-mesh-${opts.name}-`));
    // Readable by the proxies (uid 1337): tokens and the trust bundle are written here.
    fs.chmodSync(this.dir, 0o755);
  }

  /** The control plane on free loopback ports, the LAN and the relay; ready for addPod. */
  static async start(opts: MeshOptions): Promise<Mesh> {
    const mesh = new Mesh(opts);
    try {
      await mesh.startControlPlane();
    } catch (err) {
      await mesh.cleanup();
      throw err;
    }
    return mesh;
  }

  private get core(): CoreV1Api {
    return this.kc.makeApiClient(CoreV1Api);
  }

  /** Creates a Kubernetes namespace (with extra labels), deleted at cleanup; nothing if this mesh made it already. */
  async ensureNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
    if (this.k8sNamespaces.has(name)) return;
    await this.core.createNamespace({ body: { metadata: { name, labels: { 'cinch.dev/test': 'mesh', ...labels } } } });
    this.k8sNamespaces.add(name);
  }

  private async startControlPlane(): Promise<void> {
    step(`installing the security.istio.io CRDs; control-plane namespace ${this.cpNamespace}`);
    await installCrds(this.kc);
    await this.ensureNamespace(this.cpNamespace);

    const fixed = this.opts.ports ?? {};
    this.ports = { monitoring: fixed.monitoring ?? (await freePort()), webhook: fixed.webhook ?? (await freePort()), ca: fixed.ca ?? (await freePort()) };
    const args = [
      path.join(REPO_ROOT, 'bin/cinch.js'),
      'control-plane',
      '--kubeconfig', process.env.KUBECONFIG!,
      '--namespace', this.cpNamespace,
      '--trust-domain', this.trustDomain,
      '--listen-address', '127.0.0.1',
      '--monitoring-port', String(this.ports.monitoring),
      '--webhook-port', String(this.ports.webhook),
      '--ca-port', String(this.ports.ca),
      '--serving-san', CP_IP,
      ...(this.opts.controlPlaneArgs ?? []),
    ];
    step(`starting the control plane (ca ${this.ports.ca}, monitoring ${this.ports.monitoring}, webhook ${this.ports.webhook})`);
    this.controlPlane = this.lab.spawnHost(NODE, args, { env: { ...process.env, CINCH_LOG_LEVEL: this.opts.logLevel ?? 'info' } });
    const deadline = Date.now() + 30_000;
    let last: string;
    for (;;) {
      const res = await hostGet(`http://127.0.0.1:${this.ports.monitoring}/readyz`);
      if ('status' in res && res.status === 200) break;
      last = 'status' in res ? `${res.status} ${res.body.trim()}` : res.error;
      if (this.controlPlane.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`control plane not ready (${last}); stderr: ${this.controlPlane.stderr.trim().slice(-3000)}`);
      }
      await sleep(200);
    }
    const secret = await this.core.readNamespacedSecret({ name: 'cinch-ca', namespace: this.cpNamespace });
    this.rootCert = Buffer.from(secret.data?.['root-cert.pem'] ?? '', 'base64').toString('utf8');
    if (!this.rootCert.includes('BEGIN CERTIFICATE')) throw new Error('Secret cinch-ca has no root-cert.pem');
    fs.writeFileSync(path.join(this.dir, 'root-cert.pem'), this.rootCert, { mode: 0o644 });
    // Fail fast (with what was answered) when the CA and config server does not serve on its port.
    const bundleDeadline = Date.now() + 10_000;
    while (this.opts.requireCaServer ?? true) {
      const res = await hostHttpsGet(`https://127.0.0.1:${this.ports.ca}/v1/trust-bundle`, this.rootCert);
      if ('status' in res && res.status === 200 && res.body.includes('BEGIN CERTIFICATE')) break;
      if (Date.now() > bundleDeadline) {
        const got = 'status' in res ? `${res.status} ${res.body.slice(0, 200)}` : res.error;
        throw new Error(`the control plane does not serve GET /v1/trust-bundle on its CA port ${this.ports.ca} (${got})`);
      }
      await sleep(200);
    }

    if (this.opts.lan === false) return;
    step('creating the LAN and the relay to the control plane');
    this.cp = await this.lab.namespace('cp');
    const sock = path.join(this.dir, 'ca.sock');
    const hostRelay = this.lab.spawnHost(NODE, ['--input-type=module', '-e', RELAY, '--', JSON.stringify({ listen: { path: sock }, target: { host: '127.0.0.1', port: this.ports.ca } })]);
    await hostRelay.waitFor(/^listening$/m);
    // The bridge comes up with the cp namespace on it; pods join later (addPod).
    this.lan = await this.lab.lan('lan', [{ ns: this.cp, addresses: [`${CP_IP}/24`] }]);
    const cpRelay = this.cp.spawnNodeEval(RELAY, [JSON.stringify({ listen: { host: CP_IP, port: CA_PORT_IN_MESH }, target: { path: sock } })]);
    await cpRelay.waitFor(/^listening$/m);
  }

  /** The mesh roots (PEM), as in Secret cinch-ca. */
  get trustBundle(): string {
    return this.rootCert;
  }

  /** spiffe://<trust domain>/ns/<ns>/sa/<sa> */
  spiffeId(namespace: string, serviceAccount: string): string {
    return `spiffe://${this.trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  }

  /** A namespace for a pod on the LAN, with the Kubernetes objects, rules, app and proxy it asks for. */
  async addPod(o: PodOptions): Promise<MeshPod> {
    if (!this.lan) throw new Error('mesh not started');
    const ip = `${SUBNET}.${this.nextHost++}`;
    const netns = await this.lab.namespace(o.label);
    await this.joinLan(netns, ip);
    const namespace = o.namespace ?? `${o.label}-${this.suffix}`;
    const serviceAccount = o.serviceAccount ?? o.label;
    const pod = new MeshPod(this, netns, { label: o.label, ip, namespace, serviceAccount, meshed: o.meshed });
    this.pods.push(pod);
    if (o.app ?? false) await pod.startApp();
    if (!o.meshed) {
      step(`pod ${o.label} (${ip}): no proxy, no rules`);
      return pod;
    }
    step(`pod ${o.label} (${ip}): Kubernetes objects in ${namespace}, cinch init, proxy`);
    await this.ensureNamespace(namespace);
    await this.core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: serviceAccount } } }).catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
    await this.createRunningPod(namespace, o.label, serviceAccount, ip);
    const init = await netns.node([path.join(REPO_ROOT, 'bin/cinch.js'), 'init'], { timeoutMs: 30_000 });
    if (init.code !== 0) throw new Error(`cinch init in ${o.label} failed (${init.code}): ${init.stderr.trim()}`);
    if (o.startProxy ?? true) await pod.startProxy(o.proxyEnv ?? {});
    return pod;
  }

  private async joinLan(netns: Netns, ip: string): Promise<void> {
    // Same wiring as NetnsLab.lan, for a member that joins after the bridge exists.
    const sw = this.lan!;
    const port = `p${sw.interfaces++}`;
    const memberIf = `eth${netns.interfaces++}`;
    await sw.ip('link', 'add', port, 'type', 'veth', 'peer', 'name', memberIf, 'netns', netns.name);
    await sw.ip('link', 'set', port, 'master', 'br0');
    await sw.ip('link', 'set', port, 'up');
    await netns.ip('addr', 'add', `${ip}/24`, 'dev', memberIf);
    await netns.ip('link', 'set', memberIf, 'up');
  }

  private async createRunningPod(namespace: string, name: string, serviceAccount: string, ip: string): Promise<void> {
    const body: V1Pod = {
      metadata: { name, labels: { app: name, [TLS_MODE_LABEL]: 'cinch' } },
      spec: {
        serviceAccountName: serviceAccount,
        containers: [{ name: 'app', image: 'example.invalid/mesh-app:1', ports: [{ name: 'http', containerPort: APP_PORT }] }],
      },
    };
    const created = await this.core.createNamespacedPod({ namespace, body });
    // No kubelet: report the pod running at the namespace's address, as the kubelet would.
    created.status = {
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      conditions: [{ type: 'Ready', status: 'True' }],
    };
    await this.core.replaceNamespacedPodStatus({ name, namespace, body: created });
  }

  /** Writes a fresh audience-cinch-ca token for a ServiceAccount into the mesh dir (0644); returns the path. */
  async writeToken(namespace: string, serviceAccount: string, file: string): Promise<string> {
    const res = await this.core.createNamespacedServiceAccountToken({
      namespace,
      name: serviceAccount,
      body: { spec: { audiences: ['cinch-ca'], expirationSeconds: 3600 } },
    });
    const token = res.status?.token;
    if (!token) throw new Error('TokenRequest returned no token');
    const target = path.join(this.dir, file);
    fs.writeFileSync(target, token, { mode: 0o644 });
    return target;
  }

  get rootCertFile(): string {
    return path.join(this.dir, 'root-cert.pem');
  }

  /** Creates a PeerAuthentication or AuthorizationPolicy (v1); deleted at cleanup if still there. */
  async applyPolicy(kind: 'PeerAuthentication' | 'AuthorizationPolicy', namespace: string, name: string, spec: object): Promise<void> {
    const plural = kind === 'PeerAuthentication' ? 'peerauthentications' : 'authorizationpolicies';
    const api = this.kc.makeApiClient(CustomObjectsApi);
    await api.createNamespacedCustomObject({
      group: SECURITY_GROUP,
      version: 'v1',
      namespace,
      plural,
      body: { apiVersion: `${SECURITY_GROUP}/v1`, kind, metadata: { name, namespace }, spec },
    });
    this.policies.push({ plural, namespace, name });
  }

  async deletePolicy(kind: 'PeerAuthentication' | 'AuthorizationPolicy', namespace: string, name: string): Promise<void> {
    const plural = kind === 'PeerAuthentication' ? 'peerauthentications' : 'authorizationpolicies';
    await this.kc.makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({ group: SECURITY_GROUP, version: 'v1', namespace, plural, name });
    const i = this.policies.findIndex((p) => p.plural === plural && p.namespace === namespace && p.name === name);
    if (i >= 0) this.policies.splice(i, 1);
  }

  /** The last lines of every process's output, for failure messages. */
  logs(lines = 40): string {
    const tail = (s: string) => s.trim().split('\n').slice(-lines).join('\n');
    const parts = [`--- control plane stderr\n${tail(this.controlPlane?.stderr ?? '')}`];
    for (const p of this.pods) {
      if (p.proxy) parts.push(`--- proxy ${p.label} stderr\n${tail(p.proxy.stderr)}\n--- proxy ${p.label} stdout\n${tail(p.proxy.stdout)}`);
    }
    return parts.join('\n');
  }

  /** Runs fn; on failure, adds the processes' recent output to the error (and keeps the files). */
  async explain<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = err as Error;
      const original = e.message;
      e.message = `${original}\n${this.logs()}`;
      // Reporters print the stack, which was written with the original message.
      if (e.stack?.includes(original)) e.stack = e.stack.replace(original, e.message);
      throw e;
    }
  }

  /** Removes policies, Kubernetes namespaces, processes, network namespaces and files. Safe to call twice. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    step('cleanup: policies, processes, namespaces');
    const api = this.kc.makeApiClient(CustomObjectsApi);
    await Promise.all(
      this.policies.map((p) => api.deleteNamespacedCustomObject({ group: SECURITY_GROUP, version: 'v1', namespace: p.namespace, plural: p.plural, name: p.name }).catch(() => undefined)),
    );
    await this.lab.cleanup();
    await Promise.all([...this.k8sNamespaces].map((name) => this.core.deleteNamespace({ name }).catch(() => undefined)));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Network namespaces of this mesh still present (for checking cleanup). */
  remaining(): string[] {
    return this.lab.remaining();
  }
}

export class MeshPod {
  readonly mesh: Mesh;
  readonly netns: Netns;
  readonly label: string;
  readonly ip: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly meshed: boolean;
  app?: Spawned;
  proxy?: Spawned;

  constructor(mesh: Mesh, netns: Netns, o: { label: string; ip: string; namespace: string; serviceAccount: string; meshed: boolean }) {
    this.mesh = mesh;
    this.netns = netns;
    this.label = o.label;
    this.ip = o.ip;
    this.namespace = o.namespace;
    this.serviceAccount = o.serviceAccount;
    this.meshed = o.meshed;
  }

  /** The principal as policies write it: <trust domain>/ns/<ns>/sa/<sa>. */
  get principal(): string {
    return `${this.mesh.trustDomain}/ns/${this.namespace}/sa/${this.serviceAccount}`;
  }

  get spiffeId(): string {
    return `spiffe://${this.principal}`;
  }

  /** `http://<ip>:8080<path>` */
  url(p = '/'): string {
    return `http://${this.ip}:${APP_PORT}${p}`;
  }

  async startApp(): Promise<void> {
    this.app = this.netns.spawnNodeEval(APP, [JSON.stringify({ port: APP_PORT, name: `${this.label}-app` })], { uid: APP_UID });
    await this.app.waitFor(/^listening$/m);
  }

  /** Requests the app has seen, in order. */
  appRequests(): AppRequest[] {
    return (this.app?.stdout ?? '')
      .split('\n')
      .filter((l) => l.startsWith('REQ '))
      .map((l) => JSON.parse(l.slice(4)) as AppRequest);
  }

  async startProxy(extraEnv: Record<string, string> = {}): Promise<void> {
    const token = await this.mesh.writeToken(this.namespace, this.serviceAccount, `${this.label}.token`);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: '/tmp',
      POD_NAME: this.label,
      POD_NAMESPACE: this.namespace,
      INSTANCE_IP: this.ip,
      SERVICE_ACCOUNT: this.serviceAccount,
      CINCH_CA_ADDRESS: this.mesh.caAddress,
      CINCH_TRUST_DOMAIN: this.mesh.trustDomain,
      CINCH_LOG_LEVEL: 'info',
      CINCH_TOKEN_FILE: token,
      CINCH_CA_ROOT_FILE: this.mesh.rootCertFile,
      ...extraEnv,
    };
    this.proxy = this.netns.spawn(NODE, [path.join(REPO_ROOT, 'bin/cinch.js'), 'proxy'], { uid: PROXY_UID, env });
    await this.waitReady();
  }

  /** GET on loopback inside the pod (as root: never captured). */
  async localGet(port: number, p: string, timeoutMs = 2000): Promise<{ status?: number; body?: string; error?: string }> {
    const res = await this.netns.nodeEval(LOCAL_GET, [`http://127.0.0.1:${port}${p}`, String(timeoutMs)], { timeoutMs: timeoutMs + 10_000 });
    return lastJsonLine(res, `GET 127.0.0.1:${port}${p} in ${this.label}`);
  }

  /** Until 15021/healthz/ready answers 200 (certificate and config in hand). */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: string;
    for (;;) {
      const res = await this.localGet(15021, '/healthz/ready', 1000);
      if (res.status === 200) {
        step(`proxy ${this.label} ready`);
        return;
      }
      last = res.status !== undefined ? `${res.status} ${res.body?.trim()}` : (res.error ?? '');
      const exited = this.proxy && (this.proxy.child.exitCode !== null || this.proxy.child.signalCode !== null);
      if (exited || Date.now() > deadline) {
        throw new Error(`proxy in ${this.label} ${exited ? `exited (${this.proxy!.child.exitCode ?? this.proxy!.child.signalCode})` : `not ready after ${timeoutMs} ms`} (last: ${last}); stderr: ${this.proxy?.stderr.trim().slice(-3000)}`);
      }
      await sleep(250);
    }
  }

  /** Versions of the configs the proxy logged as received ("config received"), in order. */
  configVersions(): string[] {
    const out: string[] = [];
    for (const line of (this.proxy?.stderr ?? '').split('\n')) {
      if (!line.includes('config received')) continue;
      try {
        const entry = JSON.parse(line) as { message?: string; version?: string };
        if (entry.message === 'config received') out.push(entry.version ?? '');
      } catch {
        // not a JSON log line
      }
    }
    return out;
  }

  /** Waits until the proxy has logged more than `seen` configs; returns the time waited (ms). */
  async waitForNewConfig(seen: number, timeoutMs = 5000): Promise<number> {
    const start = Date.now();
    while (this.configVersions().length <= seen) {
      if (Date.now() - start > timeoutMs) throw new Error(`proxy ${this.label} logged no new config within ${timeoutMs} ms (${seen} so far)`);
      await sleep(20);
    }
    return Date.now() - start;
  }

  /** The proxy's /stats/prometheus, parsed. */
  async metrics(): Promise<Sample[]> {
    const res = await this.localGet(15020, '/stats/prometheus');
    if (res.status !== 200) throw new Error(`${this.label} /stats/prometheus: ${res.status ?? res.error} ${res.body ?? ''}`);
    return parsePrometheus(res.body ?? '');
  }

  /** HTTP requests from this pod as an app would make them (uid 1000, so they are captured). */
  async request(url: string, o: { count?: number; keepAlive?: boolean; method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<HttpResult[]> {
    const res = await this.netns.nodeEval(REQUEST, [JSON.stringify({ url, ...o })], { uid: APP_UID, timeoutMs: (o.timeoutMs ?? 5000) * (o.count ?? 1) + 10_000 });
    return lastJsonLine<HttpResult[]>(res, `requests from ${this.label} to ${url}`);
  }

  /** Starts requests every intervalMs on new connections; read lines with watchLines / waitForLine. */
  watch(url: string, o: { intervalMs?: number; durationMs?: number; stopStatus?: number; headers?: Record<string, string> } = {}): Watch {
    const proc = this.netns.spawnNodeEval(WATCH, [JSON.stringify({ url, intervalMs: o.intervalMs ?? 50, durationMs: o.durationMs ?? 10_000, stopStatus: o.stopStatus, headers: o.headers })], { uid: APP_UID });
    return new Watch(proc);
  }

  /** Continuous load; resolves with the summary when durationMs has passed. Progress goes to `onProgress`. */
  async load(
    url: string,
    o: { durationMs: number; expectBody: string; keepAliveWorkers?: number; newConnectionWorkers?: number; keepAlivePauseMs?: number; newConnectionPauseMs?: number; reportMs?: number },
    onProgress: (p: { t: number; ok: number; failed: number; sockets: number }) => void = () => undefined,
  ): Promise<LoadSummary> {
    const proc = this.netns.spawnNodeEval(LOAD, [JSON.stringify({ url, keepAliveWorkers: 2, newConnectionWorkers: 1, ...o })], { uid: APP_UID });
    let seen = 0;
    const timer = setInterval(() => {
      const lines = proc.stdout.split('\n').filter((l) => l.startsWith('{"progress"'));
      for (const l of lines.slice(seen)) onProgress((JSON.parse(l) as { progress: { t: number; ok: number; failed: number; sockets: number } }).progress);
      seen = lines.length;
    }, 1000);
    try {
      const res = await proc.exited;
      const line = res.stdout.split('\n').find((l) => l.startsWith('{"summary"'));
      if (!line) throw new Error(`load generator in ${this.label} ended without a summary (${res.code ?? res.signal}): ${res.stderr.trim().slice(-2000)}`);
      return (JSON.parse(line) as { summary: LoadSummary }).summary;
    } finally {
      clearInterval(timer);
    }
  }

  /** tcpdump on this pod's LAN interface (TCP on `port`), started and listening when this resolves. */
  async capture(port = APP_PORT): Promise<Capture> {
    const file = path.join(this.mesh.dir, `${this.label}-${randomBytes(3).toString('hex')}.pcap`);
    const proc = this.netns.spawn('tcpdump', ['--immediate-mode', '-i', 'eth0', '-n', '-s', '0', '-U', '-Z', 'root', '-w', file, 'tcp', 'port', String(port)]);
    await proc.waitFor(/listening on/, 10_000, 'stderr');
    return new Capture(proc, file);
  }
}

export class Watch {
  readonly proc: Spawned;

  constructor(proc: Spawned) {
    this.proc = proc;
  }

  lines(): WatchLine[] {
    return this.proc.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as WatchLine);
  }

  /** The first line (arriving within timeoutMs) that satisfies `pred`. */
  async waitForLine(pred: (l: WatchLine) => boolean, timeoutMs: number): Promise<WatchLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines().find(pred);
      if (hit) return hit;
      const done = this.proc.child.exitCode !== null || this.proc.child.signalCode !== null;
      if (done || Date.now() > deadline) {
        const recent = this.lines().slice(-5).map((l) => JSON.stringify(l)).join('\n');
        throw new Error(`${done ? 'watcher ended' : `no matching answer within ${timeoutMs} ms`}; last answers:\n${recent}\n${this.proc.stderr.trim().slice(-1000)}`);
      }
      await sleep(20);
    }
  }

  stop(): Promise<RunResult> {
    return this.proc.stop();
  }
}

/** Creates the two security.istio.io CRDs from webhook-config/crds when absent, and waits until established. */
export async function installCrds(kc: KubeConfig): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const dir = path.join(REPO_ROOT, 'webhook-config/crds');
  const names: string[] = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    const crd = parseYaml(fs.readFileSync(path.join(dir, file), 'utf8')) as V1CustomResourceDefinition;
    names.push(crd.metadata!.name!);
    await api.createCustomResourceDefinition({ body: crd }).catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  }
  const deadline = Date.now() + 20_000;
  for (const name of names) {
    for (;;) {
      const crd = await api.readCustomResourceDefinition({ name });
      if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not established`);
      await sleep(100);
    }
  }
}
