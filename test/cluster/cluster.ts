// A real Kubernetes control plane for tests: etcd + kube-apiserver on free loopback ports,
// with fresh certificates and a ServiceAccount signing key. Or an existing cluster via KUBECONFIG.
//
// Every process it starts is recorded in <dir>/state.json, and, when an owner pid is given,
// watched by a small shell watchdog that kills them if the owner dies (a crashed or killed test run
// never leaves etcd or the API server behind).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/ports.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CACHE_DIR = process.env.CINCH_CACHE ?? path.join(os.homedir(), '.cache', 'cinch');

export interface ClusterState {
  dir: string;
  kubeconfig: string;
  server: string;
  /** PEM of the key the API server signs ServiceAccount tokens with (tests forge expired tokens with it). */
  serviceAccountSigningKeyFile: string;
  serviceAccountIssuer: string;
  pids: number[];
  watchdogPid?: number;
}

export type Progress = (message: string) => void;
const defaultProgress: Progress = (m) => process.stderr.write(`[cluster] ${m}\n`);

function run(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): string {
  return execFileSync(cmd, args, { cwd: opts.cwd, input: opts.input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

function have(cmd: string): boolean {
  try {
    run('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

/** etcd from Debian, kube-apiserver built once from Debian's source package (cached). */
export function ensureBinaries(progress: Progress = defaultProgress): { etcd: string; apiserver: string } {
  if (!have('etcd') || !have('openssl')) {
    progress("installing Debian's etcd-server and openssl");
    const asRoot = process.getuid?.() === 0 ? [] : ['sudo'];
    execFileSync(asRoot[0] ?? 'apt-get', [...asRoot.slice(1), ...(asRoot.length ? ['apt-get'] : []), 'update', '-qq'], { stdio: 'inherit' });
    execFileSync(asRoot[0] ?? 'apt-get', [...asRoot.slice(1), ...(asRoot.length ? ['apt-get'] : []), 'install', '-y', '-qq', 'etcd-server', 'openssl'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  }
  const cached = path.join(CACHE_DIR, 'bin', 'kube-apiserver-1.20.2-r2');
  if (!fs.existsSync(cached)) progress('kube-apiserver 1.20.2 is not cached: building it from Debian\'s source package (about 5 minutes, once)');
  // The script prints the binary's path on stdout and its progress on stderr (inherited).
  const apiserver = execFileSync('bash', [path.join(HERE, 'build-apiserver.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return { etcd: run('sh', ['-c', 'command -v etcd']).trim(), apiserver };
}

function makeCertificates(dir: string): void {
  const ssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  ssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
  ssl('req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=cinch-test-cluster-ca', '-days', '2', '-out', 'ca.crt');
  const leaf = (name: string, subj: string, ext: string) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    ssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    ssl('req', '-new', '-key', `${name}.key`, '-subj', subj, '-out', `${name}.csr`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
  };
  leaf(
    'apiserver',
    '/CN=kube-apiserver',
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n',
  );
  leaf('admin', '/O=system:masters/CN=cinch-test-admin', 'extendedKeyUsage=clientAuth\n');
  // RSA for ServiceAccount tokens: RS256 is what every Kubernetes token consumer expects.
  ssl('genrsa', '-out', 'sa.key', '2048');
  ssl('rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');
  for (const f of fs.readdirSync(dir)) if (f.endsWith('.key')) fs.chmodSync(path.join(dir, f), 0o600);
}

function writeKubeconfig(dir: string, server: string): string {
  const b64 = (f: string) => fs.readFileSync(path.join(dir, f)).toString('base64');
  const file = path.join(dir, 'kubeconfig');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'cinch-test', cluster: { server, 'certificate-authority-data': b64('ca.crt') } }],
    users: [{ name: 'cinch-test-admin', user: { 'client-certificate-data': b64('admin.crt'), 'client-key-data': b64('admin.key') } }],
    contexts: [{ name: 'cinch-test', context: { cluster: 'cinch-test', user: 'cinch-test-admin' } }],
    'current-context': 'cinch-test',
  };
  fs.writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return file;
}

function startDaemon(cmd: string, args: string[], logFile: string): number {
  const log = fs.openSync(logFile, 'a');
  // detached: its own process group, so stopping it also stops anything it forked.
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  return child.pid;
}

function tail(file: string, lines = 25): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Running, not just present: a zombie (exited, not yet reaped) counts as gone. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

async function waitReady(dir: string, port: number, pid: number, logFile: string, timeoutMs: number): Promise<void> {
  const ca = fs.readFileSync(path.join(dir, 'ca.crt'));
  const cert = fs.readFileSync(path.join(dir, 'admin.crt'));
  const key = fs.readFileSync(path.join(dir, 'admin.key'));
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!alive(pid)) throw new Error(`kube-apiserver exited while starting; last lines of ${logFile}:\n${tail(logFile)}`);
    last = await new Promise<string>((resolve) => {
      const req = https.get({ host: '127.0.0.1', port, path: '/readyz', ca, cert, key, timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200 ? 'ok' : `HTTP ${res.statusCode}`);
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => resolve(e.message));
    });
    if (last === 'ok') return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`kube-apiserver not ready after ${timeoutMs} ms (${last}); last lines of ${logFile}:\n${tail(logFile)}`);
}

export interface StartOptions {
  /** Folder for certificates, data, logs and state; a fresh temporary one by default. */
  dir?: string;
  /** Kill everything when this process dies (the test runner's pid). */
  ownerPid?: number;
  progress?: Progress;
}

export async function startCluster(opts: StartOptions = {}): Promise<ClusterState> {
  const progress = opts.progress ?? defaultProgress;
  const bins = ensureBinaries(progress);
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-cluster-'));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  stopCluster(dir); // a stale cluster in the same folder
  for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
  progress(`generating certificates in ${dir}`);
  makeCertificates(dir);

  const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
  const state: ClusterState = {
    dir,
    kubeconfig: writeKubeconfig(dir, `https://127.0.0.1:${apiPort}`),
    server: `https://127.0.0.1:${apiPort}`,
    serviceAccountSigningKeyFile: path.join(dir, 'sa.key'),
    serviceAccountIssuer: 'https://kubernetes.default.svc.cluster.local',
    pids: [],
  };
  const save = () => {
    fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify(state, null, 2));
    fs.writeFileSync(path.join(dir, 'pids'), state.pids.join('\n') + '\n'); // for watchdog.sh
  };

  progress(`starting etcd on 127.0.0.1:${etcdClient}`);
  state.pids.push(
    startDaemon(
      bins.etcd,
      [
        '--name=cinch-test',
        `--data-dir=${path.join(dir, 'etcd-data')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=cinch-test=http://127.0.0.1:${etcdPeer}`,
        '--unsafe-no-fsync', // test data: durability buys nothing, fsync costs seconds
        '--log-level=warn',
      ],
      path.join(dir, 'etcd.log'),
    ),
  );
  save();
  if (opts.ownerPid) {
    state.watchdogPid = startDaemon('bash', [path.join(HERE, 'watchdog.sh'), String(opts.ownerPid), path.join(dir, 'pids')], path.join(dir, 'watchdog.log'));
    save();
  }

  progress(`starting kube-apiserver 1.20.2 on 127.0.0.1:${apiPort}`);
  const apiLog = path.join(dir, 'apiserver.log');
  const apiPid = startDaemon(
    bins.apiserver,
    [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      '--insecure-port=0',
      `--cert-dir=${dir}`,
      `--tls-cert-file=${path.join(dir, 'apiserver.crt')}`,
      `--tls-private-key-file=${path.join(dir, 'apiserver.key')}`,
      `--client-ca-file=${path.join(dir, 'ca.crt')}`,
      `--service-account-key-file=${path.join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${state.serviceAccountSigningKeyFile}`,
      `--service-account-issuer=${state.serviceAccountIssuer}`,
      `--api-audiences=${state.serviceAccountIssuer}`,
      '--authorization-mode=RBAC',
      // No controller-manager creates token Secrets, so the ServiceAccount admission plugin would refuse pods.
      '--disable-admission-plugins=ServiceAccount',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--allow-privileged=true',
      '--enable-priority-and-fairness=false',
      '--v=1',
    ],
    apiLog,
  );
  state.pids.push(apiPid);
  save();
  try {
    await waitReady(dir, apiPort, apiPid, apiLog, 90_000);
  } catch (err) {
    stopCluster(dir);
    throw err;
  }
  progress(`ready: KUBECONFIG=${state.kubeconfig}`);
  return state;
}

/** Stops what startCluster started in `dir` (idempotent; safe if nothing runs). */
export function stopCluster(dir: string): void {
  const file = path.join(dir, 'state.json');
  if (!fs.existsSync(file)) return;
  const state = JSON.parse(fs.readFileSync(file, 'utf8')) as ClusterState;
  const pids = [...state.pids].reverse();
  if (state.watchdogPid) pids.push(state.watchdogPid);
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGTERM'); // the whole process group
    } catch {
      /* already gone */
    }
  }
  const deadline = Date.now() + 10_000;
  for (const pid of pids) {
    while (alive(pid) && Date.now() < deadline) execFileSync('sleep', ['0.1']);
    try {
      if (alive(pid)) process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  fs.rmSync(file, { force: true });
  fs.rmSync(path.join(dir, 'pids'), { force: true });
}

export function readState(dir: string): ClusterState | undefined {
  const file = path.join(dir, 'state.json');
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as ClusterState) : undefined;
}
