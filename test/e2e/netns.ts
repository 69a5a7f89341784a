// Network-namespace "pods" for end-to-end tests: create namespaces, wire them with veth pairs
// (point to point, or on a shared bridge), run commands and Node scripts inside them, and always
// clean up. Traffic never leaves the namespaces a lab created.
//
//   const lab = new NetnsLab('proxy');
//   after(() => lab.cleanup());
//   const pod = await lab.namespace('pod');
//   const peer = await lab.namespace('peer');
//   await lab.connect(pod, ['10.77.0.1/24'], peer, ['10.77.0.2/24']);
//   const res = await pod.node(['bin/cinch.js', 'init']);
//
// Namespace names carry the owning process id (`cinchtest-<pid>-<random>-<name>`), so a lab sweeps
// namespaces left behind by test processes that died without cleaning up (SIGKILL, OOM).
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const NAME_PREFIX = 'cinchtest';
const OWNED = new RegExp(`^${NAME_PREFIX}-(\\d+)-`);
/** Node 24 (the one running the tests); the machine's own `node` may be older. */
export const NODE = process.execPath;
/** The repository root (test/e2e/../..), the working directory of commands run in namespaces. */
export const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Run as this uid (and `gid`, default the same) through setpriv, with supplementary groups cleared. */
  uid?: number;
  gid?: number;
  /** Extra `setpriv` arguments, e.g. ['--bounding-set=-net_admin', '--inh-caps=-net_admin'] to drop a capability. */
  setpriv?: string[];
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill after this long (default 20 s); the result then has signal SIGKILL. */
  timeoutMs?: number;
}

function execCommand(file: string, args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      { encoding: 'utf8', cwd: options.cwd ?? REPO_ROOT, env: options.env ?? process.env, timeout: options.timeoutMs ?? 20_000, killSignal: 'SIGKILL', maxBuffer: 32 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, signal: null, stdout, stderr });
        const code = typeof err.code === 'number' ? err.code : null;
        resolve({ code: code ?? (err.signal ? null : 127), signal: err.signal ?? null, stdout, stderr: stderr || err.message });
      },
    );
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
  });
}

/** Like execCommand but throws with the command's output when it fails. */
async function mustRun(file: string, args: readonly string[]): Promise<string> {
  const res = await execCommand(file, args);
  if (res.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${res.code ?? res.signal}): ${res.stderr.trim()}`);
  return res.stdout;
}

function ipNetnsNames(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0])
      .filter(Boolean);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (killed, not yet reaped) still answers signal 0 but will never clean up.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Kills every process inside a namespace and deletes it; synchronous so it also works in 'exit' handlers. */
function destroyNamespaceSync(name: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  } catch {
    // the namespace may already be gone
  }
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

/** Deletes namespaces of earlier test processes that are no longer running. Never touches others' namespaces. */
export function sweepStaleNamespaces(): string[] {
  const removed: string[] = [];
  for (const name of ipNetnsNames()) {
    const m = OWNED.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
      destroyNamespaceSync(name);
      removed.push(name);
    }
  }
  return removed;
}

let supportCache: string | undefined | null = null;

/**
 * Why namespace tests cannot run here (a skip message), or undefined when they can: root, and
 * `ip netns add/exec/del` actually working (containers without CAP_SYS_ADMIN fail at add).
 */
export function netnsUnsupportedReason(): string | undefined {
  if (supportCache !== null) return supportCache;
  supportCache = probeSupport();
  return supportCache;
}

function probeSupport(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespace tests need root (run as root, or in a privileged container)';
  const probe = `${NAME_PREFIX}-${process.pid}-probe${randomBytes(2).toString('hex')}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') return '`ip` (iproute2) is not installed: apt-get install -y iproute2';
    return `\`ip netns add\` does not work here: ${e.stderr?.toString().trim() || e.message}`;
  }
  try {
    execFileSync('ip', ['netns', 'exec', probe, 'true'], { stdio: ['ignore', 'ignore', 'pipe'] });
    return undefined;
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    return `\`ip netns exec\` does not work here: ${e.stderr?.toString().trim() || e.message}`;
  } finally {
    destroyNamespaceSync(probe);
  }
}

/** Whether a program is on PATH (for skipping on a missing tool with a clear message). */
export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A long-running process inside a namespace; its output is collected, and waitFor reads it as it arrives. */
export class Spawned {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<RunResult>;

  constructor(child: ChildProcess) {
    this.child = child;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }));
      child.on('error', (err) => resolve({ code: 127, signal: null, stdout: this.stdout, stderr: `${this.stderr}${err.message}` }));
    });
  }

  /** Resolves with the first match on stdout (or stderr); rejects on exit or timeout, with the output so far. */
  async waitFor(pattern: RegExp, timeoutMs = 15_000, stream: 'stdout' | 'stderr' = 'stdout'): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let done = false;
    void this.exited.then(() => (done = true));
    for (;;) {
      const m = this[stream].match(pattern);
      if (m) return m;
      if (done || Date.now() > deadline) {
        throw new Error(`${done ? 'process exited' : 'timed out'} before printing ${pattern}; stdout: ${this.stdout.trim().slice(-4000)} stderr: ${this.stderr.trim().slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<RunResult> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
      const res = await this.exited;
      clearTimeout(timer);
      return res;
    }
    return this.exited;
  }
}

function wrap(ns: string, file: string, args: readonly string[], options: RunOptions): string[] {
  const priv: string[] = [];
  if (options.uid !== undefined) {
    priv.push(`--reuid=${options.uid}`, `--regid=${options.gid ?? options.uid}`, '--clear-groups');
  }
  priv.push(...(options.setpriv ?? []));
  const cmd = priv.length > 0 ? ['setpriv', ...priv, '--', file, ...args] : [file, ...args];
  return ['netns', 'exec', ns, ...cmd];
}

export class Netns {
  readonly name: string;
  /** The short name given to NetnsLab.namespace. */
  readonly label: string;
  private readonly lab: NetnsLab;
  /** Interfaces created in this namespace so far (eth0, eth1, …). */
  interfaces = 0;

  constructor(lab: NetnsLab, name: string, label: string) {
    this.lab = lab;
    this.name = name;
    this.label = label;
  }

  /** Runs a program inside the namespace and waits for it. Never throws for a non-zero exit: check `code`. */
  run(file: string, args: readonly string[] = [], options: RunOptions = {}): Promise<RunResult> {
    return execCommand('ip', wrap(this.name, file, args, options), options);
  }

  /** Like run, but throws (with stderr) unless the exit code is 0; returns stdout. */
  async check(file: string, args: readonly string[] = [], options: RunOptions = {}): Promise<string> {
    const res = await this.run(file, args, options);
    if (res.code !== 0) throw new Error(`[${this.label}] ${[file, ...args].join(' ')} failed (${res.code ?? res.signal}): ${res.stderr.trim()}`);
    return res.stdout;
  }

  /** Runs Node 24 inside the namespace: node(['bin/cinch.js', 'init']) (paths relative to the repository). */
  node(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return this.run(NODE, args, options);
  }

  /** Runs an ES module given as source text (it may `await import()` repository files by absolute path). */
  nodeEval(source: string, args: readonly string[] = [], options: RunOptions = {}): Promise<RunResult> {
    return this.node(['--input-type=module', '-e', source, '--', ...args], options);
  }

  /** Starts a long-running program; the lab stops it at cleanup. */
  spawn(file: string, args: readonly string[] = [], options: RunOptions = {}): Spawned {
    const child = spawn('ip', wrap(this.name, file, args, options), { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    // Unreferenced, so a test that forgets cleanup cannot keep its process alive; the exit hook kills it.
    child.unref();
    for (const stream of [child.stdout, child.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
    const spawned = new Spawned(child);
    this.lab.track(spawned);
    return spawned;
  }

  spawnNodeEval(source: string, args: readonly string[] = [], options: RunOptions = {}): Spawned {
    return this.spawn(NODE, ['--input-type=module', '-e', source, '--', ...args], options);
  }

  /** `ip …` inside the namespace; throws on failure. */
  ip(...args: string[]): Promise<string> {
    return mustRun('ip', ['-n', this.name, ...args]);
  }
}

export interface LanMember {
  ns: Netns;
  /** Addresses with prefix, e.g. '10.77.0.2/24' or 'fd77::2/64' (IPv6 is added with nodad, usable at once). */
  addresses: string[];
}

const liveLabs = new Set<NetnsLab>();
let hooksInstalled = false;

// Last resort for a process that ends without running the test's after hook: at exit, and on a
// termination signal (cleanup, then the signal's default action by raising it again).
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const cleanupAll = (): void => {
    for (const lab of [...liveLabs]) lab.cleanupSync();
  };
  process.once('exit', cleanupAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanupAll();
      process.kill(process.pid, signal);
    });
  }
}

export class NetnsLab {
  readonly id: string;
  private readonly prefix: string;
  private readonly namespaces: Netns[] = [];
  private readonly processes: Spawned[] = [];
  private cleaned = false;

  /** `prefix` shows in namespace names (letters and digits) so a leftover says which test made it. */
  constructor(prefix = 'lab') {
    this.prefix = prefix.replace(/[^a-zA-Z0-9]/g, '').slice(0, 12) || 'lab';
    this.id = randomBytes(3).toString('hex');
    sweepStaleNamespaces();
    liveLabs.add(this);
    installExitHooks();
  }

  /** Creates a namespace with loopback up. */
  async namespace(label: string): Promise<Netns> {
    const clean = label.replace(/[^a-zA-Z0-9]/g, '').slice(0, 16) || 'ns';
    const name = `${NAME_PREFIX}-${process.pid}-${this.id}-${this.prefix}-${clean}`;
    await mustRun('ip', ['netns', 'add', name]);
    const ns = new Netns(this, name, clean);
    this.namespaces.push(ns);
    await ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** A veth pair between two namespaces (eth0, eth1, … in each), with addresses, both ends up. Returns the interface names. */
  async connect(a: Netns, aAddresses: string[], b: Netns, bAddresses: string[]): Promise<{ a: string; b: string }> {
    const aIf = `eth${a.interfaces++}`;
    const bIf = `eth${b.interfaces++}`;
    // Created directly in the two namespaces: nothing appears in the host's namespace, even briefly.
    await mustRun('ip', ['-n', a.name, 'link', 'add', aIf, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name]);
    await this.configure(a, aIf, aAddresses);
    await this.configure(b, bIf, bAddresses);
    return { a: aIf, b: bIf };
  }

  /**
   * A shared L2 segment: a bridge in its own namespace, one veth per member. Use it for more than
   * two "pods" on one subnet (client, server, and a plaintext client from a third namespace).
   */
  async lan(label: string, members: LanMember[]): Promise<Netns> {
    const sw = await this.namespace(label);
    await sw.ip('link', 'add', 'br0', 'type', 'bridge');
    await sw.ip('link', 'set', 'br0', 'up');
    for (const member of members) {
      const memberIf = `eth${member.ns.interfaces++}`;
      const port = `p${sw.interfaces++}`;
      await mustRun('ip', ['-n', sw.name, 'link', 'add', port, 'type', 'veth', 'peer', 'name', memberIf, 'netns', member.ns.name]);
      await sw.ip('link', 'set', port, 'master', 'br0');
      await sw.ip('link', 'set', port, 'up');
      await this.configure(member.ns, memberIf, member.addresses);
    }
    return sw;
  }

  private async configure(ns: Netns, ifname: string, addresses: string[]): Promise<void> {
    for (const address of addresses) {
      await ns.ip('addr', 'add', address, 'dev', ifname, ...(address.includes(':') ? ['nodad'] : []));
    }
    await ns.ip('link', 'set', ifname, 'up');
  }

  /**
   * Starts a long-running program in the host's (the test's own) namespace, stopped at cleanup like
   * the namespaces' processes: a server the namespaces reach through a relay, such as the control plane.
   */
  spawnHost(file: string, args: readonly string[] = [], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Spawned {
    const child = spawn(file, args, { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.unref();
    for (const stream of [child.stdout, child.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
    const spawned = new Spawned(child);
    this.track(spawned);
    return spawned;
  }

  /** @internal Used by Netns.spawn. */
  track(spawned: Spawned): void {
    this.processes.push(spawned);
  }

  /** Stops every process the lab started and deletes every namespace it created. Safe to call twice. */
  async cleanup(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.stop().catch(() => undefined)));
    this.cleanupSync();
  }

  /** @internal Synchronous, for exit and signal hooks. */
  cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const p of this.processes) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    }
    // Deleting a namespace also removes the veth ends inside it; processes still inside are killed first.
    for (const ns of this.namespaces) destroyNamespaceSync(ns.name);
    liveLabs.delete(this);
  }

  /** Names of this lab's namespaces that still exist (for tests that check cleanup). */
  remaining(): string[] {
    const names = new Set(ipNetnsNames());
    return this.namespaces.map((n) => n.name).filter((n) => names.has(n));
  }
}
