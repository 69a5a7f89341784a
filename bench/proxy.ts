// Proxy data-path benchmark: HTTP/1.1 keep-alive, 1 KiB responses, side by side in one run:
//   direct   load generator → app
//   Cinch    load generator → OutboundProxy ══ mTLS ══► InboundProxy → app
//   haproxy  load generator → haproxy (TCP, originates TLS) ══ mTLS ══► haproxy (HTTP, verify required) → app
//
//   npx node bench/proxy.ts [--seconds 4] [--warmup 1] [--connections 32] [--rate 1000] [--fixed-seconds 5]
//                           [--rounds 3] [--pin auto|on|off] [--profile DIR] [--out bench/results/proxy.md]
//
// Every box is its own process: the app (a tiny node:http server), each proxy (Cinch's from
// bench/proxy-sidecar.ts), and the load generators (Debian's `wrk` for the closed loop, a small Node
// generator in this file for the open loop), so a proxy's CPU and memory figures are its own. wrk and
// haproxy are installed with apt-get when missing (and the run says so). No iptables on loopback: each Cinch proxy gets a fixed
// original-destination function (the outbound proxy "was going to" the inbound proxy's port, which its
// config says is meshed with the server's SPIFFE ID; the inbound proxy "was going to" the app's port).
// The inbound side runs the real config path: a pushed ProxyConfig (STRICT PeerAuthentication, an ALLOW
// policy on principal + method + path and a DENY policy) compiled by compileProxyConfig, so each request
// pays for its authorization; metrics (Istio's) and logging (info) are on, as in `cinch proxy`.
// Certificates: a root from the real CA core (createRootCa) and P-256 SPIFFE leaves signed by
// FastLeafSigner; haproxy gets the very same key pairs and root.
// - Max throughput is closed-loop: wrk, one thread, N keep-alive connections, each sending its next
//   request when the last is answered.
// - Latency at a fixed rate is open-loop: requests are scheduled on a clock and latency runs from the
//   scheduled time, so a stalled proxy is charged for the requests it delayed (no coordinated omission).
// With --pin (auto: taskset present and 2+ CPUs), the load generators and the app share one CPU and the
// two proxies of a setup share another (4+ CPUs: one each), the same for Cinch and haproxy, and haproxy
// runs one thread (nbthread 1) like Node's one event loop. Setups alternate order between rounds.
// On a shared virtual machine tails move with other tenants and the hypervisor: each window reports the
// proxies' run-queue wait, the machine's steal time and the generator's own timer lag alongside.
// Also measured: idle RSS of the real `cinch proxy` command (in a private network namespace) and of
// Node itself. Everything started is stopped at the end, on error, on SIGINT and past a hard time limit.
// Figures go to stdout and bench/results/proxy.md. Targets are reported, never enforced.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { CLIENT_ID, HOST, SERVER_ID, TRUST_DOMAIN } from './proxy-sidecar.ts';
import { freePort, waitForPort } from '../test/support/ports.ts';
import { cpuSeconds } from './proc.ts';
import { bundle, PROXY_DIST, PROXY_ENTRY } from '../bin/build-dist.ts';
import { PROXY_NODE_FLAGS } from '../bin/proxy-node-flags.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const SELF = path.join(ROOT, 'bench/proxy.ts');
const SIDECAR = path.join(ROOT, 'bench/proxy-sidecar.ts');
const DEFAULT_RESULTS = path.join(ROOT, 'bench/results/proxy.md');
const REQUEST_PATH = '/api/v1/items';
const BODY_BYTES = 1024;
const TARGET_THROUGHPUT_RATIO = 0.5;
const TARGET_P99_RATIO = 2;
const TARGET_RSS_MIB = 60;
/** Tools are installed first; from then on the run is bounded: past this everything is stopped and it fails loudly. */
const HARD_LIMIT_MS = 180_000;

const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    seconds: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    connections: { type: 'string', default: '32' },
    rate: { type: 'string', default: '1000' },
    'fixed-seconds': { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    pin: { type: 'string', default: 'auto' },
    /** Write V8 CPU profiles of both Cinch proxies into this folder and print where their time goes. */
    profile: { type: 'string' },
    /** Run the Cinch proxies from their TypeScript sources instead of bundled JavaScript as shipped (for comparison). */
    'from-source': { type: 'boolean', default: false },
    /** Node flags for the Cinch proxies, space-separated: by default those `cinch proxy` runs with (bin/proxy-node-flags.js). */
    'proxy-node-flags': { type: 'string', default: PROXY_NODE_FLAGS.join(' ') },
    /** Where the Markdown report goes: exploratory runs can keep the recorded one (e.g. --out /tmp/proxy.md). */
    out: { type: 'string', default: DEFAULT_RESULTS },
    // Child roles.
    dir: { type: 'string' },
    port: { type: 'string' },
  },
});

// ---------------------------------------------------------------------------------------------
// Role: the app. A node:http server answering every request with 1 KiB.

async function appRole(): Promise<void> {
  const body = Buffer.alloc(BODY_BYTES, 'abcdefghijklmnopqrstuvwxyz0123456789');
  const server = http.createServer({ keepAliveTimeout: 120_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY_BYTES });
    res.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const parent = process.ppid;
  setInterval(() => process.ppid !== parent && process.kill(process.pid, 'SIGTERM'), 1000).unref();
  process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}\n`);
  await once(process, 'SIGTERM');
  server.closeAllConnections();
  server.close();
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Role: open-loop load generator. Requests are due at start + i/rate; each due request takes an idle
// keep-alive connection (or waits in a queue for one), and its latency runs from when it was due.
// A minimal HTTP/1.1 client on net.Socket (one request in flight per connection) keeps the generator's
// own cost and jitter low; it checks each response's status and body length.

interface OpenLoopResult {
  /** Latency from the scheduled time, ms, measured requests only. */
  latencies: number[];
  /** Latency from the moment the request was written, ms. */
  serviceLatencies: number[];
  ok: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  /** How late the generator's timer got to requests behind their schedule (ms): p50, p99, max. */
  lagP50: number;
  lagP99: number;
  lagMax: number;
}

async function openLoopRole(): Promise<void> {
  const port = Number(args.port);
  const rate = Number(args.rate);
  const warmupCount = Math.round(Number(args.warmup) * rate);
  const total = warmupCount + Math.round(Number(args['fixed-seconds']) * rate);
  const connections = Number(args.connections);
  const interval = 1000 / rate;
  const request = Buffer.from(`GET ${REQUEST_PATH} HTTP/1.1\r\nHost: ${HOST}\r\nUser-Agent: cinch-bench\r\nAccept: */*\r\n\r\n`, 'latin1');

  const latencies: number[] = [];
  const serviceLatencies: number[] = [];
  const lags: number[] = [];
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  let outstanding = 0;
  const idle: Conn[] = [];
  const queue: number[] = [];
  let start = 0;

  const fail = (message: string, measured: boolean) => {
    firstError ??= message;
    if (measured) errors++;
  };

  class Conn {
    readonly socket: net.Socket;
    buf: Buffer | null = null;
    index = -1;
    sentAt = 0;
    constructor(socket: net.Socket) {
      this.socket = socket;
      socket.setNoDelay(true);
      socket.on('data', (chunk: Buffer) => {
        this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
        this.parse();
      });
      socket.on('error', () => undefined);
      socket.on('close', () => {
        const i = idle.indexOf(this);
        if (i >= 0) idle.splice(i, 1);
        if (this.index >= 0) {
          fail('connection closed with a request in flight', this.index >= warmupCount);
          this.index = -1;
          outstanding--;
        }
        // Keep the pool size: a replacement connection joins when it is up.
        if (!stopping) void connect().then(release, (err: unknown) => fail(`reconnect: ${(err as Error).message}`, false));
      });
    }
    send(index: number): void {
      this.index = index;
      this.sentAt = performance.now();
      this.socket.write(request);
    }
    parse(): void {
      const b = this.buf;
      if (!b) return;
      const headEnd = b.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const head = b.toString('latin1', 0, headEnd).toLowerCase();
      const status = Number(head.slice(9, 12));
      const lengthMatch = /\r\ncontent-length:\s*(\d+)/.exec(head);
      let end: number;
      let bodyLength = 0;
      if (lengthMatch) {
        bodyLength = Number(lengthMatch[1]);
        end = headEnd + 4 + bodyLength;
        if (b.length < end) return;
      } else if (/\r\ntransfer-encoding:\s*chunked/.test(head)) {
        let pos = headEnd + 4;
        for (;;) {
          const lineEnd = b.indexOf('\r\n', pos);
          if (lineEnd < 0) return;
          const size = parseInt(b.toString('latin1', pos, lineEnd), 16);
          if (size === 0) {
            if (b.length < lineEnd + 4) return;
            end = lineEnd + 4;
            break;
          }
          if (b.length < lineEnd + 2 + size + 2) return;
          bodyLength += size;
          pos = lineEnd + 2 + size + 2;
        }
      } else {
        end = b.length;
        bodyLength = -1;
      }
      this.buf = end < b.length ? b.subarray(end) : null;
      const now = performance.now();
      const index = this.index;
      this.index = -1;
      outstanding--;
      const measured = index >= warmupCount;
      if (status === 200 && bodyLength === BODY_BYTES) {
        if (measured) {
          ok++;
          latencies.push(now - (start + index * interval));
          serviceLatencies.push(now - this.sentAt);
        }
      } else fail(`status ${status}, body ${bodyLength} bytes`, measured);
      release(this);
    }
  }

  let stopping = false;
  const release = (conn: Conn): void => {
    const next = queue.shift();
    if (next !== undefined) conn.send(next);
    else idle.push(conn);
  };
  const connect = (): Promise<Conn> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new Conn(socket)));
      socket.once('error', reject);
    });

  for (const conn of await Promise.all(Array.from({ length: connections }, connect))) idle.push(conn);
  start = performance.now() + 20;
  let next = 0;
  const finished = new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (next < total && start + next * interval <= now) {
        // The generator's own lag (its timer firing late), not the wait for a free connection.
        lags.push(now - (start + next * interval));
        outstanding++;
        const conn = idle.pop();
        if (conn) conn.send(next);
        else queue.push(next);
        next++;
      }
      if (next < total) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
      else resolve();
    };
    setTimeout(tick, 20);
  });
  await finished;
  const deadline = performance.now() + 3000;
  while (outstanding > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  if (outstanding > 0) {
    errors += outstanding;
    firstError ??= `${outstanding} request(s) unanswered 3 s after the last was due`;
  }
  stopping = true;
  const elapsedMs = start + total * interval - (start + warmupCount * interval);
  const sortedLags = Float64Array.from(lags.slice(warmupCount)).sort();
  const result: OpenLoopResult = {
    latencies: latencies.map((l) => Math.round(l * 1000) / 1000),
    serviceLatencies: serviceLatencies.map((l) => Math.round(l * 1000) / 1000),
    ok,
    errors,
    firstError,
    elapsedMs,
    lagP50: percentile(sortedLags, 0.5),
    lagP99: percentile(sortedLags, 0.99),
    lagMax: sortedLags.at(-1) ?? NaN,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

// ---------------------------------------------------------------------------------------------
// Orchestrator helpers: processes, /proc, tools.

const children: ChildProcess[] = [];
let tmpDir: string | undefined;

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Installs a Debian package when its command is missing, and says so; returns the package version. */
function ensureDebianTool(cmd: string, pkg: string): string {
  if (have(cmd)) {
    console.error(`${cmd}: found on PATH`);
  } else {
    console.error(`${cmd}: not found; installing Debian's ${pkg} with apt-get`);
    const asRoot = process.getuid?.() === 0;
    const aptGet = (...a: string[]) =>
      execFileSync(asRoot ? 'apt-get' : 'sudo', asRoot ? a : ['apt-get', ...a], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    aptGet('update', '-qq');
    aptGet('install', '-y', '-qq', '--no-install-recommends', pkg);
  }
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' });
  } catch {
    return 'not from Debian';
  }
}

function spawnChild(cpu: number | undefined, cmd: string, cmdArgs: string[], logFile: string, niceness?: number): ChildProcess {
  const pinned = cpu === undefined ? [cmd, ...cmdArgs] : ['taskset', '-c', String(cpu), cmd, ...cmdArgs];
  const argv = niceness === undefined ? pinned : ['nice', '-n', String(niceness), ...pinned];
  const log = fs.openSync(logFile, 'a');
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', log] });
  fs.closeSync(log);
  children.push(child);
  return child;
}

async function firstLine(child: ChildProcess, what: string, timeoutMs = 30_000): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      (async () => {
        for await (const l of lines) if (l.trim()) return l;
        throw new Error(`${what} closed its output without answering`);
      })(),
      once(child, 'exit').then(([code]) => {
        throw new Error(`${what} exited with ${String(code)} before answering`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts a Node server (the app, or a Cinch proxy from bench/proxy-sidecar.ts) and waits for the port it prints. */
async function startServer(cpu: number | undefined, what: string, script: string, scriptArgs: string[], logFile: string, nodeFlags: string[] = []): Promise<{ child: ChildProcess; port: number }> {
  const child = spawnChild(cpu, process.execPath, [...nodeFlags, script, ...scriptArgs], logFile);
  const { port } = JSON.parse(await firstLine(child, what)) as { port: number };
  return { child, port };
}

const RSS_PROBE = `import fs from 'node:fs'; setTimeout(() => { console.log(JSON.stringify({ rssKiB: Number(/VmRSS:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) })); }, 500);`;

/** RSS of Node itself with nothing loaded: as JavaScript, and as TypeScript (type stripping on). */
async function nodeBaselines(logFile: string): Promise<{ jsKiB: number; tsKiB: number }> {
  const run = async (inputType: string, code: string) => {
    const child = spawnChild(undefined, process.execPath, [`--input-type=${inputType}`, '-e', code], logFile);
    const line = await firstLine(child, `node --input-type=${inputType}`);
    return (JSON.parse(line) as { rssKiB: number }).rssKiB;
  };
  return { jsKiB: await run('module', RSS_PROBE), tsKiB: await run('module-typescript', `const typed: number = 1; void typed; ${RSS_PROBE}`) };
}

/**
 * Idle RSS of the real `cinch proxy` command (identity agent, config client, admin server, both
 * listeners, the whole CLI), in a private network namespace where it can bind its fixed ports and
 * reach nothing: it keeps retrying the CA, so this is before any certificate. Needs root and unshare.
 */
async function realProxyIdle(logFile: string, fromSource: boolean): Promise<{ rssKiB: number; hwmKiB: number } | string> {
  if (process.getuid?.() !== 0 || !have('unshare')) return 'not measured (needs root and unshare for a private network namespace)';
  const env = {
    ...process.env,
    POD_NAME: 'httpbin-7d9c6b8f5-x2x4q',
    POD_NAMESPACE: 'foo',
    SERVICE_ACCOUNT: 'httpbin',
    CINCH_CA_ADDRESS: '127.0.0.1:15012',
    CINCH_TOKEN_FILE: '/nonexistent/token',
    CINCH_CA_ROOT_FILE: '/nonexistent/root-cert.pem',
    ...(fromSource ? { CINCH_FROM_SOURCE: '1' } : {}),
  };
  const log = fs.openSync(logFile, 'a');
  const child = spawn('unshare', ['--net', '--', process.execPath, path.join(ROOT, 'bin/cinch.js'), 'proxy', '--drain-seconds', '1'], { stdio: ['ignore', 'ignore', log], env });
  fs.closeSync(log);
  children.push(child);
  await new Promise((r) => setTimeout(r, 3000));
  if (child.exitCode !== null) return `not measured (cinch proxy exited with ${child.exitCode}; see its log)`;
  const status = readStatus(child.pid!);
  child.kill('SIGTERM');
  return status;
}

/**
 * Runs the open-loop generator to the end. As root it runs at nice -10: it is the measuring instrument,
 * and on a shared machine its timer should fire on time; it needs only a few percent of a core, so the
 * priority takes nothing from the processes under test (or anyone else), it only lets it run promptly.
 */
const GENERATOR_NICENESS = process.getuid?.() === 0 ? -10 : undefined;

async function runNodeRole<T>(cpu: number | undefined, role: string, roleArgs: string[], logFile: string): Promise<T> {
  const child = spawnChild(cpu, process.execPath, [SELF, '--role', role, ...roleArgs], logFile, GENERATOR_NICENESS);
  const line = await firstLine(child, `${role} process`, 60_000);
  if (child.exitCode === null) await once(child, 'exit');
  return JSON.parse(line) as T;
}

/** CPU time (user + system, all threads) and run-queue wait (all threads), in µs. */
function cpuOf(pid: number): { cpuMicros: number; waitMicros: number } {
  const cpuMicros = cpuSeconds(pid) * 1e6;
  let waitMicros = 0;
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      waitMicros += Number(fs.readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[1]) / 1000;
    } catch {
      /* the thread ended */
    }
  }
  return { cpuMicros, waitMicros };
}

type MemStatus = { rssKiB: number; hwmKiB: number; anonKiB: number; fileKiB: number };

/** VmRSS, VmHWM and RSS split into private anonymous memory and file-backed pages (mostly the executable's code and data, shared with every process that runs it). */
function readStatus(pid: number): MemStatus {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM'), anonKiB: kib('RssAnon'), fileKiB: kib('RssFile') };
}

function stopChildren(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
}

function killChildren(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  tmpDir = undefined;
}

async function stopAll(): Promise<void> {
  stopChildren();
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && children.some((c) => c.exitCode === null && c.signalCode === null)) await new Promise((r) => setTimeout(r, 50));
  killChildren();
}

// ---------------------------------------------------------------------------------------------
// Orchestrator: certificates, haproxy configuration, checks.

async function writeCertificates(dir: string): Promise<void> {
  const { generateKeyPairSync } = await import('node:crypto');
  const { createRootCa } = await import('../src/ca/create.ts');
  const { loadCaMaterial } = await import('../src/ca/material.ts');
  const { FastLeafSigner } = await import('../src/ca/fast-signer.ts');
  const material = loadCaMaterial((await createRootCa({ trustDomain: TRUST_DOMAIN })).files);
  const signer = new FastLeafSigner(material);
  fs.writeFileSync(path.join(dir, 'root.pem'), material.trustBundle.join(''));
  for (const [name, spiffeId] of [['server', SERVER_ID], ['client', CLIENT_ID]] as const) {
    // What the identity agent does: a fresh P-256 key, the CA signs its public key for the SPIFFE ID.
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const signed = signer.sign({ csr: { spki: publicKey.export({ format: 'der', type: 'spki' }), keyType: 'ec-p256' }, spiffeId });
    const keyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    // As the agent presents it: leaf and intermediates, not the root (the last entry).
    const chainPem = signed.certChain.slice(0, -1).join('');
    fs.writeFileSync(path.join(dir, `${name}-key.pem`), keyPem, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, `${name}-chain.pem`), chainPem);
    fs.writeFileSync(path.join(dir, `${name}-haproxy.pem`), chainPem + keyPem, { mode: 0o600 });
  }
}

function haproxyConfigs(dir: string, ports: { app: number; server: number; client: number }): { server: string; client: string } {
  const global = ['global', '  nbthread 1', '  maxconn 4096', '  ssl-server-verify required', ''];
  const timeouts = ['  timeout connect 5s', '  timeout client 120s', '  timeout server 120s'];
  const server = [
    ...global,
    'defaults',
    '  mode http',
    ...timeouts,
    '  timeout http-keep-alive 120s',
    '',
    'frontend mesh_in',
    `  bind 127.0.0.1:${ports.server} ssl crt ${dir}/server-haproxy.pem ca-file ${dir}/root.pem verify required alpn http/1.1 ssl-min-ver TLSv1.2`,
    // The same policy as the Cinch side, in haproxy's terms (it has no SPIFFE-aware principal check).
    '  http-request deny if { path_beg /admin } || { path_beg /debug/ }',
    '  http-request deny unless { method GET HEAD } { path_beg /api/ /status/ }',
    '  default_backend app',
    '',
    'backend app',
    '  http-reuse safe',
    `  server app 127.0.0.1:${ports.app}`,
    '',
  ].join('\n');
  const client = [
    ...global,
    'defaults',
    '  mode tcp',
    ...timeouts,
    '',
    'frontend app_out',
    `  bind 127.0.0.1:${ports.client}`,
    '  default_backend mesh',
    '',
    'backend mesh',
    `  server inbound 127.0.0.1:${ports.server} ssl crt ${dir}/client-haproxy.pem ca-file ${dir}/root.pem verify required alpn http/1.1 ssl-min-ver TLSv1.2`,
    '',
  ].join('\n');
  return { server, client };
}

/** One GET through a front door: must be 200 with the 1 KiB body. */
function getOnce(port: number, urlPath = REQUEST_PATH): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: { host: HOST }, agent: false, timeout: 5000 }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Sends a GET over TLS (with or without a client certificate) or plaintext; resolves to the status line, or why none came. */
function tryServerSide(port: number, dir: string, how: 'plaintext' | 'no-client-cert' | 'client-cert'): Promise<{ answer: string; protocol?: string; cipher?: string; group?: string }> {
  return new Promise((resolve) => {
    const root = fs.readFileSync(path.join(dir, 'root.pem'));
    const socket =
      how === 'plaintext'
        ? net.connect({ host: '127.0.0.1', port })
        : tls.connect({
            host: '127.0.0.1',
            port,
            ca: root,
            ALPNProtocols: ['http/1.1'],
            // The server certificate carries a SPIFFE URI SAN, no DNS name: the chain is what is checked here.
            checkServerIdentity: () => undefined,
            ...(how === 'client-cert' ? { key: fs.readFileSync(path.join(dir, 'client-key.pem')), cert: fs.readFileSync(path.join(dir, 'client-chain.pem')) } : {}),
          });
    let data = '';
    let info: { protocol?: string; cipher?: string; group?: string } = {};
    const done = (answer: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ answer, ...info });
    };
    const timer = setTimeout(() => done('no answer within 3 s'), 3000);
    socket.once(how === 'plaintext' ? 'connect' : 'secureConnect', () => {
      if (socket instanceof tls.TLSSocket) {
        const key = socket.getEphemeralKeyInfo() as { name?: string; type?: string } | null;
        info = { protocol: socket.getProtocol() ?? undefined, cipher: socket.getCipher()?.name, group: key?.name ?? key?.type };
      }
      socket.write(`GET ${REQUEST_PATH} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      const eol = data.indexOf('\r\n');
      if (eol >= 0) done(data.slice(0, eol));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => done(`refused (${err.code ?? err.message})`));
    socket.on('close', () => done(data ? data.split('\r\n')[0] : 'closed without an answer'));
  });
}

// ---------------------------------------------------------------------------------------------
// Orchestrator: measurement.

type Setup = 'direct' | 'cinch' | 'haproxy';
const SETUPS: readonly Setup[] = ['direct', 'cinch', 'haproxy'];

interface WrkResult {
  requests: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function wrkTime(text: string): number {
  const m = /([\d.]+)(us|ms|s|m)\b/.exec(text);
  if (!m) return NaN;
  const scale = { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2] as 'us' | 'ms' | 's' | 'm'];
  return Number(m[1]) * scale;
}

function parseWrk(out: string): WrkResult {
  const done = /(\d+) requests in ([\d.]+)(ms|s|m)/.exec(out);
  if (!done) throw new Error(`unexpected wrk output:\n${out}`);
  const seconds = Number(done[2]) * { ms: 0.001, s: 1, m: 60 }[done[3] as 'ms' | 's' | 'm'];
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const errors = (socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return {
    requests: Number(done[1]),
    seconds,
    p50Ms: wrkTime(/^\s*50%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    p99Ms: wrkTime(/^\s*99%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    errors,
  };
}

async function runWrk(cpu: number | undefined, port: number, seconds: number, connections: number, logFile: string): Promise<WrkResult> {
  const child = spawnChild(cpu, 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '5s', '-H', `Host: ${HOST}`, `http://127.0.0.1:${port}${REQUEST_PATH}`], logFile);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`wrk exited with ${String(code)}:\n${out}`);
  return parseWrk(out);
}

interface ProxyUsage {
  cpuMicros: number[];
  waitMicros: number;
  /** Machine-wide, from /proc/stat: CPU time the hypervisor gave to others (steal), and all CPU time, in ticks. */
  stealTicks: number;
  totalTicks: number;
}

function usageOf(pids: number[]): ProxyUsage {
  const each = pids.map(cpuOf);
  const machine = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return {
    cpuMicros: each.map((e) => e.cpuMicros),
    waitMicros: each.reduce((a, e) => a + e.waitMicros, 0),
    stealTicks: machine[7] ?? 0,
    totalTicks: machine.reduce((a, b) => a + b, 0),
  };
}

function usageDelta(before: ProxyUsage, after: ProxyUsage): ProxyUsage {
  return {
    cpuMicros: after.cpuMicros.map((c, i) => c - before.cpuMicros[i]),
    waitMicros: after.waitMicros - before.waitMicros,
    stealTicks: after.stealTicks - before.stealTicks,
    totalTicks: after.totalTicks - before.totalTicks,
  };
}

interface Measured {
  closed: { requests: number; seconds: number; errors: number; p50: number[]; p99: number[]; usage: ProxyUsage };
  open: { latencies: number[]; service: number[]; ok: number; errors: number; firstError?: string; elapsedMs: number; lagP50: number[]; lagP99: number[]; lagMax: number; usage: ProxyUsage; roundP99: number[] };
}

function emptyMeasured(n: number): Measured {
  const usage: ProxyUsage = { cpuMicros: new Array<number>(n).fill(0), waitMicros: 0, stealTicks: 0, totalTicks: 0 };
  return {
    closed: { requests: 0, seconds: 0, errors: 0, p50: [], p99: [], usage: structuredClone(usage) },
    open: { latencies: [], service: [], ok: 0, errors: 0, elapsedMs: 0, lagP50: [], lagP99: [], lagMax: 0, usage: structuredClone(usage), roundP99: [] },
  };
}

function addUsage(into: ProxyUsage, d: ProxyUsage): void {
  d.cpuMicros.forEach((c, i) => (into.cpuMicros[i] += c));
  into.waitMicros += d.waitMicros;
  into.stealTicks += d.stealTicks;
  into.totalTicks += d.totalTicks;
}

interface Profiled {
  side: string;
  /** Share of the busy time spent starting up (module loading, type stripping), left out of the rest. */
  startup: number;
  top: { name: string; share: number }[];
  categories: { name: string; share: number }[];
}

/** Self time per function and per broad category, from a .cpuprofile. */
function summarizeProfile(file: string, side: string): Profiled {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const fn = new Map<string, number>();
  const cat = new Map<string, number>();
  let busy = 0;
  let startup = 0;
  for (const [id, t] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') continue;
    if (/node:internal\/(modules|bootstrap|deps\/amaro|deps\/undici)/.test(url) || (!url && functionName === 'Module')) {
      startup += t;
      continue;
    }
    busy += t;
    const file = url.replace(/^file:\/\/.*?\/(src|node_modules)\//, '$1/');
    const name = url ? `${functionName || '(anonymous)'} ${file.startsWith('node:') ? file : path.basename(file)}:${lineNumber + 1}` : functionName;
    fn.set(name, (fn.get(name) ?? 0) + t);
    const category = !url
      ? functionName === '(garbage collector)'
        ? 'garbage collection'
        : 'native: syscalls, OpenSSL, V8 (program)'
      : /node:(_tls|tls)/.test(url)
        ? 'node:tls (JS side)'
        : /node:(_http|http)/.test(url)
          ? 'node:http (JS side)'
          : /node:(net|stream|internal\/streams)/.test(url)
            ? 'node:net + streams (JS side)'
            : url.includes('node_modules/prom-client')
              ? 'prom-client (metrics)'
              : url.includes('node_modules/winston') || url.includes('node_modules/logform')
                ? 'winston (logging)'
                : url.includes('/src/policy/')
                  ? 'policy core (authorization)'
                  : url.includes('/src/proxy/') || url.includes('/src/identity/')
                    ? 'src/proxy (Cinch data path)'
                    : 'other JS (events, timers, node internals)';
    cat.set(category, (cat.get(category) ?? 0) + t);
  }
  const rank = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, t]) => ({ name, share: t / busy }));
  return { side, startup: startup / (busy + startup), top: rank(fn, 15), categories: rank(cat, 12) };
}

async function main(): Promise<void> {
  const rounds = Number(args.rounds);
  const seconds = Number(args.seconds);
  const warmup = Number(args.warmup);
  const connections = Number(args.connections);
  const rate = Number(args.rate);
  const fixedSeconds = Number(args['fixed-seconds']);

  const wrkVersion = ensureDebianTool('wrk', 'wrk');
  const haproxyPkg = ensureDebianTool('haproxy', 'haproxy');
  const haproxyVersion = /version (\S+)/.exec(execFileSync('haproxy', ['-v'], { encoding: 'utf8' }))?.[1] ?? '?';
  const haproxySsl = /Running on OpenSSL version : (OpenSSL \S+)/.exec(execFileSync('haproxy', ['-vv'], { encoding: 'utf8' }))?.[1] ?? '?';

  const hardLimit = setTimeout(() => {
    console.error(`proxy bench: over ${HARD_LIMIT_MS / 1000} s; stopping everything`);
    killChildren();
    process.exit(1);
  }, HARD_LIMIT_MS);
  hardLimit.unref();
  const started = performance.now();
  const loadBefore = os.loadavg()[0];

  const cpus = os.availableParallelism();
  const pin = args.pin === 'on' || (args.pin === 'auto' && cpus >= 2 && have('taskset'));
  const cpu = pin
    ? cpus >= 4
      ? { load: 0, app: 1, client: 2, server: 3 }
      : { load: 0, app: 0, client: 1, server: 1 }
    : { load: undefined, app: undefined, client: undefined, server: undefined };
  const layout = !pin
    ? 'not pinned to CPUs'
    : cpus >= 4
      ? 'load generators on CPU 0, app on CPU 1, client-side proxy on CPU 2, server-side proxy on CPU 3'
      : 'load generators and app on CPU 0; both proxies of a setup on CPU 1';

  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-bench-proxy-'));
  const dir = tmpDir;
  const log = (name: string) => path.join(dir, `${name}.log`);
  await writeCertificates(dir);
  const profileDir = args.profile ? path.resolve(args.profile) : undefined;
  if (profileDir) fs.mkdirSync(profileDir, { recursive: true });
  const profileFlags = (name: string) => (profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${name}.cpuprofile`] : []);

  // The proxies run as they ship: bundled JavaScript (bin/build-dist.ts), the sidecar entry here and
  // dist/proxy.js for the real `cinch proxy` below.
  let sidecar = SIDECAR;
  if (!args['from-source']) {
    sidecar = path.join(dir, 'proxy-sidecar.js');
    await bundle(SIDECAR, sidecar);
    await bundle(PROXY_ENTRY, PROXY_DIST);
  }
  const proxyFlags = (name: string) => [...(args['proxy-node-flags'] ?? '').split(' ').filter(Boolean), ...profileFlags(name)];

  const app = await startServer(cpu.app, 'app', SELF, ['--role', 'app'], log('app'));
  const inbound = await startServer(cpu.server, 'Cinch inbound proxy', sidecar, ['--side', 'server', '--dir', dir, '--port', String(app.port)], log('cinch-inbound'), proxyFlags('cinch-inbound'));
  const outbound = await startServer(cpu.client, 'Cinch outbound proxy', sidecar, ['--side', 'client', '--dir', dir, '--port', String(inbound.port)], log('cinch-outbound'), proxyFlags('cinch-outbound'));
  const hapPorts = { app: app.port, server: await freePort(), client: await freePort() };
  const hapConfig = haproxyConfigs(dir, hapPorts);
  fs.writeFileSync(path.join(dir, 'haproxy-server.cfg'), hapConfig.server);
  fs.writeFileSync(path.join(dir, 'haproxy-client.cfg'), hapConfig.client);
  const hapServer = spawnChild(cpu.server, 'haproxy', ['-db', '-f', path.join(dir, 'haproxy-server.cfg')], log('haproxy-server'));
  await waitForPort(hapPorts.server, hapServer, 'server-side haproxy');
  const hapClient = spawnChild(cpu.client, 'haproxy', ['-db', '-f', path.join(dir, 'haproxy-client.cfg')], log('haproxy-client'));
  await waitForPort(hapPorts.client, hapClient, 'client-side haproxy');

  // Idle memory: every proxy is up and has not carried a byte yet.
  await new Promise((r) => setTimeout(r, 500));
  const rssIdle = {
    cinchClient: readStatus(outbound.child.pid!),
    cinchServer: readStatus(inbound.child.pid!),
    hapClient: readStatus(hapClient.pid!),
    hapServer: readStatus(hapServer.pid!),
  };
  const baseline = await nodeBaselines(log('baseline'));
  const realIdle = await realProxyIdle(log('cinch-proxy-command'), args['from-source']);
  const realIdleSource = args['from-source'] ? realIdle : await realProxyIdle(log('cinch-proxy-command-source'), true);

  const front: Record<Setup, number> = { direct: app.port, cinch: outbound.port, haproxy: hapPorts.client };
  const proxyPids: Record<Setup, number[]> = { direct: [app.child.pid!], cinch: [outbound.child.pid!, inbound.child.pid!], haproxy: [hapClient.pid!, hapServer.pid!] };

  // Before measuring anything: every path answers 1 KiB, and both server sides hold the same line.
  for (const setup of SETUPS) {
    const r = await getOnce(front[setup]);
    if (r.status !== 200 || r.bytes !== BODY_BYTES) throw new Error(`${setup}: GET ${REQUEST_PATH} answered ${r.status} with ${r.bytes} bytes`);
    const denied = await getOnce(front[setup], '/admin/users');
    if (setup !== 'direct' && denied.status !== 403) throw new Error(`${setup}: GET /admin/users answered ${denied.status}, expected 403 from the DENY policy`);
  }
  const checks: Record<'cinch' | 'haproxy', Record<'plaintext' | 'no-client-cert' | 'client-cert', Awaited<ReturnType<typeof tryServerSide>>>> = {
    cinch: { plaintext: await tryServerSide(inbound.port, dir, 'plaintext'), 'no-client-cert': await tryServerSide(inbound.port, dir, 'no-client-cert'), 'client-cert': await tryServerSide(inbound.port, dir, 'client-cert') },
    haproxy: { plaintext: await tryServerSide(hapPorts.server, dir, 'plaintext'), 'no-client-cert': await tryServerSide(hapPorts.server, dir, 'no-client-cert'), 'client-cert': await tryServerSide(hapPorts.server, dir, 'client-cert') },
  };
  for (const side of ['cinch', 'haproxy'] as const) {
    for (const how of ['plaintext', 'no-client-cert'] as const) {
      if (checks[side][how].answer.startsWith('HTTP/1.1 200')) throw new Error(`${side}'s server side answered 200 to a ${how} request: not the same mTLS`);
    }
    if (!checks[side]['client-cert'].answer.startsWith('HTTP/1.1 200')) throw new Error(`${side}'s server side refused the mesh client certificate: ${checks[side]['client-cert'].answer}`);
  }

  const measured: Record<Setup, Measured> = { direct: emptyMeasured(1), cinch: emptyMeasured(2), haproxy: emptyMeasured(2) };
  console.error(
    `proxy bench: ${rounds} round(s) per setup of ${seconds} s closed loop (wrk, ${connections} connections) and ${fixedSeconds} s at ${rate} rps (open loop); ${layout}`,
  );
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? SETUPS : [...SETUPS].reverse();
    for (const setup of order) {
      const m = measured[setup];
      const pids = proxyPids[setup];
      console.error(`  round ${round + 1}/${rounds}: ${setup}, max throughput`);
      await runWrk(cpu.load, front[setup], warmup, connections, log('wrk'));
      let before = usageOf(pids);
      const w = await runWrk(cpu.load, front[setup], seconds, connections, log('wrk'));
      addUsage(m.closed.usage, usageDelta(before, usageOf(pids)));
      m.closed.requests += w.requests;
      m.closed.seconds += w.seconds;
      m.closed.errors += w.errors;
      m.closed.p50.push(w.p50Ms);
      m.closed.p99.push(w.p99Ms);
      console.error(`  round ${round + 1}/${rounds}: ${setup}, ${rate} rps`);
      before = usageOf(pids);
      const o = await runNodeRole<OpenLoopResult>(cpu.load, 'openloop', ['--port', String(front[setup]), '--rate', String(rate), '--warmup', String(warmup), '--fixed-seconds', String(fixedSeconds), '--connections', String(connections)], log('openloop'));
      addUsage(m.open.usage, usageDelta(before, usageOf(pids)));
      m.open.latencies.push(...o.latencies);
      m.open.service.push(...o.serviceLatencies);
      m.open.ok += o.ok;
      m.open.errors += o.errors;
      m.open.firstError ??= o.firstError;
      m.open.elapsedMs += o.elapsedMs;
      m.open.lagP50.push(o.lagP50);
      m.open.lagP99.push(o.lagP99);
      m.open.lagMax = Math.max(m.open.lagMax, o.lagMax);
      m.open.roundP99.push(percentile(Float64Array.from(o.latencies).sort(), 0.99));
    }
  }
  const rssAfter = {
    cinchClient: readStatus(outbound.child.pid!),
    cinchServer: readStatus(inbound.child.pid!),
    hapClient: readStatus(hapClient.pid!),
    hapServer: readStatus(hapServer.pid!),
  };
  const benchSeconds = (performance.now() - started) / 1000;
  const loadAfter = os.loadavg()[0];
  await stopAll();
  clearTimeout(hardLimit);

  const profiles = profileDir
    ? (['cinch-outbound', 'cinch-inbound'] as const)
        .map((name) => path.join(profileDir, `${name}.cpuprofile`))
        .filter((f) => fs.existsSync(f))
        .map((f) => summarizeProfile(f, path.basename(f, '.cpuprofile')))
    : [];

  report({
    measured,
    rssIdle,
    rssAfter,
    baseline,
    realIdle,
    realIdleSource,
    fromSource: args['from-source'],
    checks,
    rounds,
    seconds,
    fixedSeconds,
    connections,
    rate,
    layout,
    pin,
    benchSeconds,
    loadBefore,
    loadAfter,
    versions: { wrk: wrkVersion, haproxy: `${haproxyVersion} (Debian ${haproxyPkg}, ${haproxySsl})` },
    profiles,
  });
}

// ---------------------------------------------------------------------------------------------
// Report.

interface Report {
  measured: Record<Setup, Measured>;
  rssIdle: Record<'cinchClient' | 'cinchServer' | 'hapClient' | 'hapServer', MemStatus>;
  rssAfter: Report['rssIdle'];
  baseline: { jsKiB: number; tsKiB: number };
  realIdle: { rssKiB: number; hwmKiB: number } | string;
  /** The same command run from the TypeScript sources (CINCH_FROM_SOURCE=1). */
  realIdleSource: { rssKiB: number; hwmKiB: number } | string;
  /** The proxies ran from their TypeScript sources (--from-source) rather than bundled as shipped. */
  fromSource: boolean;
  checks: Record<'cinch' | 'haproxy', Record<'plaintext' | 'no-client-cert' | 'client-cert', { answer: string; protocol?: string; cipher?: string; group?: string }>>;
  rounds: number;
  seconds: number;
  fixedSeconds: number;
  connections: number;
  rate: number;
  layout: string;
  pin: boolean;
  benchSeconds: number;
  loadBefore: number;
  loadAfter: number;
  versions: { wrk: string; haproxy: string };
  profiles: Profiled[];
}

function report(r: Report): void {
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  const median = (a: number[]) => percentile(Float64Array.from(a).sort(), 0.5);
  const stats = (m: Measured) => {
    const lat = Float64Array.from(m.open.latencies).sort();
    const svc = Float64Array.from(m.open.service).sort();
    const closedCpu = sum(m.closed.usage.cpuMicros);
    const openCpu = sum(m.open.usage.cpuMicros);
    return {
      rps: m.closed.requests / m.closed.seconds,
      satP50: median(m.closed.p50),
      satP99: median(m.closed.p99),
      satCpuPerReq: closedCpu / Math.max(1, m.closed.requests),
      satCpuSides: m.closed.usage.cpuMicros.map((c) => c / Math.max(1, m.closed.requests)),
      satBusy: closedCpu / 1e6 / m.closed.seconds,
      satWait: m.closed.usage.waitMicros / 1e6 / m.closed.seconds,
      satSteal: m.closed.usage.stealTicks / Math.max(1, m.closed.usage.totalTicks),
      closedErrors: m.closed.errors,
      achieved: m.open.ok / (m.open.elapsedMs / 1000),
      p50: percentile(lat, 0.5),
      p90: percentile(lat, 0.9),
      p99: percentile(lat, 0.99),
      p999: percentile(lat, 0.999),
      max: lat.at(-1) ?? NaN,
      svcP50: percentile(svc, 0.5),
      svcP99: percentile(svc, 0.99),
      openCpuPerReq: openCpu / Math.max(1, m.open.ok),
      openBusy: openCpu / 1e6 / (m.open.elapsedMs / 1000),
      openWait: m.open.usage.waitMicros / 1e6 / (m.open.elapsedMs / 1000),
      openSteal: m.open.usage.stealTicks / Math.max(1, m.open.usage.totalTicks),
      openErrors: m.open.errors,
      firstError: m.open.firstError,
      lagP50: median(m.open.lagP50),
      lagP99: Math.max(...m.open.lagP99),
      lagMax: m.open.lagMax,
    };
  };
  const s = { direct: stats(r.measured.direct), cinch: stats(r.measured.cinch), haproxy: stats(r.measured.haproxy) };
  const n0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
  const n1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
  const n2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  const ratio = (a: number, b: number) => (Number.isFinite(a / b) && b > 0 ? `${(a / b).toFixed(2)}×` : '-');
  const mib = (kib: number) => kib / 1024;
  const added = (setup: 'cinch' | 'haproxy', key: 'p50' | 'p99' | 'svcP99') => s[setup][key] - s.direct[key];

  type Row = [string, string, string, string, string];
  const rows: Row[] = [
    [`**max throughput: wrk, 1 thread, ${r.connections} keep-alive connections (closed loop)**`, '', '', '', ''],
    ['requests/s', n0(s.direct.rps), n0(s.cinch.rps), n0(s.haproxy.rps), ratio(s.cinch.rps, s.haproxy.rps)],
    ['p50 / p99 latency at saturation (ms, wrk)', `${n2(s.direct.satP50)} / ${n2(s.direct.satP99)}`, `${n2(s.cinch.satP50)} / ${n2(s.cinch.satP99)}`, `${n2(s.haproxy.satP50)} / ${n2(s.haproxy.satP99)}`, ''],
    ['proxy CPU per request, client + server side (µs)', '', `${n1(s.cinch.satCpuSides[0])} + ${n1(s.cinch.satCpuSides[1])}`, `${n1(s.haproxy.satCpuSides[0])} + ${n1(s.haproxy.satCpuSides[1])}`, ratio(s.cinch.satCpuPerReq, s.haproxy.satCpuPerReq)],
    ['proxies CPU busy (cores; direct: the app)', n2(s.direct.satBusy), n2(s.cinch.satBusy), n2(s.haproxy.satBusy), ''],
    ['proxies waiting for a CPU (cores)', '', n2(s.cinch.satWait), n2(s.haproxy.satWait), ''],
    ['machine CPU time stolen by the hypervisor', pct(s.direct.satSteal), pct(s.cinch.satSteal), pct(s.haproxy.satSteal), ''],
    ['errors', String(s.direct.closedErrors), String(s.cinch.closedErrors), String(s.haproxy.closedErrors), ''],
    [`**fixed ${n0(r.rate)} rps (open loop, latency from the scheduled time)**`, '', '', '', ''],
    ['requests/s achieved', n0(s.direct.achieved), n0(s.cinch.achieved), n0(s.haproxy.achieved), ''],
    ['p50 latency (ms)', n2(s.direct.p50), n2(s.cinch.p50), n2(s.haproxy.p50), ''],
    ['p90 latency (ms)', n2(s.direct.p90), n2(s.cinch.p90), n2(s.haproxy.p90), ''],
    ['p99 latency (ms)', n2(s.direct.p99), n2(s.cinch.p99), n2(s.haproxy.p99), ''],
    ['p99.9 / max latency (ms)', `${n2(s.direct.p999)} / ${n2(s.direct.max)}`, `${n2(s.cinch.p999)} / ${n2(s.cinch.max)}`, `${n2(s.haproxy.p999)} / ${n2(s.haproxy.max)}`, ''],
    ['**added p50 vs direct (ms)**', '', n2(added('cinch', 'p50')), n2(added('haproxy', 'p50')), ratio(added('cinch', 'p50'), added('haproxy', 'p50'))],
    ['**added p99 vs direct (ms)**', '', n2(added('cinch', 'p99')), n2(added('haproxy', 'p99')), ratio(added('cinch', 'p99'), added('haproxy', 'p99'))],
    ['p99 per round (ms)', r.measured.direct.open.roundP99.map(n2).join(', '), r.measured.cinch.open.roundP99.map(n2).join(', '), r.measured.haproxy.open.roundP99.map(n2).join(', '), ''],
    ['load generator timer lag p99 per round (ms)', r.measured.direct.open.lagP99.map(n2).join(', '), r.measured.cinch.open.lagP99.map(n2).join(', '), r.measured.haproxy.open.lagP99.map(n2).join(', '), ''],
    ['p50 / p99 from the actual send (ms)', `${n2(s.direct.svcP50)} / ${n2(s.direct.svcP99)}`, `${n2(s.cinch.svcP50)} / ${n2(s.cinch.svcP99)}`, `${n2(s.haproxy.svcP50)} / ${n2(s.haproxy.svcP99)}`, ''],
    ['proxy CPU per request, both sides (µs)', '', n1(s.cinch.openCpuPerReq), n1(s.haproxy.openCpuPerReq), ratio(s.cinch.openCpuPerReq, s.haproxy.openCpuPerReq)],
    ['proxies CPU busy (cores)', n2(s.direct.openBusy), n2(s.cinch.openBusy), n2(s.haproxy.openBusy), ''],
    ['proxies waiting for a CPU (cores)', '', n2(s.cinch.openWait), n2(s.haproxy.openWait), ''],
    ['machine CPU time stolen by the hypervisor', pct(s.direct.openSteal), pct(s.cinch.openSteal), pct(s.haproxy.openSteal), ''],
    ['errors', String(s.direct.openErrors), String(s.cinch.openErrors), String(s.haproxy.openErrors), ''],
    ['**memory (RSS, MiB)**', '', '', '', ''],
    ['client-side proxy: idle / after load / peak', '', `${n1(mib(r.rssIdle.cinchClient.rssKiB))} / ${n1(mib(r.rssAfter.cinchClient.rssKiB))} / ${n1(mib(r.rssAfter.cinchClient.hwmKiB))}`, `${n1(mib(r.rssIdle.hapClient.rssKiB))} / ${n1(mib(r.rssAfter.hapClient.rssKiB))} / ${n1(mib(r.rssAfter.hapClient.hwmKiB))}`, ''],
    ['server-side proxy: idle / after load / peak', '', `${n1(mib(r.rssIdle.cinchServer.rssKiB))} / ${n1(mib(r.rssAfter.cinchServer.rssKiB))} / ${n1(mib(r.rssAfter.cinchServer.hwmKiB))}`, `${n1(mib(r.rssIdle.hapServer.rssKiB))} / ${n1(mib(r.rssAfter.hapServer.rssKiB))} / ${n1(mib(r.rssAfter.hapServer.hwmKiB))}`, ''],
    ['after load, client / server side: private (anonymous) memory', '', `${n1(mib(r.rssAfter.cinchClient.anonKiB))} / ${n1(mib(r.rssAfter.cinchServer.anonKiB))}`, `${n1(mib(r.rssAfter.hapClient.anonKiB))} / ${n1(mib(r.rssAfter.hapServer.anonKiB))}`, ''],
    ['after load, client / server side: file-backed pages (the executable, shared)', '', `${n1(mib(r.rssAfter.cinchClient.fileKiB))} / ${n1(mib(r.rssAfter.cinchServer.fileKiB))}`, `${n1(mib(r.rssAfter.hapClient.fileKiB))} / ${n1(mib(r.rssAfter.hapServer.fileKiB))}`, ''],
    [`the real \`cinch proxy\` command, idle, before its first certificate${r.fromSource ? ' (from the TypeScript sources)' : ' (dist/proxy.js, as shipped)'}`, '', typeof r.realIdle === 'string' ? '-' : n1(mib(r.realIdle.rssKiB)), '', ''],
    ...(r.fromSource ? [] : [['the same, run from the TypeScript sources (CINCH_FROM_SOURCE=1)', '', typeof r.realIdleSource === 'string' ? '-' : n1(mib(r.realIdleSource.rssKiB)), '', ''] as Row]),
    ['Node 24 with nothing loaded: JavaScript / TypeScript', '', `${n1(mib(r.baseline.jsKiB))} / ${n1(mib(r.baseline.tsKiB))}`, '', ''],
  ];
  const header: Row = ['', 'direct', 'Cinch', 'haproxy', 'Cinch ÷ haproxy'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].replaceAll('**', '').length)));
  const line = (row: Row) => row.map((c, i) => (i === 0 ? c.replaceAll('**', '').padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log([line(header), ...rows.map(line)].join('\n'));

  const throughputRatio = s.cinch.rps / s.haproxy.rps;
  const addedCinch = added('cinch', 'p99');
  const addedHap = added('haproxy', 'p99');
  const maxRssMiB = Math.max(mib(r.rssAfter.cinchClient.rssKiB), mib(r.rssAfter.cinchServer.rssKiB));
  const maxPeakMiB = Math.max(mib(r.rssAfter.cinchClient.hwmKiB), mib(r.rssAfter.cinchServer.hwmKiB));
  const heavier = r.rssAfter.cinchClient.rssKiB > r.rssAfter.cinchServer.rssKiB ? r.rssAfter.cinchClient : r.rssAfter.cinchServer;
  const hapSaturated = s.haproxy.satBusy >= 0.9;
  // The same round for all three setups (setups alternate order inside each round).
  const perRound = r.measured.direct.open.roundP99.map((d, i) => ({ cinch: r.measured.cinch.open.roundP99[i] - d, haproxy: r.measured.haproxy.open.roundP99[i] - d }));
  const roundsMet = perRound.filter((x) => x.cinch <= TARGET_P99_RATIO * x.haproxy).length;
  // A single round's tail can be set by a stall of the whole machine; the median round votes that out.
  const medCinch = median(perRound.map((x) => x.cinch));
  const medHap = median(perRound.map((x) => x.haproxy));
  const stalledRounds = r.measured.direct.open.lagP99
    .map((_, i) => Math.max(...SETUPS.map((setup) => r.measured[setup].open.lagP99[i])))
    .map((lag, i) => ({ round: i + 1, lag }))
    .filter((x) => x.lag > 5);
  const contended = s.cinch.openWait > 0.05 || s.haproxy.openWait > 0.05;
  const verdicts = [
    `Throughput, Cinch ÷ haproxy: ${n2(throughputRatio)}× (target ≥ ${TARGET_THROUGHPUT_RATIO}×): ${throughputRatio >= TARGET_THROUGHPUT_RATIO ? 'met' : 'NOT met'}` +
      (hapSaturated
        ? ''
        : ` — haproxy's two processes used only ${n2(s.haproxy.satBusy)} of a core, so the load side (wrk and the app${r.pin ? ', sharing one core' : ''}) capped haproxy: its figure is a floor and the ratio a ceiling`),
    (medHap > 0.005
      ? `Added p99 at ${n0(r.rate)} rps, median of the ${perRound.length} rounds: Cinch ${n2(medCinch)} ms vs haproxy ${n2(medHap)} ms = ${n2(medCinch / medHap)}× (target ≤ ${TARGET_P99_RATIO}×): ${medCinch <= TARGET_P99_RATIO * medHap ? 'met' : 'NOT met'}`
      : `Added p99 at ${n0(r.rate)} rps, median of the ${perRound.length} rounds: Cinch ${n2(medCinch)} ms vs haproxy ${n2(medHap)} ms: not conclusive (haproxy added nothing measurable over direct)`) +
      `; it holds in ${roundsMet} of ${perRound.length} rounds (Cinch vs haproxy: ${perRound.map((x) => `${n2(x.cinch)} vs ${n2(x.haproxy)} ms`).join('; ')}); all rounds pooled: ${n2(addedCinch)} vs ${n2(addedHap)} ms` +
      (stalledRounds.length > 0
        ? `. The load side itself stalled in round ${stalledRounds.map((x) => `${x.round} (generator lag p99 ${n2(x.lag)} ms)`).join(', ')}: such stalls put other tenants' noise into the baseline and the proxies' columns alike`
        : '') +
      `. At ${n0(r.rate)} rps Cinch's two processes keep ${n2(s.cinch.openBusy)} cores busy, haproxy's ${n2(s.haproxy.openBusy)}${r.layout.includes('both proxies of a setup on CPU 1') ? ', on the one core each pair shares' : ''}: ` +
      'with that little headroom, any stall (GC, the other proxy, the hypervisor) leaves a backlog that drains slowly, which is what stretches the tail' +
      (contended
        ? `. The proxies' threads spent ${n2(s.cinch.openWait)} (Cinch) and ${n2(s.haproxy.openWait)} (haproxy) core-seconds per second runnable but waiting for a CPU (for each other on their shared core, or for other work on the machine)`
        : ''),
    `RSS per Cinch proxy process after load: ${n1(maxRssMiB)} MiB (peak ${n1(maxPeakMiB)} MiB; target ≤ ${TARGET_RSS_MIB} MB, taken as MiB): ${maxRssMiB <= TARGET_RSS_MIB ? 'met' : 'NOT met'}` +
      ` — Node 24 alone takes ${n1(mib(r.baseline.jsKiB))} MiB here, ${n1(mib(r.baseline.tsKiB))} MiB once type stripping is loaded` +
      (typeof r.realIdle === 'string' ? '' : `; the whole \`cinch proxy\` command idles at ${n1(mib(r.realIdle.rssKiB))} MiB`) +
      `. Of the larger proxy's RSS, ${n1(mib(heavier.fileKiB))} MiB are file-backed pages (the node executable's code and read-only data that this process has touched, held once in the page cache for every process running it; haproxy's are ${n1(mib(r.rssAfter.hapServer.fileKiB))} MiB) and ${n1(mib(heavier.anonKiB))} MiB its private memory (V8 heap, malloc, TLS buffers)`,
  ];
  const tlsLine = (side: 'cinch' | 'haproxy') => {
    const c = r.checks[side];
    return `${c['client-cert'].protocol} ${c['client-cert'].cipher} (${c['client-cert'].group ?? '?'}); plaintext → ${c.plaintext.answer}; TLS without a client certificate → ${c['no-client-cert'].answer}; with the mesh client certificate → ${c['client-cert'].answer}`;
  };
  const notes = [
    `What each setup does per request. Cinch: the outbound proxy sniffs the first bytes, originates mTLS (ALPN cinch-http/1.1) and checks the server's SPIFFE ID against the meshed destination's, then splices bytes; the inbound proxy terminates TLS (STRICT), checks the client's SPIFFE ID, reads each HTTP/1.1 request head itself (src/proxy/http1.ts; unusual requests go to node:http), evaluates the AuthorizationPolicies for every request, records Istio's request metrics, writes the rewritten head (normalized path, XFCC) to a pooled keep-alive app connection and moves bodies and responses as bytes, reading only their framing. ` +
      `haproxy: the client side is a TCP proxy originating TLS with the client certificate and verifying the server's chain against the root; the server side terminates TLS with \`verify required\` + \`ca-file\`, runs in HTTP mode with the same allow/deny rules as ACLs, and reuses app connections. haproxy checks chains only (no SPIFFE ID check), so it does a little less.`,
    `Same mTLS on both server sides (checked before measuring): Cinch ${tlsLine('cinch')}. haproxy ${tlsLine('haproxy')}. GET /admin/users answers 403 through both.`,
    `Closed loop: wrk ${r.versions.wrk}, ${r.seconds} s per round after a ${args.warmup} s warm-up, ${r.rounds} round(s), requests/s over all rounds, wrk's p50/p99 the median of the rounds. ` +
      `Open loop: a Node generator in this file${GENERATOR_NICENESS === undefined ? '' : ` at nice ${GENERATOR_NICENESS} (the instrument, a few percent of a core: so its timer fires on time on a shared machine)`} (raw HTTP/1.1 on ${r.connections} keep-alive connections, one request in flight per connection, requests due every ${n2(1000 / r.rate)} ms and queued when no connection is free, which happens only when all ${r.connections} are waiting on a stalled path: latency "from the actual send" leaves that queueing out); ` +
      `latency runs from each request's scheduled time, so the generator's own timer lag is in every column alike: its timer got to requests a median ${n2(s.direct.lagP50)} / ${n2(s.cinch.lagP50)} / ${n2(s.haproxy.lagP50)} ms after they were due (direct / Cinch / haproxy), p99 up to ${n2(Math.max(s.direct.lagP99, s.cinch.lagP99, s.haproxy.lagP99))} ms, max ${n2(Math.max(s.direct.lagMax, s.cinch.lagMax, s.haproxy.lagMax))} ms. "Added" subtracts the direct column, which removes that lag.`,
    `CPU: ${r.layout}${r.pin ? ' (taskset)' : ''}; haproxy runs with nbthread 1, like Node's one event loop. Proxy CPU is user + system time of the proxy processes from /proc/<pid>/stat over each measured window, divided by the requests answered in it; "waiting for a CPU" is their threads' run-queue time (/proc/<pid>/task/*/schedstat); ` +
      '"stolen by the hypervisor" is the steal column of /proc/stat over the same windows: on a virtual machine it arrives in bursts during which nothing in the guest runs, and such bursts set tail latencies that no setup can avoid.',
    `Memory: VmRSS / VmHWM from /proc/<pid>/status, idle (listening, no traffic yet) and after all the load. Each Cinch proxy here is one listener in its own process (bench/proxy-sidecar.ts, ` +
      (r.fromSource
        ? 'run from its TypeScript sources, --from-source: type stripping holds memory in proportion to the largest file it stripped); '
        : 'bundled by bin/build-dist.ts into one JavaScript file, as `cinch proxy` ships in dist/proxy.js); ') +
      (args['proxy-node-flags'] ? `both run with \`${args['proxy-node-flags']}\` (what bin/cinch.js gives \`cinch proxy\`); ` : '') +
      `\`cinch proxy\` runs both listeners plus the identity agent, config stream and admin server in one process: ` +
      (typeof r.realIdle === 'string' ? r.realIdle : `${n1(mib(r.realIdle.rssKiB))} MiB idle, measured in a private network namespace (unshare --net) where it binds its fixed ports and reaches no CA`) +
      '.',
    `Machine: load average (1 min) ${n2(r.loadBefore)} before and ${n2(r.loadAfter)} after, ${os.availableParallelism()} CPUs; the run took ${n1(r.benchSeconds)} s after the tools were in place.`,
  ];
  if (s.cinch.firstError || s.haproxy.firstError || s.direct.firstError) notes.push(`First open-loop error: direct ${s.direct.firstError ?? '-'}; Cinch ${s.cinch.firstError ?? '-'}; haproxy ${s.haproxy.firstError ?? '-'}.`);
  console.log(`\n${verdicts.join('\n')}\n\n${notes.join('\n')}`);

  const profileLines: string[] = [];
  for (const p of r.profiles) {
    profileLines.push(`### ${p.side}: self time by category (start-up, ${pct(p.startup)} of the profile, left out)`, '', '| category | share of busy time |', '| --- | ---: |', ...p.categories.map((c) => `| ${c.name} | ${pct(c.share)} |`), '');
    profileLines.push(`### ${p.side}: top functions (self time)`, '', '| function | share |', '| --- | ---: |', ...p.top.map((c) => `| \`${c.name}\` | ${pct(c.share)} |`), '');
  }
  if (profileLines.length > 0) {
    console.log(`\n${profileLines.join('\n')}`);
    console.log('\nprofiled run (V8 sampling adds overhead): bench/results/proxy.md not written');
    return;
  }

  const cpuModel = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const md = [
    '# Proxy data path: Cinch vs haproxy vs direct',
    '',
    `Generated by \`npx node bench/proxy.ts --seconds ${r.seconds} --warmup ${args.warmup} --connections ${r.connections} --rate ${r.rate} --fixed-seconds ${r.fixedSeconds} --rounds ${r.rounds} --pin ${args.pin}\` on ${new Date().toISOString().slice(0, 10)} — ` +
      `Node ${process.versions.node} (OpenSSL ${process.versions.openssl}), haproxy ${r.versions.haproxy}, ${os.availableParallelism()} × ${cpuModel}, Linux ${os.release()}.`,
    '',
    'HTTP/1.1 keep-alive, `GET /api/v1/items` answered with 1 KiB by a node:http app, all on 127.0.0.1. Three setups measured alternately in one run: ' +
      '**direct** (load generator → app), **Cinch** (load generator → `OutboundProxy` → mTLS → `InboundProxy` → app, each proxy its own process) and ' +
      '**haproxy** (load generator → client-side haproxy → mTLS → server-side haproxy → app). P-256 SPIFFE certificates from the real CA core, the same keys for both meshes.',
    '',
    `| | ${header.slice(1).join(' | ')} |`,
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map((row) => `| ${row.join(' | ')} |`),
    '',
    '## Targets (issue 5)',
    '',
    ...verdicts.map((v) => `- ${v}`),
    '',
    '## Notes',
    '',
    ...notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
  const out = path.resolve(args.out ?? DEFAULT_RESULTS);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, md);
  console.log(`\nwritten to ${path.relative(process.cwd(), out)}`);
}

// ---------------------------------------------------------------------------------------------

const fatal = (err: unknown) => {
  console.error(err);
  killChildren();
  process.exit(1);
};

if (args.role === 'app') await appRole();
else if (args.role === 'openloop') await openLoopRole();
else {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => fatal(new Error(`stopped by ${signal}`)));
  process.once('exit', killChildren);
  await main().catch(fatal);
}
