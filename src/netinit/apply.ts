// Applies the capture rules to the current network namespace: the thin I/O shell around rules.ts.
// Every iptables call goes through a CommandRunner so the decisions here are unit-testable.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { CHAIN_PREFIX, buildRestoreInput, buildRuleSet, cinchHooks, parseNatSave, planRules } from './rules.ts';
import type { CaptureOptions, IpFamily } from './rules.ts';

/** Which iptables flavour writes the rules: nf_tables, the legacy x_tables, or whatever plain `iptables` is. */
export type Backend = 'nft' | 'legacy' | 'default';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}
/** Runs a program; resolves with its exit code, or rejects (e.g. with code ENOENT) when it cannot start. */
export type CommandRunner = (file: string, args: readonly string[], input?: string) => Promise<CommandResult>;

export type NetinitErrorCode = 'NET_ADMIN_MISSING' | 'IPTABLES_MISSING' | 'NAT_UNSUPPORTED' | 'IPTABLES_FAILED' | 'VERIFY_FAILED';

export class NetinitError extends Error {
  override readonly name = 'NetinitError';
  readonly code: NetinitErrorCode;
  constructor(code: NetinitErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export function binaries(backend: Backend, family: IpFamily): { save: string; restore: string } {
  const base = family === 4 ? 'iptables' : 'ip6tables';
  const infix = backend === 'default' ? '' : `-${backend}`;
  return { save: `${base}${infix}-save`, restore: `${base}${infix}-restore` };
}

export const defaultRunner: CommandRunner = (file, args, input) =>
  new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) return resolve({ code: 0, stdout, stderr });
      // A numeric code is the program's exit status; anything else (ENOENT, a timeout) means it did not run to the end.
      if (typeof err.code === 'number' && !err.killed) return resolve({ code: err.code, stdout, stderr });
      reject(err instanceof Error ? err : new Error(err.message));
    });
    child.stdin?.on('error', () => undefined); // the program may exit before reading everything; its exit code tells
    child.stdin?.end(input ?? '');
  });

function isMissingBinary(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

const PERMISSION = /permission denied|you must be root|operation not permitted/i;
const NO_NAT = /table does not exist|can't initialize .*table|unable to initialize table|protocol not supported|address family not supported/i;

/** Turns a failed iptables call into an error that says what is wrong and what to do about it. */
export function classifyFailure(file: string, result: CommandResult): NetinitError {
  const detail = (result.stderr || result.stdout).trim().split('\n').slice(0, 4).join(' | ') || `exit code ${result.code}`;
  if (PERMISSION.test(detail)) {
    return new NetinitError(
      'NET_ADMIN_MISSING',
      `cinch init: not allowed to change the pod's iptables rules: the NET_ADMIN capability is missing ` +
        `(give the init container securityContext.capabilities.add: [NET_ADMIN, NET_RAW]). ${file}: ${detail}`,
    );
  }
  if (NO_NAT.test(detail)) {
    return new NetinitError('NAT_UNSUPPORTED', `cinch init: the kernel offers no nat table here (module iptable_nat/ip6table_nat missing, or IPv6 disabled). ${file}: ${detail}`);
  }
  return new NetinitError('IPTABLES_FAILED', `cinch init: ${file} failed: ${detail}`);
}

function missing(file: string): NetinitError {
  return new NetinitError('IPTABLES_MISSING', `cinch init: ${file} not found on PATH; the init container needs the iptables tools (Debian package "iptables")`);
}

async function runChecked(run: CommandRunner, file: string, args: readonly string[], input?: string): Promise<string> {
  let result: CommandResult;
  try {
    result = await run(file, args, input);
  } catch (err) {
    if (isMissingBinary(err)) throw missing(file);
    throw err;
  }
  if (result.code !== 0) throw classifyFailure(file, result);
  return result.stdout;
}

/** Number of rules (`-A` lines) in an iptables-save dump, all tables. */
export function countRules(saveText: string): number {
  return saveText.split('\n').filter((l) => l.startsWith('-A ')).length;
}

/**
 * Picks the backend the namespace already uses, from each flavour's iptables-save output
 * (undefined = that flavour is not installed). The one holding more rules wins, since rules in the
 * other would be evaluated separately and ours might never see the traffic in the intended order;
 * on a tie (typically an empty pod namespace) nf_tables, the default of current distributions.
 */
export function chooseBackend(saves: { nft?: string; legacy?: string }): Backend {
  if (saves.nft === undefined && saves.legacy === undefined) return 'default';
  if (saves.nft === undefined) return 'legacy';
  if (saves.legacy === undefined) return 'nft';
  return countRules(saves.legacy) > countRules(saves.nft) ? 'legacy' : 'nft';
}

export async function detectBackend(run: CommandRunner = defaultRunner): Promise<Backend> {
  const saves: { nft?: string; legacy?: string } = {};
  for (const backend of ['nft', 'legacy'] as const) {
    const { save } = binaries(backend, 4);
    try {
      saves[backend] = await runChecked(run, save, []);
    } catch (err) {
      if (err instanceof NetinitError && err.code === 'IPTABLES_MISSING') continue;
      throw err;
    }
  }
  const backend = chooseBackend(saves);
  if (backend === 'default') {
    // Neither flavoured binary exists: plain iptables-save must, or there is nothing to work with.
    try {
      await runChecked(run, binaries('default', 4).save, ['-t', 'nat']);
    } catch (err) {
      if (err instanceof NetinitError && err.code === 'IPTABLES_MISSING') {
        throw new NetinitError('IPTABLES_MISSING', 'cinch init: none of iptables-nft-save, iptables-legacy-save, iptables-save is on PATH; the init container needs the iptables tools (Debian package "iptables")');
      }
      throw err;
    }
  }
  return backend;
}

/** Whether /proc/net/if_inet6 lists an address of global scope (scope 00): the pod has IPv6 to capture. */
export function hasGlobalIpv6(ifInet6: string): boolean {
  return ifInet6.split('\n').some((line) => {
    const fields = line.trim().split(/\s+/);
    return fields.length >= 6 && fields[3] === '00' && fields[5] !== 'lo';
  });
}

export async function podHasIpv6(): Promise<boolean> {
  try {
    return hasGlobalIpv6(await readFile('/proc/net/if_inet6', 'utf8'));
  } catch {
    return false; // no IPv6 in this kernel or namespace
  }
}

/** What --dry-run prints: the fresh rules, each family under a comment iptables-restore ignores. */
export function renderDryRun(options: CaptureOptions): string {
  const set = buildRuleSet(options);
  let out = `# IPv4: iptables-restore --noflush\n${set.ipv4}`;
  if (set.ipv6 !== undefined) out += `# IPv6: ip6tables-restore --noflush\n${set.ipv6}`;
  return out;
}

export interface ApplyOptions {
  run?: CommandRunner;
  /** Skip detection. */
  backend?: Backend;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export interface ApplyReport {
  backend: Backend;
  families: { family: IpFamily; rules: number; changedHooks: boolean }[];
}

async function applyFamily(run: CommandRunner, backend: Backend, options: CaptureOptions, family: IpFamily): Promise<ApplyReport['families'][number]> {
  const { save, restore } = binaries(backend, family);
  const before = await runChecked(run, save, ['-t', 'nat']);
  const input = buildRestoreInput(options, family, before);
  await runChecked(run, restore, ['--noflush', '-w', '5'], input);
  // Read back: the hooks must now be exactly the ones we want, each once.
  const after = await runChecked(run, save, ['-t', 'nat']);
  const want = planRules(options, family).hooks;
  const got = cinchHooks(after);
  if (got.length !== want.length || !want.every((h) => got.filter((g) => g === h).length === 1)) {
    throw new NetinitError('VERIFY_FAILED', `cinch init: after ${restore}, the ${family === 4 ? 'IPv4' : 'IPv6'} hooks are [${got.join('; ')}], expected [${want.join('; ')}]`);
  }
  const rules = parseNatSave(after).rules.filter((r) => r.split(/\s+/)[1].startsWith(CHAIN_PREFIX)).length + got.length;
  return { family, rules, changedHooks: cinchHooks(before).join('\n') !== got.join('\n') };
}

/** Installs the rules for IPv4, and IPv6 when options.ipv6 is set. Throws NetinitError. */
export async function applyRules(options: CaptureOptions, apply: ApplyOptions = {}): Promise<ApplyReport> {
  const run = apply.run ?? defaultRunner;
  const backend = apply.backend ?? (await detectBackend(run));
  apply.log?.('iptables backend selected', { backend });
  const families: IpFamily[] = options.ipv6 ? [4, 6] : [4];
  const report: ApplyReport = { backend, families: [] };
  for (const family of families) {
    const result = await applyFamily(run, backend, options, family);
    apply.log?.('capture rules applied', { ...result, restore: binaries(backend, family).restore });
    report.families.push(result);
  }
  return report;
}
