// The patch builders on their own: every op they emit must apply (validated) and reach the target.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { diffMap, diffNamedList, diffObject, jsonEqual } from '../../../src/inject/patch.ts';

const apply = (doc: unknown, ops: Operation[]) => jsonpatch.applyPatch(structuredClone(doc), structuredClone(ops), true).newDocument;

function listCase(before: { name: string; v?: number }[] | undefined, after: { name: string; v?: number }[]) {
  const ops: Operation[] = [];
  diffNamedList('/l', before, after, ops);
  assert.deepEqual(apply({ l: before }, ops), { l: before === undefined && after.length === 0 ? undefined : after });
  return ops;
}

test('named list: inserts at the front, middle and end keep the others untouched', () => {
  const ops = listCase([{ name: 'a' }, { name: 'b' }], [{ name: 'x' }, { name: 'a' }, { name: 'y' }, { name: 'b' }, { name: 'z' }]);
  assert.deepEqual(ops.map((o) => `${o.op} ${o.path}`), ['add /l/0', 'add /l/2', 'add /l/4']);
});

test('named list: removals, changes, and unchanged elements', () => {
  const ops = listCase([{ name: 'a', v: 1 }, { name: 'gone' }, { name: 'b', v: 1 }], [{ name: 'a', v: 1 }, { name: 'b', v: 2 }]);
  assert.deepEqual(ops, [
    { op: 'remove', path: '/l/1' },
    { op: 'replace', path: '/l/1/v', value: 2 },
  ]);
});

test('named list: a reorder of kept elements replaces the list whole', () => {
  const ops = listCase([{ name: 'a' }, { name: 'b' }], [{ name: 'b' }, { name: 'a' }]);
  assert.deepEqual(ops, [{ op: 'replace', path: '/l', value: [{ name: 'b' }, { name: 'a' }] }]);
});

test('named list: missing list added whole; identical list gives nothing', () => {
  assert.deepEqual(listCase(undefined, [{ name: 'a' }]), [{ op: 'add', path: '/l', value: [{ name: 'a' }] }]);
  assert.deepEqual(listCase([{ name: 'a', v: 1 }], [{ name: 'a', v: 1 }]), []);
});

test('map: add, replace, remove with escaped keys', () => {
  const before = { 'a/b': '1', 'c~d': '2', keep: '3' };
  const after = { 'a/b': '9', keep: '3', 'e/~f': '4' };
  const ops: Operation[] = [];
  diffMap('/m', before, after, ops);
  assert.deepEqual(ops, [
    { op: 'remove', path: '/m/c~0d' },
    { op: 'replace', path: '/m/a~1b', value: '9' },
    { op: 'add', path: '/m/e~1~0f', value: '4' },
  ]);
  assert.deepEqual(apply({ m: before }, ops), { m: after });
});

test('map: missing or null map added whole, empty target adds nothing', () => {
  for (const before of [undefined, null]) {
    const ops: Operation[] = [];
    diffMap('/m', before, { k: 'v' }, ops);
    assert.deepEqual(ops, [{ op: 'add', path: '/m', value: { k: 'v' } }]);
  }
  const none: Operation[] = [];
  diffMap('/m', undefined, {}, none);
  assert.deepEqual(none, []);
});

test('object: a shallow copy with fields replaced, removed, added or set to undefined; prototype names are plain fields', () => {
  const shared = { path: '/live', port: 8080 };
  const before: Record<string, unknown> = { name: 'web', livenessProbe: shared, readinessProbe: { port: 1 }, env: [{ name: 'A' }], gone: 'x', cleared: 1, toString: 'kept' };
  const after: Record<string, unknown> = { ...before, readinessProbe: { port: 2 }, env: [{ name: 'A' }], cleared: undefined, constructor: 'new', added: { a: 1 } };
  delete after.gone;
  const ops: Operation[] = [];
  diffObject('/c', before, after, ops);
  assert.deepEqual(ops, [
    { op: 'remove', path: '/c/gone' },
    { op: 'remove', path: '/c/cleared' },
    { op: 'replace', path: '/c/readinessProbe', value: { port: 2 } },
    { op: 'add', path: '/c/constructor', value: 'new' },
    { op: 'add', path: '/c/added', value: { a: 1 } },
  ]);
  assert.deepEqual(apply({ c: before }, ops), { c: JSON.parse(JSON.stringify(after)) });
});

test('map: unchanged keys give nothing, also keys named like prototype members', () => {
  const ops: Operation[] = [];
  diffMap('/m', { a: '1', toString: 'x' }, { a: '1', toString: 'x', constructor: 'y' }, ops);
  assert.deepEqual(ops, [{ op: 'add', path: '/m/constructor', value: 'y' }]);
});

test('jsonEqual ignores key order and undefined members', () => {
  assert.ok(jsonEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }));
  assert.ok(jsonEqual({ a: 1, x: undefined }, { a: 1 }));
  assert.ok(!jsonEqual({ a: 1 }, { a: '1' }));
  assert.ok(!jsonEqual([1, 2], [2, 1]));
  assert.ok(!jsonEqual({ a: [] }, { a: {} }));
  assert.ok(!jsonEqual(null, {}));
});
