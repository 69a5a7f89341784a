// CA server benchmark: the full CSR API path (HTTPS keep-alive, ServiceAccount token checked by
// TokenReview and then cached, CSR parse + signature check, signing, JSON) side by side in one run
// with `cfssl serve` (Debian's golang-cfssl) signing the same CSR with the same root, plus the
// signer alone.
//
//   npx node bench/ca-server.ts [--seconds 4] [--warmup 1] [--concurrency 1,16] [--rounds 2]
//                               [--pin auto|on|off] [--kubeconfig PATH] [--profile DIR]
//
// Processes: this one (orchestrator), the Cinch server, cfssl, and a load generator, so the client's
// work never lands on a server. With --pin (auto: taskset present and 2+ CPUs) both servers share CPU 0
// and the load generator gets CPU 1: each server has exactly one core, which is what Cinch's single
// event loop uses anyway; without pinning, Go would spread cfssl over every core.
// Tokens are real: a local kube-apiserver is started (test/cluster/cluster.ts) unless --kubeconfig is
// given; the first request of each 10 s window goes to TokenReview, the rest hit the cache.
// The rate limiter stays in the path, with a bucket large enough not to refuse the load.
// Server CPU per certificate comes from /proc/<pid>/stat, so it holds even on a busy machine.
// Figures go to stdout and bench/results/ca-server.md. The target (>= 1.0x cfssl) is reported, not enforced.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createRootCa } from '../src/ca/create.ts';
import { checkCsr } from '../src/ca/csr.ts';
import { FastLeafSigner } from '../src/ca/fast-signer.ts';
import { readCaDir } from '../src/ca/files.ts';
import { caRouter } from '../src/ca/http.ts';
import { CA_CERT_FILE, CA_FILE_NAMES, CA_KEY_FILE, loadCaMaterial } from '../src/ca/material.ts';
import { createCaMetrics } from '../src/ca/metrics.ts';
import { TokenBucketLimiter } from '../src/ca/rate-limit.ts';
import { createMeshServer } from '../src/controlplane/mesh-server.ts';
import { issueServingCertificate } from '../src/controlplane/serving-cert.ts';
import { TokenAuthenticator } from '../src/identity/token-review.ts';
import { createLogger } from '../src/telemetry/logger.ts';
import { createRegistry } from '../src/telemetry/metrics.ts';
import { startCluster, stopCluster, type ClusterState } from '../test/cluster/cluster.ts';
import { freePort, waitForPort } from '../test/support/ports.ts';
import { cpuSeconds } from './proc.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const RESULTS = path.join(ROOT, 'bench/results/ca-server.md');
const SELF = path.join(ROOT, 'bench/ca-server.ts');
const TRUST_DOMAIN = 'cluster.local';
const TARGET_RATIO = 1.0;
/**
 * Unmeasured load on each server before the first round, at the highest concurrency: Node compiles
 * its hot path (TurboFan, on the same pinned core) during the first seconds of load, which would
 * otherwise land in round 1's figures. cfssl, compiled ahead of time, gets the same.
 */
const PREWARM_SECONDS = 2;
/** Past this the run is stopped and fails loudly (the cluster start alone is ~10 s). */
const HARD_LIMIT_MS = 240_000;

const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    seconds: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '1,16' },
    rounds: { type: 'string', default: '2' },
    pin: { type: 'string', default: 'auto' },
    kubeconfig: { type: 'string' },
    /** Write a V8 CPU profile of the Cinch server into this folder. */
    profile: { type: 'string' },
    // Child roles.
    dir: { type: 'string' },
    url: { type: 'string' },
    body: { type: 'string' },
    token: { type: 'string' },
    ca: { type: 'string' },
    csr: { type: 'string' },
  },
});

interface LoadResult {
  count: number;
  errors: number;
  firstError?: string;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  responseBytes: number;
}

/** Per CPU-second of the one process doing the work: on a shared machine, wall-clock rates move with the neighbours. */
interface SignerResult {
  checkAndSignPerSecond: number;
  checkOnlyPerSecond: number;
  signOnlyPerSecond: number;
}

// ---------------------------------------------------------------------------------------------
// Role: the Cinch CA server, as the control plane runs it (mesh server + CA router + TokenReview).

async function serverRole(dir: string): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const material = loadCaMaterial(readCaDir(dir));
  const registry = createRegistry({ component: 'control-plane' });
  // Production logging: one JSON line per issuance, to stderr (the orchestrator sends it to a file).
  const logger = createLogger({ level: 'info', context: { component: 'ca' } });
  const signer = new FastLeafSigner(material);
  const metrics = createCaMetrics(registry);
  metrics.observeMaterial(material);
  const mesh = createMeshServer({
    key: fs.readFileSync(path.join(dir, 'serving-key.pem')),
    cert: fs.readFileSync(path.join(dir, 'serving-cert.pem')),
    trustBundle: material.trustBundle,
    logger,
    registry,
    routers: [
      caRouter({
        signer: () => signer,
        trustBundle: () => material.trustBundle,
        authenticator: new TokenAuthenticator(kc, { audience: 'cinch-ca', registry }),
        trustDomain: TRUST_DOMAIN,
        rateLimiter: new TokenBucketLimiter({ burst: 1e9, refillPerSecond: 1e9 }),
        metrics,
        logger,
      }),
    ],
  });
  const port = await mesh.listen(0, '127.0.0.1');
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  await once(process, 'SIGTERM');
  await mesh.close(1000);
  process.exit(0); // the API client's keep-alive sockets would hold the process open
}

// ---------------------------------------------------------------------------------------------
// Role: closed-loop load generator: N keep-alive connections, each sending its next request when
// the last one is answered. Latency of requests started after the warm-up.

async function loadRole(): Promise<void> {
  const url = new URL(args.url!);
  const body = fs.readFileSync(args.body!);
  const token = args.token ? fs.readFileSync(args.token, 'utf8').trim() : undefined;
  const concurrency = Number(args.concurrency);
  const agent = new https.Agent({ keepAlive: true, maxSockets: concurrency, ca: fs.readFileSync(args.ca!) });
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': body.length };
  if (token) headers.authorization = `Bearer ${token}`;

  const send = (): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const req = https.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });

  // The first answer must be a certificate: a benchmark of error responses would be worthless.
  const first = await send();
  const json = JSON.parse(first.text);
  const pem: unknown = json.certChain?.[0] ?? json.result?.certificate;
  if (first.status !== 200 || typeof pem !== 'string') throw new Error(`first response is not a certificate: ${first.status} ${first.text.slice(0, 300)}`);
  new X509Certificate(pem);

  const started = performance.now();
  const measureFrom = started + Number(args.warmup) * 1000;
  const end = measureFrom + Number(args.seconds) * 1000;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let bytes = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      let ok = false;
      try {
        const res = await send();
        ok = res.status === 200;
        bytes = res.text.length;
        if (!ok) firstError ??= `${res.status} ${res.text.slice(0, 200)}`;
      } catch (err) {
        firstError ??= (err as Error).message;
      }
      const t1 = performance.now();
      if (t0 >= measureFrom && t1 <= end) {
        if (ok) latencies.push(t1 - t0);
        else errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? Number.NaN;
  const seconds = Number(args.seconds);
  const result: LoadResult = {
    count: latencies.length,
    errors,
    firstError,
    seconds,
    perSecond: latencies.length / seconds,
    p50Ms: pct(50),
    p99Ms: pct(99),
    responseBytes: bytes,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Role: the signer alone, one core, one at a time: CSR check + sign, and sign of a checked CSR.

function signerRole(): void {
  const material = loadCaMaterial(readCaDir(args.dir!));
  const signer = new FastLeafSigner(material);
  const pem = fs.readFileSync(args.csr!, 'utf8');
  const spiffeId = /URI:(spiffe:\/\/\S+?)(,|$)/m.exec(execFileSync('openssl', ['req', '-noout', '-text', '-in', args.csr!], { encoding: 'utf8' }))![1];
  const checked = checkCsr(pem, spiffeId);
  const seconds = Number(args.seconds);
  const cpuNow = (): number => {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1e6;
  };
  const loop = (op: () => unknown): number => {
    const warmEnd = performance.now() + 300;
    while (performance.now() < warmEnd) op();
    let n = 0;
    const cpuStart = cpuNow();
    const stop = performance.now() + seconds * 1000;
    while (performance.now() < stop) {
      for (let i = 0; i < 100; i++) op();
      n += 100;
    }
    return n / (cpuNow() - cpuStart);
  };
  const result: SignerResult = {
    checkAndSignPerSecond: loop(() => signer.sign({ csr: checkCsr(pem, spiffeId), spiffeId })),
    checkOnlyPerSecond: loop(() => checkCsr(pem, spiffeId)),
    signOnlyPerSecond: loop(() => signer.sign({ csr: checked, spiffeId })),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Orchestrator.

const children: ChildProcess[] = [];

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function ensureCfssl(): string {
  if (have('cfssl')) {
    console.log('cfssl: found on PATH');
  } else {
    console.log("cfssl: not found; installing Debian's golang-cfssl");
    const asRoot = process.getuid?.() === 0 ? [] : ['sudo'];
    const aptGet = (...a: string[]) =>
      execFileSync(asRoot[0] ?? 'apt-get', [...(asRoot.length ? ['apt-get'] : []), ...a], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    aptGet('update', '-qq');
    aptGet('install', '-y', '-qq', 'golang-cfssl');
  }
  const version = execFileSync('cfssl', ['version'], { encoding: 'utf8' });
  let pkg = '';
  try {
    pkg = execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'golang-cfssl'], { encoding: 'utf8' });
  } catch {
    /* not from Debian */
  }
  return `cfssl ${/Version: (\S+)/.exec(version)?.[1] ?? '?'} (${/Runtime: (\S+)/.exec(version)?.[1] ?? '?'}${pkg ? `, Debian golang-cfssl ${pkg}` : ''})`;
}

function pinPrefix(cpu: number | undefined): string[] {
  return cpu === undefined ? [] : ['taskset', '-c', String(cpu)];
}

function spawnPinned(cpu: number | undefined, cmd: string, cmdArgs: string[], opts: { stderrFile?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const [file, ...rest] = [...pinPrefix(cpu), cmd, ...cmdArgs];
  const stderr = opts.stderrFile ? fs.openSync(opts.stderrFile, 'a') : 'inherit';
  const child = spawn(file, rest, { stdio: ['ignore', 'pipe', stderr], env: opts.env ?? process.env });
  if (typeof stderr === 'number') fs.closeSync(stderr);
  children.push(child);
  return child;
}

async function firstLine(child: ChildProcess, what: string): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`${what} exited with ${String(code)} before answering`);
  });
  const line = (async () => {
    for await (const l of lines) if (l.trim()) return l;
    throw new Error(`${what} closed its output without answering`);
  })();
  return Promise.race([line, exited]);
}

async function runNodeRole(cpu: number | undefined, role: string, roleArgs: string[]): Promise<unknown> {
  const child = spawnPinned(cpu, process.execPath, [SELF, '--role', role, ...roleArgs]);
  const line = await firstLine(child, `${role} process`);
  await once(child, 'exit');
  return JSON.parse(line);
}

interface Run {
  target: 'cinch' | 'cfssl';
  concurrency: number;
  load: LoadResult;
  serverCpuUsPerCert: number;
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

async function main(): Promise<void> {
  const hardLimit = setTimeout(() => {
    console.error(`bench: over ${HARD_LIMIT_MS / 1000} s; stopping`);
    cleanup();
    process.exit(1);
  }, HARD_LIMIT_MS);
  hardLimit.unref();

  const concurrencies = args.concurrency.split(',').map(Number);
  const rounds = Number(args.rounds);
  const cpus = os.availableParallelism();
  const pin = args.pin === 'on' || (args.pin === 'auto' && cpus >= 2 && have('taskset'));
  const serverCpu = pin ? 0 : undefined;
  const loadCpu = pin ? 1 : undefined;
  const cfsslVersion = ensureCfssl();

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-bench-ca-'));
  let cluster: ClusterState | undefined;
  cleanupDir = dir;
  let kubeconfig = args.kubeconfig;
  if (!kubeconfig) {
    cluster = await startCluster({ ownerPid: process.pid, progress: (m) => console.log(`cluster: ${m}`) });
    clusterDir = cluster.dir;
    kubeconfig = cluster.kubeconfig;
  }
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const namespace = `ca-bench-${process.pid}`;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  cleanupNamespace = async () => void (await core.deleteNamespace({ name: namespace }).catch(() => undefined));
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'bench' } } });
  const tokenRes = await core.createNamespacedServiceAccountToken({ namespace, name: 'bench', body: { spec: { audiences: ['cinch-ca'], expirationSeconds: 3600 } } });
  const tokenFile = path.join(dir, 'token');
  const token = tokenRes.status?.token;
  if (!token) throw new Error('TokenRequest returned no token');
  fs.writeFileSync(tokenFile, token, { mode: 0o600 });
  const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/${namespace}/sa/bench`;

  // One root for both: Cinch reads the cacerts layout; cfssl gets the same cert and key (SEC1 form).
  const created = await createRootCa({ trustDomain: TRUST_DOMAIN });
  for (const name of CA_FILE_NAMES) fs.writeFileSync(path.join(dir, name), created.files[name], { mode: 0o600 });
  const material = loadCaMaterial(created.files);
  execFileSync('openssl', ['ec', '-in', path.join(dir, CA_KEY_FILE), '-out', path.join(dir, 'cfssl-ca-key.pem')], { stdio: 'ignore' });
  const serving = await issueServingCertificate(material, ['localhost', '127.0.0.1']);
  fs.writeFileSync(path.join(dir, 'serving-key.pem'), serving.keyPem, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'serving-cert.pem'), serving.certChainPem);
  const caFile = path.join(dir, 'root.pem');
  fs.writeFileSync(caFile, material.trustBundle.join(''));
  // The workload profile, 1 h, for cfssl too.
  fs.writeFileSync(
    path.join(dir, 'cfssl-config.json'),
    JSON.stringify({ signing: { default: { expiry: '1h', usages: ['digital signature', 'server auth', 'client auth'] } } }),
  );

  // The same CSR, made by openssl req, as the proxy would send it (P-256, the caller's URI SAN).
  const csrFile = path.join(dir, 'req.csr');
  execFileSync(
    'openssl',
    ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, 'req.key'), '-subj', '/CN=bench', '-addext', `subjectAltName=URI:${spiffeId}`, '-out', csrFile],
    { stdio: 'ignore' },
  );
  const csr = fs.readFileSync(csrFile, 'utf8');
  fs.writeFileSync(path.join(dir, 'cinch-body.json'), JSON.stringify({ csr }));
  fs.writeFileSync(path.join(dir, 'cfssl-body.json'), JSON.stringify({ certificate_request: csr }));

  const profileArgs = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(args.profile)}`] : [];
  const cinch = spawnPinned(serverCpu, process.execPath, [...profileArgs, SELF, '--role', 'server', '--dir', dir], {
    stderrFile: path.join(dir, 'cinch.log'),
    env: { ...process.env, KUBECONFIG: kubeconfig },
  });
  const cinchPort = (JSON.parse(await firstLine(cinch, 'Cinch server')) as { port: number }).port;
  const cfsslPort = await freePort();
  const cfssl = spawnPinned(
    serverCpu,
    'cfssl',
    [
      'serve',
      '-address', '127.0.0.1',
      '-port', String(cfsslPort),
      '-ca', path.join(dir, CA_CERT_FILE),
      '-ca-key', path.join(dir, 'cfssl-ca-key.pem'),
      '-config', path.join(dir, 'cfssl-config.json'),
      '-tls-cert', path.join(dir, 'serving-cert.pem'),
      '-tls-key', path.join(dir, 'serving-key.pem'),
    ],
    { stderrFile: path.join(dir, 'cfssl.log') },
  );
  await waitForPort(cfsslPort, cfssl, 'cfssl serve');

  const targets = {
    cinch: { url: `https://127.0.0.1:${cinchPort}/v1/certificates`, body: path.join(dir, 'cinch-body.json'), token: tokenFile, pid: cinch.pid! },
    cfssl: { url: `https://127.0.0.1:${cfsslPort}/api/v1/cfssl/sign`, body: path.join(dir, 'cfssl-body.json'), token: undefined, pid: cfssl.pid! },
  };
  console.log(
    `running: ${rounds} round(s) x concurrency ${concurrencies.join(', ')} x {cinch, cfssl}, ${args.seconds} s each after ${args.warmup} s warm-up${pin ? '; servers on CPU 0, load generator on CPU 1' : '; unpinned'}`,
  );

  const loadArgs = (t: (typeof targets)[keyof typeof targets], concurrency: number, seconds: string, warmup: string): string[] => [
    '--url', t.url,
    '--body', t.body,
    ...(t.token ? ['--token', t.token] : []),
    '--ca', caFile,
    '--concurrency', String(concurrency),
    '--seconds', seconds,
    '--warmup', warmup,
  ];
  for (const t of Object.values(targets)) await runNodeRole(loadCpu, 'load', loadArgs(t, Math.max(...concurrencies), String(PREWARM_SECONDS), '0'));

  const loadBefore = os.loadavg()[0];
  const runs: Run[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const concurrency of concurrencies) {
      // Alternate which goes first, so drift on a shared machine hits both alike.
      const order: Array<'cinch' | 'cfssl'> = round % 2 === 0 ? ['cinch', 'cfssl'] : ['cfssl', 'cinch'];
      for (const target of order) {
        const t = targets[target];
        const cpuBefore = cpuSeconds(t.pid);
        const load = (await runNodeRole(loadCpu, 'load', loadArgs(t, concurrency, args.seconds, args.warmup))) as LoadResult;
        const cpuUsed = cpuSeconds(t.pid) - cpuBefore;
        // CPU over the whole run (warm-up included) divided by every certificate in it.
        const total = load.perSecond * (load.seconds + Number(args.warmup));
        const run: Run = { target, concurrency, load, serverCpuUsPerCert: (cpuUsed / Math.max(1, total)) * 1e6 };
        runs.push(run);
        console.log(
          `  ${target.padEnd(5)} c=${String(concurrency).padEnd(3)} ${fmt(load.perSecond).padStart(6)}/s  p50 ${fmt(load.p50Ms, 2)} ms  p99 ${fmt(load.p99Ms, 2)} ms  cpu ${fmt(run.serverCpuUsPerCert)} µs/cert  errors ${load.errors}${load.firstError ? ` (${load.firstError})` : ''}`,
        );
      }
    }
  }
  const signer = (await runNodeRole(serverCpu, 'signer', ['--dir', dir, '--csr', csrFile, '--seconds', '2'])) as SignerResult;

  // What each one issued, for the notes.
  const cinchLeaf = await oneCertificate(targets.cinch.url, targets.cinch.body, tokenFile, caFile);
  const cfsslLeaf = await oneCertificate(targets.cfssl.url, targets.cfssl.body, undefined, caFile);

  const report = renderReport({ runs, signer, concurrencies, pin, cpus, cfsslVersion, cinchLeaf, cfsslLeaf, loadBefore, loadAfter: os.loadavg()[0] });
  console.log(`\n${report}`);
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.writeFileSync(RESULTS, report);
  console.log(`written to ${path.relative(ROOT, RESULTS)}`);
}

async function oneCertificate(url: string, body: string, token: string | undefined, ca: string): Promise<X509Certificate> {
  const u = new URL(url);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${fs.readFileSync(token, 'utf8').trim()}`;
  const text = await new Promise<string>((resolve, reject) => {
    const req = https.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers, ca: fs.readFileSync(ca), agent: false }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (t += c));
      res.on('end', () => resolve(t));
    });
    req.on('error', reject);
    req.end(fs.readFileSync(body));
  });
  const json = JSON.parse(text);
  return new X509Certificate(json.certChain?.[0] ?? json.result.certificate);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function renderReport(r: {
  runs: Run[];
  signer: SignerResult;
  concurrencies: number[];
  pin: boolean;
  cpus: number;
  cfsslVersion: string;
  cinchLeaf: X509Certificate;
  cfsslLeaf: X509Certificate;
  loadBefore: number;
  loadAfter: number;
}): string {
  const pick = (target: Run['target'], c: number) => r.runs.filter((x) => x.target === target && x.concurrency === c);
  const agg = (runs: Run[]) => ({
    perSecond: median(runs.map((x) => x.load.perSecond)),
    p50: median(runs.map((x) => x.load.p50Ms)),
    p99: median(runs.map((x) => x.load.p99Ms)),
    cpu: median(runs.map((x) => x.serverCpuUsPerCert)),
    errors: runs.reduce((n, x) => n + x.load.errors, 0),
    bytes: runs[0]?.load.responseBytes ?? 0,
  });
  const rows: string[] = [];
  const ratios: string[] = [];
  let worstRatio = Number.POSITIVE_INFINITY;
  const cpuRatios: string[] = [];
  let worstCpuRatio = Number.POSITIVE_INFINITY;
  for (const c of r.concurrencies) {
    const a = agg(pick('cinch', c));
    const b = agg(pick('cfssl', c));
    rows.push(`| Cinch \`POST /v1/certificates\` | ${c} | ${fmt(a.perSecond)} | ${fmt(a.p50, 2)} | ${fmt(a.p99, 2)} | ${fmt(a.cpu)} | ${a.bytes} | ${a.errors} |`);
    rows.push(`| cfssl \`POST /api/v1/cfssl/sign\` | ${c} | ${fmt(b.perSecond)} | ${fmt(b.p50, 2)} | ${fmt(b.p99, 2)} | ${fmt(b.cpu)} | ${b.bytes} | ${b.errors} |`);
    const ratio = a.perSecond / b.perSecond;
    worstRatio = Math.min(worstRatio, ratio);
    worstCpuRatio = Math.min(worstCpuRatio, b.cpu / a.cpu);
    cpuRatios.push(`${fmt(b.cpu / a.cpu, 2)}× at concurrency ${c}`);
    ratios.push(
      `| ${c} | **${fmt(ratio, 2)}×** | ${fmt(b.p50 / a.p50, 2)}× | ${fmt(b.p99 / a.p99, 2)}× | ${fmt(b.cpu / a.cpu, 2)}× |`,
    );
  }
  const fullC = r.concurrencies[r.concurrencies.length - 1];
  const cinchFull = agg(pick('cinch', fullC));
  const cfsslFull = agg(pick('cfssl', fullC));
  const cfsslBest = cfsslFull.perSecond;
  const signUs = 1e6 / r.signer.signOnlyPerSecond;
  const checkUs = 1e6 / r.signer.checkOnlyPerSecond;
  const sans = (cert: X509Certificate) => cert.subjectAltName ?? '(none)';
  const hours = (cert: X509Certificate) => fmt((new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime()) / 3_600_000, 2);
  const cpuModel = os.cpus()[0]?.model ?? 'unknown CPU';
  return [
    '# CA server benchmark',
    '',
    `\`npx node bench/ca-server.ts --seconds ${args.seconds} --warmup ${args.warmup} --concurrency ${args.concurrency} --rounds ${args.rounds} --pin ${args.pin}\``,
    '',
    `${new Date().toISOString().slice(0, 10)}, node ${process.version} (OpenSSL ${process.versions.openssl}), ${r.cfsslVersion}, ${cpuModel} (${r.cpus} CPUs), Linux ${os.release()}; load average ${fmt(r.loadBefore, 1)} before the runs, ${fmt(r.loadAfter, 1)} after (a shared machine: throughput and latency move with it, CPU per certificate much less).`,
    r.pin
      ? 'Both servers pinned to CPU 0 (one core each, one loaded at a time), the load generator (a separate Node process) to CPU 1.'
      : 'Unpinned: servers and load generator share every CPU.',
    `Closed loop over keep-alive HTTPS connections (as many as the concurrency), ${args.seconds} s per figure after ${args.warmup} s of warm-up, median of ${args.rounds} round(s); the order alternates between rounds. Before the first round each server gets ${PREWARM_SECONDS} s of unmeasured load at concurrency ${Math.max(...r.concurrencies)}, so Node's JIT has compiled the hot path (a control plane runs for days; cfssl, compiled ahead of time, gets the same).`,
    '',
    '## Full path: HTTPS + token + CSR check + signing, same P-256 CSR, same root',
    '',
    '| server | concurrency | certs/s | p50 ms | p99 ms | server CPU µs/cert | response bytes | errors |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    '| concurrency | throughput Cinch ÷ cfssl | p50 cfssl ÷ Cinch | p99 cfssl ÷ Cinch | CPU/cert cfssl ÷ Cinch |',
    '| ---: | ---: | ---: | ---: | ---: |',
    ...ratios,
    '',
    `Target ≥ ${TARGET_RATIO.toFixed(1)}× cfssl on the full path: **${worstRatio >= TARGET_RATIO ? 'met' : 'NOT met'}** (lowest throughput ratio ${fmt(worstRatio, 2)}×). Ratios above 1 favour Cinch.`,
    `Server CPU per certificate, which neighbours on a shared machine move much less than throughput, is the steadier comparison: cfssl ÷ Cinch = ${cpuRatios.join(', ')}${worstCpuRatio >= TARGET_RATIO ? '' : ` (below 1: Cinch does more work per certificate; see where its time goes below)`}.`,
    '',
    '## Signer alone (one core, one at a time, no HTTP, no token)',
    '',
    'Per CPU-second of the process doing the work (user + system time), so neighbours on the machine do not move it.',
    '',
    '| path | certs/s | µs each | vs cfssl full path |',
    '| --- | ---: | ---: | ---: |',
    `| CSR check + sign (\`checkCsr\` + \`FastLeafSigner.sign\`) | ${fmt(r.signer.checkAndSignPerSecond)} | ${fmt(1e6 / r.signer.checkAndSignPerSecond)} | ${fmt(r.signer.checkAndSignPerSecond / cfsslBest, 1)}× |`,
    `| CSR check alone (\`checkCsr\`: PEM/DER, key import, ECDSA verify, SANs) | ${fmt(r.signer.checkOnlyPerSecond)} | ${fmt(checkUs)} | ${fmt(r.signer.checkOnlyPerSecond / cfsslBest, 1)}× |`,
    `| sign a checked CSR (\`FastLeafSigner.sign\`) | ${fmt(r.signer.signOnlyPerSecond)} | ${fmt(signUs)} | ${fmt(r.signer.signOnlyPerSecond / cfsslBest, 1)}× |`,
    '',
    `Target ≥ 5,000/s for the signer alone (signing a checked CSR, ${fmt(r.signer.signOnlyPerSecond)}/s): **${r.signer.signOnlyPerSecond >= 5000 ? 'met' : 'NOT met'}**; with the CSR check in front, ${fmt(r.signer.checkAndSignPerSecond)}/s is ${r.signer.checkAndSignPerSecond >= 5000 ? 'above' : 'below'} 5,000.`,
    '',
    '## Where Cinch\'s time goes (server CPU per certificate, highest concurrency)',
    '',
    '| part | µs |',
    '| --- | ---: |',
    `| CSR check (\`checkCsr\`: PEM/DER, key import, ECDSA verify, SANs) | ${fmt(checkUs)} |`,
    `| signing (\`FastLeafSigner.sign\`) | ${fmt(signUs)} |`,
    `| everything else: TLS, node:https (express is not on this route), token cache, body, JSON, audit log line, metrics | ${fmt(cinchFull.cpu - checkUs - signUs)} |`,
    `| total (measured) | ${fmt(cinchFull.cpu)} |`,
    `| cfssl, whole request (measured) | ${fmt(cfsslFull.cpu)} |`,
    '',
    '## What is measured, and what differs',
    '',
    '- Cinch: the control plane\'s own pieces (mesh server, CA router, `TokenAuthenticator`, `FastLeafSigner`, production `info` logging of every issuance to a file). Each request carries a real ServiceAccount token from the TokenRequest API; it is reviewed by the local kube-apiserver 1.20.2 once per 10 s cache window and served from the cache otherwise. The per-identity rate limiter is in the path with a bucket big enough not to refuse the load.',
    '- cfssl: `cfssl serve` with the same root (its key converted to SEC1 with `openssl ec`), the same serving certificate, TLS on, a 1 h default profile. It takes no token (its HMAC-authenticated `authsign` would add work), so it does less per request than Cinch.',
    `- Leaves issued: Cinch ${sans(r.cinchLeaf)}, ${hours(r.cinchLeaf)} h (with the 60 s backdating); cfssl ${sans(r.cfsslLeaf)}, ${hours(r.cfsslLeaf)} h. Cinch's response carries the chain and trust bundle (${agg(pick('cinch', fullC)).bytes} bytes), cfssl's only the leaf.`,
    '- Server CPU per certificate is user+system time of the server process from /proc over the run, divided by the certificates it issued: it does not depend on what else runs on the machine.',
    '',
  ].join('\n');
}

let clusterDir: string | undefined;
let cleanupDir: string | undefined;
let cleanupNamespace: (() => Promise<void>) | undefined;

function cleanup(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  if (clusterDir) {
    stopCluster(clusterDir);
    fs.rmSync(clusterDir, { recursive: true, force: true });
    clusterDir = undefined;
  }
  if (cleanupDir) fs.rmSync(cleanupDir, { recursive: true, force: true });
  cleanupDir = undefined;
}

switch (args.role) {
  case 'server':
    await serverRole(args.dir!);
    break;
  case 'load':
    await loadRole();
    break;
  case 'signer':
    signerRole();
    break;
  case 'main':
    try {
      await main();
    } finally {
      // With our own cluster the namespace goes with it; on someone else's, remove it.
      if (!clusterDir) await cleanupNamespace?.();
      cleanup();
    }
    break;
  default:
    throw new Error(`unknown --role ${args.role}`);
}
