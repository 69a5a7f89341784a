// The pod's traffic-capture rules as `iptables-restore` input: a pure function of the options
// (and, for idempotent re-runs, of the current `iptables-save -t nat` text). No I/O here.
//
// Shape (the same design as istio-iptables, facts in shared/reference/mesh-facts.md §6):
//   PREROUTING -p tcp -> CINCH_INBOUND: RETURN for excluded ports, else CINCH_IN_REDIRECT (REDIRECT to 15006)
//   OUTPUT -p tcp -> CINCH_OUTPUT: RETURN for the proxy's uid/gid, loopback, excluded ports and CIDRs,
//                                  else CINCH_REDIRECT (REDIRECT to 15001)
import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;
/** '*' = every port; an empty list = none. */
export type PortSelection = '*' | readonly number[];
/** '*' = every destination; an empty list = none. */
export type CidrSelection = '*' | readonly string[];

export interface CaptureOptions {
  /** The proxy's uid: its own traffic is never captured. */
  proxyUid: number;
  /** Optional gid whose traffic is never captured either. */
  proxyGid?: number;
  inboundPort: number;
  outboundPort: number;
  /** Inbound ports to capture: '*' = all, [] = no inbound capture. */
  includeInboundPorts: PortSelection;
  /** Never captured inbound; 15020 and 15021 are always added. */
  excludeInboundPorts: readonly number[];
  excludeOutboundPorts: readonly number[];
  /** Outbound destinations to capture: '*' = all, [] = no outbound capture. IPv4 and IPv6 CIDRs may be mixed. */
  includeOutboundCidrs: CidrSelection;
  excludeOutboundCidrs: readonly string[];
  /** Also build the ip6tables rules. */
  ipv6: boolean;
}

export const CHAIN_PREFIX = 'CINCH_';
export const CHAINS = {
  inbound: 'CINCH_INBOUND',
  inRedirect: 'CINCH_IN_REDIRECT',
  output: 'CINCH_OUTPUT',
  redirect: 'CINCH_REDIRECT',
} as const;
/** Built-in nat chains our hooks live in; jumps to CINCH_* found elsewhere are not ours to touch. */
export const HOOK_CHAINS = ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'] as const;
/** The proxy's admin ports (metrics/probes, readiness): kubelet and Prometheus must reach them directly. */
export const ALWAYS_EXCLUDED_INBOUND_PORTS: readonly number[] = [15020, 15021];
/** `-m multiport` accepts at most 15 ports per rule. */
export const MULTIPORT_LIMIT = 15;
/**
 * Source address the proxy may bind when it forwards inbound traffic to the app at the pod IP:
 * such connections leave through `lo` as uid 1337 and would otherwise be captured again.
 * (IPv4 has all of 127/8 on lo; for IPv6 the address must first be added to lo.)
 */
export const INBOUND_PASSTHROUGH_SOURCE: Readonly<Record<IpFamily, string>> = { 4: '127.0.0.6', 6: '::6' };
const LOOPBACK: Readonly<Record<IpFamily, string>> = { 4: '127.0.0.1/32', 6: '::1/128' };

export const DEFAULT_CAPTURE_OPTIONS: Readonly<CaptureOptions> = {
  proxyUid: 1337,
  inboundPort: 15006,
  outboundPort: 15001,
  includeInboundPorts: '*',
  excludeInboundPorts: [],
  excludeOutboundPorts: [],
  includeOutboundCidrs: '*',
  excludeOutboundCidrs: [],
  ipv6: false,
};

/** An invalid capture option; `field` names the flag, annotation or option key that held it. */
export class CaptureConfigError extends Error {
  override readonly name = 'CaptureConfigError';
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing of comma-separated text (CLI flags, pod annotations). `field` is what error messages name.

function listItems(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

export function parsePort(text: string, field: string): number {
  const value = text.trim();
  const port = Number(value);
  if (!/^\d{1,5}$/.test(value) || port < 1 || port > 65535) {
    throw new CaptureConfigError(field, `invalid port ${JSON.stringify(text)}: expected a whole number 1-65535`);
  }
  return port;
}

/** A uid or gid (0 … 2^32-2; 2^32-1 means "no id" to the kernel). */
export function parseId(text: string, field: string): number {
  const value = text.trim();
  const id = Number(value);
  if (!/^\d{1,10}$/.test(value) || id > 0xfffffffe) {
    throw new CaptureConfigError(field, `invalid id ${JSON.stringify(text)}: expected a whole number 0-4294967294`);
  }
  return id;
}

/** "8080, 9090" → [8080, 9090]; "" → []. For exclude lists: "*" is refused. */
export function parsePorts(text: string, field: string): number[] {
  const items = listItems(text);
  if (items.includes('*')) throw new CaptureConfigError(field, '"*" is not allowed here: list the ports');
  return items.map((item) => parsePort(item, field));
}

/** Like parsePorts, but "*" (alone) selects every port. For include lists. */
export function parsePortSelection(text: string, field: string): PortSelection {
  const items = listItems(text);
  if (!items.includes('*')) return parsePorts(text, field);
  if (items.length > 1) throw new CaptureConfigError(field, '"*" must be the only entry');
  return '*';
}

const WILDCARD_EXCLUDE = '"*" is not allowed in an exclude list (it would exclude every destination; capture nothing with an empty include list instead)';

/** "10.0.0.0/8, fd00::/8" → normalized CIDRs; "" → []. For exclude lists: "*" is refused. */
export function parseCidrs(text: string, field: string): string[] {
  const items = listItems(text);
  if (items.includes('*')) throw new CaptureConfigError(field, WILDCARD_EXCLUDE);
  return items.map((item) => normalizeCidr(item, field));
}

/** Like parseCidrs, but "*" (alone) selects every destination. For include lists. */
export function parseCidrSelection(text: string, field: string): CidrSelection {
  const items = listItems(text);
  if (!items.includes('*')) return parseCidrs(text, field);
  if (items.length > 1) throw new CaptureConfigError(field, '"*" must be the only entry');
  return '*';
}

// ---------------------------------------------------------------------------------------------
// CIDRs

function addressBytes(address: string): number[] {
  if (isIPv4(address)) return address.split('.').map(Number);
  // IPv6: expand "::" and an embedded dotted IPv4 tail into 16 bytes.
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

function formatAddress(bytes: number[]): string {
  if (bytes.length === 4) return bytes.join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  // RFC 5952: compress the longest run (≥ 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Canonical `address/prefix`: a bare address gets /32 or /128, host bits are cleared, IPv6 is compressed. */
export function normalizeCidr(text: string, field: string): string {
  const value = text.trim();
  const slash = value.indexOf('/');
  const address = slash < 0 ? value : value.slice(0, slash);
  const prefixText = slash < 0 ? undefined : value.slice(slash + 1);
  const family: IpFamily | undefined = isIPv4(address) ? 4 : isIPv6(address) && !address.includes('%') ? 6 : undefined;
  if (family === undefined) {
    throw new CaptureConfigError(field, `invalid CIDR ${JSON.stringify(text)}: ${JSON.stringify(address)} is not an IPv4 or IPv6 address`);
  }
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefixText !== undefined && (!/^\d{1,3}$/.test(prefixText) || prefix > max)) {
    throw new CaptureConfigError(field, `invalid CIDR ${JSON.stringify(text)}: prefix length must be 0-${max}`);
  }
  const bytes = addressBytes(address);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] &= (0xff << (8 - keep)) & 0xff;
  }
  return `${formatAddress(bytes)}/${prefix}`;
}

export function cidrFamily(cidr: string): IpFamily {
  return cidr.includes(':') ? 6 : 4;
}

// ---------------------------------------------------------------------------------------------
// Validation of typed options (whatever their source) into the normalized form the builder uses.

function checkPort(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new CaptureConfigError(field, `invalid port ${JSON.stringify(value)}: expected a whole number 1-65535`);
  }
  return value;
}

function checkPorts(values: readonly number[], field: string): number[] {
  return [...new Set(values.map((p) => checkPort(p, field)))].sort((a, b) => a - b);
}

function checkCidrs(values: readonly string[], field: string): string[] {
  const out: string[] = [];
  for (const value of values) {
    if (value.trim() === '*') throw new CaptureConfigError(field, '"*" must be the only entry of an include list and is not allowed in an exclude list');
    const cidr = normalizeCidr(value, field);
    if (!out.includes(cidr)) out.push(cidr);
  }
  return out;
}

function checkId(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xfffffffe) {
    throw new CaptureConfigError(field, `invalid id ${JSON.stringify(value)}: expected a whole number 0-4294967294`);
  }
  return value;
}

/**
 * Fills defaults, checks every value and normalizes lists (ports sorted and deduplicated, CIDRs
 * canonical and deduplicated, 15020/15021 added to the inbound exclusions). Throws CaptureConfigError.
 */
export function validateCaptureOptions(input: Partial<CaptureOptions>): CaptureOptions {
  const o = { ...DEFAULT_CAPTURE_OPTIONS, ...input };
  const inboundPort = checkPort(o.inboundPort, 'inboundPort');
  const outboundPort = checkPort(o.outboundPort, 'outboundPort');
  if (inboundPort === outboundPort) {
    throw new CaptureConfigError('outboundPort', `must differ from inboundPort (both are ${inboundPort})`);
  }
  const excludeInboundPorts = checkPorts([...ALWAYS_EXCLUDED_INBOUND_PORTS, ...o.excludeInboundPorts], 'excludeInboundPorts');
  if (o.excludeOutboundCidrs.includes('*')) throw new CaptureConfigError('excludeOutboundCidrs', WILDCARD_EXCLUDE);
  const options: CaptureOptions = {
    proxyUid: checkId(o.proxyUid, 'proxyUid'),
    inboundPort,
    outboundPort,
    includeInboundPorts: o.includeInboundPorts === '*' ? '*' : checkPorts(o.includeInboundPorts, 'includeInboundPorts'),
    excludeInboundPorts,
    excludeOutboundPorts: checkPorts(o.excludeOutboundPorts, 'excludeOutboundPorts'),
    includeOutboundCidrs: o.includeOutboundCidrs === '*' ? '*' : checkCidrs(o.includeOutboundCidrs, 'includeOutboundCidrs'),
    excludeOutboundCidrs: checkCidrs(o.excludeOutboundCidrs, 'excludeOutboundCidrs'),
    ipv6: o.ipv6,
  };
  if (o.proxyGid !== undefined) options.proxyGid = checkId(o.proxyGid, 'proxyGid');
  return options;
}

// ---------------------------------------------------------------------------------------------
// The rules

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** `-p tcp --dport N` or `-p tcp -m multiport --dports a,b,…` per group of at most 15 ports. */
function portMatches(ports: readonly number[]): string[] {
  return chunk(ports, MULTIPORT_LIMIT).map((group) =>
    group.length === 1 ? `-p tcp -m tcp --dport ${group[0]}` : `-p tcp -m multiport --dports ${group.join(',')}`,
  );
}

export interface RulePlan {
  /** `-A CHAIN …` lines for Cinch's own chains, in order. */
  rules: string[];
  /** `-A PREROUTING …` / `-A OUTPUT …` jumps into Cinch's chains, in iptables-save's canonical form. */
  hooks: string[];
}

/** Cinch's rules and hook jumps for one family, without the restore framing. */
export function planRules(o: CaptureOptions, family: IpFamily): RulePlan {
  const { inbound, inRedirect, output, redirect } = CHAINS;
  const rules: string[] = [];
  const hooks: string[] = [];

  // Inbound. With an include list the exclusions are subtracted up front, so no RETURNs are needed.
  const includeIn = o.includeInboundPorts === '*' ? '*' : o.includeInboundPorts.filter((p) => !o.excludeInboundPorts.includes(p));
  const inboundCapture = includeIn === '*' || includeIn.length > 0;
  if (inboundCapture) {
    if (includeIn === '*') {
      for (const m of portMatches(o.excludeInboundPorts)) rules.push(`-A ${inbound} ${m} -j RETURN`);
      rules.push(`-A ${inbound} -p tcp -j ${inRedirect}`);
    } else {
      for (const m of portMatches(includeIn)) rules.push(`-A ${inbound} ${m} -j ${inRedirect}`);
    }
    rules.push(`-A ${inRedirect} -p tcp -j REDIRECT --to-ports ${o.inboundPort}`);
    hooks.push(`-A PREROUTING -p tcp -j ${inbound}`);
  }

  // Outbound.
  const includeCidrs = o.includeOutboundCidrs === '*' ? '*' : o.includeOutboundCidrs.filter((c) => cidrFamily(c) === family);
  const outboundCapture = includeCidrs === '*' || includeCidrs.length > 0;
  if (outboundCapture) {
    const loopback = LOOPBACK[family];
    const hostBits = family === 4 ? 32 : 128;
    // The proxy forwarding inbound traffic to the app from this source must not be captured again.
    rules.push(`-A ${output} -s ${INBOUND_PASSTHROUGH_SOURCE[family]}/${hostBits} -o lo -j RETURN`);
    const owners: [string, number][] = [['uid', o.proxyUid]];
    if (o.proxyGid !== undefined) owners.push(['gid', o.proxyGid]);
    for (const [kind, id] of owners) {
      // The proxy calling its own pod IP goes through lo: treat it as inbound traffic (Istio does the same),
      // via CINCH_INBOUND so that inbound exclusions and include lists still apply to it.
      if (inboundCapture) rules.push(`-A ${output} ! -d ${loopback} -o lo -p tcp -m owner --${kind}-owner ${id} -j ${inbound}`);
      // Anything else on lo (the app talking to itself or to the proxy's ports) stays local.
      rules.push(`-A ${output} -o lo -m owner ! --${kind}-owner ${id} -j RETURN`);
      rules.push(`-A ${output} -m owner --${kind}-owner ${id} -j RETURN`);
    }
    rules.push(`-A ${output} -d ${loopback} -j RETURN`);
    for (const m of portMatches(o.excludeOutboundPorts)) rules.push(`-A ${output} ${m} -j RETURN`);
    for (const cidr of o.excludeOutboundCidrs.filter((c) => cidrFamily(c) === family)) {
      rules.push(`-A ${output} -d ${cidr} -j RETURN`);
    }
    if (includeCidrs === '*') {
      rules.push(`-A ${output} -j ${redirect}`);
    } else {
      for (const cidr of includeCidrs) rules.push(`-A ${output} -d ${cidr} -j ${redirect}`);
      rules.push(`-A ${output} -j RETURN`);
    }
    rules.push(`-A ${redirect} -p tcp -j REDIRECT --to-ports ${o.outboundPort}`);
    hooks.push(`-A OUTPUT -p tcp -j ${output}`);
  }
  return { rules, hooks };
}

// ---------------------------------------------------------------------------------------------
// Reading `iptables-save -t nat`

export interface NatState {
  /** User-defined chains that exist (`:NAME - [0:0]`). */
  chains: string[];
  /** Every `-A …` line of the nat table, as printed. */
  rules: string[];
}

export function parseNatSave(text: string): NatState {
  const state: NatState = { chains: [], rules: [] };
  let inNat = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inNat = line === '*nat';
    else if (line === 'COMMIT') inNat = false;
    else if (!inNat) continue;
    else if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (policy === '-') state.chains.push(name);
    } else if (line.startsWith('-A ')) state.rules.push(line);
  }
  return state;
}

function ruleChain(rule: string): string {
  return rule.split(/\s+/)[1];
}

function ruleTarget(rule: string): string | undefined {
  return /\s-[jg]\s+(\S+)/.exec(rule)?.[1];
}

/** Jump rules from the built-in chains into Cinch's chains, as found in `iptables-save -t nat` text. */
export function cinchHooks(saveText: string): string[] {
  return parseNatSave(saveText).rules.filter(
    (r) => (HOOK_CHAINS as readonly string[]).includes(ruleChain(r)) && (ruleTarget(r) ?? '').startsWith(CHAIN_PREFIX),
  );
}

// ---------------------------------------------------------------------------------------------
// The restore input

/**
 * `iptables-restore --noflush` input for one family. Declaring Cinch's chains flushes them, so
 * their contents are replaced atomically; other chains are left alone. Given the current
 * `iptables-save -t nat` text, hook jumps that are already exactly right are kept (a re-run
 * changes nothing, and keeps the hooks' positions), otherwise they are deleted and appended
 * again, and CINCH_* chains that this version no longer uses are removed. Without it, the output
 * is the fresh rule set (what --dry-run prints and golden tests pin).
 */
export function buildRestoreInput(options: CaptureOptions, family: IpFamily, currentSave = ''): string {
  const { rules, hooks } = planRules(options, family);
  const current = parseNatSave(currentSave);
  const ours = Object.values(CHAINS) as string[];
  const stale = current.chains.filter((c) => c.startsWith(CHAIN_PREFIX) && !ours.includes(c)).sort();

  const lines = ['*nat', ...[...ours, ...stale].map((c) => `:${c} - [0:0]`)];
  const appendHooks: string[] = [];
  for (const hookChain of HOOK_CHAINS) {
    const want = hooks.filter((h) => ruleChain(h) === hookChain);
    const have = current.rules.filter((r) => ruleChain(r) === hookChain && (ruleTarget(r) ?? '').startsWith(CHAIN_PREFIX));
    if (want.length === have.length && want.every((h, i) => h === have[i])) continue;
    for (const h of have) lines.push(`-D${h.slice(2)}`);
    appendHooks.push(...want);
  }
  for (const c of stale) lines.push(`-X ${c}`);
  lines.push(...rules, ...appendHooks, 'COMMIT', '');
  return lines.join('\n');
}

export interface RuleSet {
  ipv4: string;
  /** Present when options.ipv6 is set. */
  ipv6?: string;
}

/** The fresh rule sets for both families (deterministic: golden-testable). */
export function buildRuleSet(options: CaptureOptions): RuleSet {
  const set: RuleSet = { ipv4: buildRestoreInput(options, 4) };
  if (options.ipv6) set.ipv6 = buildRestoreInput(options, 6);
  return set;
}
