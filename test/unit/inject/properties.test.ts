// Properties that must hold for every pod shape, native and classic:
// the patch applies cleanly (RFC 6902, validated) to the original and yields exactly the returned pod;
// the input is never mutated; injecting the result again changes nothing (empty patch), also after a
// JSON round trip (as the API server hands it back on reinvocation); switching mode re-injects cleanly.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import type { V1Pod } from '@kubernetes/client-node';
import { injectPod, type InjectionContext, type InjectionResult } from '../../../src/inject/index.ts';
import { SHAPES, classic, native } from './fixtures.ts';

const json = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

function applyPatch(doc: unknown, patch: Operation[]): unknown {
  // validate=true: every op must be legal against the document (no add below a missing parent, no remove of a missing key).
  return jsonpatch.applyPatch(json(doc), json(patch), true).newDocument;
}

const MODES: [string, InjectionContext][] = [
  ['native', native],
  ['classic', classic],
];

for (const [shape, pod] of Object.entries(SHAPES)) {
  describe(`shape ${shape}`, () => {
    for (const [mode, ctx] of MODES) {
      test(`${mode}: patch applies cleanly, yields the returned pod, input untouched`, () => {
        const before = json(pod);
        const result = injectPod(pod, ctx);
        assert.deepEqual(pod, before, 'input pod was mutated');
        assert.deepEqual(applyPatch(pod, result.patch), json(result.pod));
        assert.ok(result.patch.length > 0);
        for (const op of result.patch) {
          assert.ok(!op.path.startsWith('/metadata/managedFields'), `patch touches managedFields: ${op.path}`);
          assert.ok(!op.path.startsWith('/status'), `patch touches status: ${op.path}`);
        }
      });

      test(`${mode}: idempotent (inject(inject(p)) == inject(p), empty second patch)`, () => {
        const first = injectPod(pod, ctx);
        const again = injectPod(first.pod, ctx);
        assert.deepEqual(again.patch, []);
        assert.deepEqual(json(again.pod), json(first.pod));
        // As the API server would send it back (reinvocationPolicy IfNeeded).
        const roundTrip = injectPod(json(applyPatch(pod, first.patch)) as V1Pod, ctx);
        assert.deepEqual(roundTrip.patch, []);
        assert.deepEqual(roundTrip.status, first.status);
      });

      test(`${mode}: status lists exactly what was added`, () => {
        const { pod: injected, status } = injectPod(pod, ctx);
        const names = (list?: { name: string }[]) => (list ?? []).map((c) => c.name);
        const cinchNames = (list?: { name: string }[]) => names(list).filter((n) => n.startsWith('cinch-'));
        assert.deepEqual(cinchNames(injected.spec!.initContainers).sort(), [...status.initContainers].sort());
        assert.deepEqual(cinchNames(injected.spec!.containers), status.containers);
        assert.deepEqual(cinchNames(injected.spec!.volumes), status.volumes);
        for (const key of status.annotations) assert.equal(pod.metadata?.annotations?.[key], undefined, `${key} was not added but listed`);
        for (const container of Object.keys(status.probes)) {
          const original = [...(pod.spec!.containers ?? []), ...(pod.spec!.initContainers ?? [])].find((c) => c.name === container)!;
          for (const [kind, probe] of Object.entries(status.probes[container])) assert.deepEqual(probe, original[kind as 'livenessProbe']);
        }
      });
    }

    test('switching mode on re-injection gives the same pod as injecting the original in that mode', () => {
      for (const [from, to] of [
        [native, classic],
        [classic, native],
      ]) {
        const first = injectPod(pod, from);
        const switched = injectPod(first.pod, to);
        const direct = injectPod(pod, to);
        assert.deepEqual(json(switched.pod), json(direct.pod));
        assert.deepEqual(applyPatch(first.pod, switched.patch), json(direct.pod));
      }
    });

    test('a config change re-renders only what changed', () => {
      const first = injectPod(pod, native);
      const newer: InjectionContext = { ...native, config: { ...native.config, proxyImage: 'cinch:0.2.0' } };
      const result = injectPod(first.pod, newer);
      if (pod.metadata?.annotations?.['cinch.dev/proxy-image']) {
        assert.deepEqual(result.patch, []);
        return;
      }
      assert.deepEqual(applyPatch(first.pod, result.patch), json(injectPod(pod, newer).pod));
      assert.ok(result.patch.every((op: Operation) => op.op === 'replace' && /\/image$/.test(op.path)), JSON.stringify(result.patch));
    });
  });
}

test('injection is deterministic: the same pod gives the same patch', () => {
  for (const [shape, pod] of Object.entries(SHAPES)) {
    const a: InjectionResult = injectPod(pod, native);
    assert.deepEqual(injectPod(json(pod), native).patch, a.patch, `${shape}: not deterministic`);
  }
});
