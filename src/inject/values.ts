// Parsers for the small value languages of annotations and config: Kubernetes quantities,
// port lists, CIDR lists. Each returns the parsed value or a reason string (never throws),
// so the caller can wrap the reason with the name of the annotation or field.
import { isIPv4, isIPv6 } from 'node:net';

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(reason: string): Parsed<T> => ({ ok: false, reason });

// --- Kubernetes resource quantities (k8s.io/apimachinery resource.Quantity), non-negative only ---

const QUANTITY = /^(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;
const SUFFIX_FACTOR: Record<string, number> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** The quantity's magnitude as a float: precise enough to compare a request with its limit. */
export function parseQuantity(text: string): Parsed<number> {
  const match = QUANTITY.exec(text);
  if (!match) return fail('not a Kubernetes quantity (e.g. 100m, 0.5, 128Mi, 1G)');
  const [, digits, suffix = ''] = match;
  const factor = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : SUFFIX_FACTOR[suffix];
  return ok(Number(digits) * factor);
}

// --- Ports ---

function parsePort(item: string): number | undefined {
  if (!/^\d{1,5}$/.test(item)) return undefined;
  const port = Number(item);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** Comma-separated ports 1–65535 (spaces allowed around items, duplicates dropped); '' is the empty list. */
export function parsePortList(text: string): Parsed<number[]> {
  const items = splitList(text);
  if (!items.ok) return items;
  const ports: number[] = [];
  for (const item of items.value) {
    if (item === '*') return fail(STAR_NOT_ALLOWED);
    const port = parsePort(item);
    if (port === undefined) return fail(`"${item}" is not a port number 1-65535`);
    if (!ports.includes(port)) ports.push(port);
  }
  return ok(ports);
}

/** Like parsePortList, or `*` alone for "every port". */
export function parsePortListOrAll(text: string): Parsed<number[] | '*'> {
  return text.trim() === '*' ? ok('*') : withStarHint(parsePortList(text));
}

// --- CIDRs ---

/** `a.b.c.d/0-32` or `<IPv6>/0-128`, or a bare address (one host); host bits may be set, as iptables accepts them. */
export function parseCidr(text: string): Parsed<string> {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const maxPrefix = isIPv4(address) ? 32 : isIPv6(address) ? 128 : 0;
  if (maxPrefix === 0) return fail(`"${text}" is not a CIDR: "${address}" is not an IPv4 or IPv6 address`);
  const prefix = slash < 0 ? String(maxPrefix) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > maxPrefix) return fail(`"${text}" is not a CIDR: prefix must be 0-${maxPrefix}`);
  return ok(`${address}/${Number(prefix)}`);
}

export function parseCidrList(text: string): Parsed<string[]> {
  const items = splitList(text);
  if (!items.ok) return items;
  const cidrs: string[] = [];
  for (const item of items.value) {
    if (item === '*') return fail(STAR_NOT_ALLOWED);
    const cidr = parseCidr(item);
    if (!cidr.ok) return cidr;
    if (!cidrs.includes(cidr.value)) cidrs.push(cidr.value);
  }
  return ok(cidrs);
}

export function parseCidrListOrAll(text: string): Parsed<string[] | '*'> {
  return text.trim() === '*' ? ok('*') : withStarHint(parseCidrList(text));
}

const STAR_NOT_ALLOWED = '"*" is not allowed in an exclude list (to capture nothing, set the include list to "")';

/** In an include list `*` is allowed, but only alone. */
function withStarHint<T>(parsed: Parsed<T>): Parsed<T> {
  return !parsed.ok && parsed.reason === STAR_NOT_ALLOWED ? fail('"*" must be the whole value, not one item of a list') : parsed;
}

/** Comma-separated items; '' (or only spaces) is the empty list, an empty item ("80,,90") is an error. */
function splitList(text: string): Parsed<string[]> {
  if (text.trim() === '') return ok([]);
  const items = text.split(',').map((item) => item.trim());
  if (items.includes('')) return fail('empty item in comma-separated list');
  return ok(items);
}

// --- Small enums ---

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function parseLogLevel(text: string): Parsed<LogLevel> {
  return (LOG_LEVELS as readonly string[]).includes(text) ? ok(text as LogLevel) : fail(`expected one of ${LOG_LEVELS.join(', ')}`);
}

/** Only the exact strings "true" and "false", as in the DESIGN: "yes", "1" or "True" are refused rather than guessed. */
export function parseBooleanString(text: string): Parsed<boolean> {
  if (text === 'true') return ok(true);
  if (text === 'false') return ok(false);
  return fail('expected "true" or "false"');
}

/** A container image reference, loosely: non-empty, no whitespace or control characters, not an option. */
export function parseImage(text: string): Parsed<string> {
  if (text === '' || /[\s\p{Cc}]/u.test(text) || text.startsWith('-')) return fail('not a container image reference');
  return ok(text);
}
