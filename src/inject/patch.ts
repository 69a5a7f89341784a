// Building the RFC 6902 patch section by section, from the few parts of the pod injection touches
// (two maps and three named lists), instead of diffing whole pods: the cost does not grow with
// managedFields, status or anything else injection never looks at.
import type { Operation } from 'fast-json-patch';

/** RFC 6901: `~` → `~0` first, then `/` → `~1`. */
export function escapePointer(token: string): string {
  // Most tokens (container fields, plain keys) need nothing; annotation keys usually need only the `/`.
  if (!token.includes('~')) return token.includes('/') ? token.replaceAll('/', '~1') : token;
  return token.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Structural equality of JSON values (key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((item, i) => jsonEqual(item, other[i]));
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = Object.keys(ra).filter((k) => ra[k] !== undefined);
  if (keys.length !== Object.keys(rb).filter((k) => rb[k] !== undefined).length) return false;
  return keys.every((k) => Object.hasOwn(rb, k) && jsonEqual(ra[k], rb[k]));
}

/** A string map (annotations, labels): one op per key that changed; the whole map when it did not exist. */
export function diffMap(path: string, before: Readonly<Record<string, string>> | undefined | null, after: Readonly<Record<string, string>>, ops: Operation[]): void {
  if (before === undefined || before === null) {
    if (Object.keys(after).length > 0) ops.push({ op: 'add', path, value: after });
    return;
  }
  for (const key of Object.keys(before)) {
    if (!Object.hasOwn(after, key)) ops.push({ op: 'remove', path: `${path}/${escapePointer(key)}` });
  }
  for (const key of Object.keys(after)) {
    const value = after[key];
    const old = before[key];
    if (old === value && old !== undefined) continue; // most keys: kept as they were (a string is never one of a prototype's functions)
    if (!Object.hasOwn(before, key)) ops.push({ op: 'add', path: `${path}/${escapePointer(key)}`, value });
    else ops.push({ op: 'replace', path: `${path}/${escapePointer(key)}`, value });
  }
}

/** One op per top-level field that changed (containers are small; their fields are compared whole). */
export function diffObject(path: string, before: object, after: object, ops: Operation[]): void {
  if (before === after) return;
  const b = before as Record<string, unknown>;
  const a = after as Record<string, unknown>;
  // `after` is usually a shallow copy of `before` with a few fields replaced: the same value on both
  // sides is settled by one comparison (a JSON value is never one of a prototype's functions).
  for (const key of Object.keys(b)) {
    const old = b[key];
    if (old !== undefined && a[key] !== old && (!Object.hasOwn(a, key) || a[key] === undefined)) ops.push({ op: 'remove', path: `${path}/${escapePointer(key)}` });
  }
  for (const key of Object.keys(a)) {
    const value = a[key];
    if (value === undefined) continue;
    const old = b[key];
    if (old === value) continue;
    if (old === undefined || !Object.hasOwn(b, key)) ops.push({ op: 'add', path: `${path}/${escapePointer(key)}`, value });
    else if (!jsonEqual(old, value)) ops.push({ op: 'replace', path: `${path}/${escapePointer(key)}`, value });
  }
}

interface Named {
  name: string;
}

/**
 * A list keyed by name (containers, volumes). Removes what is gone, inserts what is new at its index
 * and diffs what stayed, as long as the kept elements keep their relative order (always true of the
 * app's own elements); otherwise the list is replaced whole. A list that did not exist is added whole.
 */
export function diffNamedList(path: string, before: readonly Named[] | undefined | null, after: readonly Named[], ops: Operation[]): void {
  if (before === undefined || before === null) {
    if (after.length > 0) ops.push({ op: 'add', path, value: after });
    return;
  }
  const afterNames = new Set(after.map((item) => item.name));
  const kept = before.filter((item) => afterNames.has(item.name));
  let k = 0;
  for (const item of after) if (k < kept.length && kept[k].name === item.name) k++;
  if (k !== kept.length) {
    ops.push({ op: 'replace', path, value: after });
    return;
  }
  for (let i = before.length - 1; i >= 0; i--) {
    if (!afterNames.has(before[i].name)) ops.push({ op: 'remove', path: `${path}/${i}` });
  }
  k = 0;
  after.forEach((item, i) => {
    if (k < kept.length && kept[k].name === item.name) diffObject(`${path}/${i}`, kept[k++], item, ops);
    else ops.push({ op: 'add', path: `${path}/${i}`, value: item });
  });
}
