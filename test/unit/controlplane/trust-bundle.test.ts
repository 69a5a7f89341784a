// Trust bundle: which namespaces get it, the ConfigMap's exact content, drift detection, the
// distribution check rotation relies on, and the work queue's coalescing, retry and rate limit.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import { createRootCa } from '../../../src/ca/create.ts';
import {
  EXCLUDED_NAMESPACES,
  TRUST_BUNDLE_CONFIGMAP,
  TRUST_BUNDLE_KEY,
  TRUST_BUNDLE_LABELS,
  WorkQueue,
  configMapDrift,
  desiredConfigMap,
  distributionStatus,
  rootFingerprints,
  trustBundlePem,
  wantsTrustBundle,
} from '../../../src/controlplane/trust-bundle.ts';

let rootA: string;
let rootB: string;
before(async () => {
  rootA = (await createRootCa({ trustDomain: 'cluster.local' })).files['root-cert.pem'];
  rootB = (await createRootCa({ trustDomain: 'cluster.local' })).files['root-cert.pem'];
});

const ns = (name: string, extra: Partial<V1Namespace> = {}): V1Namespace => ({ metadata: { name }, status: { phase: 'Active' }, ...extra });
const cm = (namespace: string, data: Record<string, string>, labels: Record<string, string> = { ...TRUST_BUNDLE_LABELS }): V1ConfigMap => ({
  metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace, labels, resourceVersion: '7' },
  data,
});

describe('which namespaces get the bundle', () => {
  test('every namespace but kube-public and kube-node-lease, kube-system and default included', () => {
    assert.deepEqual(EXCLUDED_NAMESPACES, ['kube-public', 'kube-node-lease']);
    for (const name of ['default', 'kube-system', 'cinch-system', 'app']) assert.equal(wantsTrustBundle(ns(name)), true, name);
    for (const name of EXCLUDED_NAMESPACES) assert.equal(wantsTrustBundle(ns(name)), false, name);
  });
  test('not a namespace being deleted (the API server refuses writes there)', () => {
    assert.equal(wantsTrustBundle(ns('gone', { status: { phase: 'Terminating' } })), false);
    assert.equal(wantsTrustBundle(ns('going', { metadata: { name: 'going', deletionTimestamp: new Date() } })), false);
    assert.equal(wantsTrustBundle({ metadata: {} }), false);
  });
});

describe('bundle content', () => {
  test('roots re-encoded, concatenated in the order given, duplicates dropped', () => {
    const pem = trustBundlePem([rootA, rootB, rootA]);
    assert.equal(pem, trustBundlePem([`garbage before\n${rootA}`, rootB.replace(/\n/g, '\r\n')]));
    assert.equal(pem.match(/BEGIN CERTIFICATE/g)?.length, 2);
    assert.ok(pem.indexOf(rootA.split('\n')[1]) < pem.indexOf(rootB.split('\n')[1]), 'stable order: as given');
    assert.notEqual(trustBundlePem([rootB, rootA]), pem);
  });
  test('refuses an empty bundle and non-certificates', () => {
    assert.throws(() => trustBundlePem([]), /at least one root/);
    assert.throws(() => trustBundlePem(['-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n']), /certificates only/);
  });
  test('fingerprints are order-insensitive and undefined for non-bundles', () => {
    assert.deepEqual(rootFingerprints(trustBundlePem([rootA, rootB])), rootFingerprints(trustBundlePem([rootB, rootA])));
    assert.equal(rootFingerprints(trustBundlePem([rootA, rootB]))?.length, 2);
    assert.equal(rootFingerprints('not pem'), undefined);
    assert.equal(rootFingerprints(undefined), undefined);
    assert.equal(rootFingerprints('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), undefined);
  });
});

describe('drift', () => {
  test('missing, exact, and every kind of edit', () => {
    const bundle = trustBundlePem([rootA]);
    assert.equal(configMapDrift(undefined, bundle), 'missing');
    assert.equal(configMapDrift(cm('a', { [TRUST_BUNDLE_KEY]: bundle }), bundle), undefined);
    assert.equal(configMapDrift(cm('a', { [TRUST_BUNDLE_KEY]: bundle }, { ...TRUST_BUNDLE_LABELS, team: 'x' }), bundle), undefined, 'other labels are fine');
    assert.equal(configMapDrift(cm('a', { [TRUST_BUNDLE_KEY]: 'edited' }), bundle), 'stale');
    assert.equal(configMapDrift(cm('a', {}), bundle), 'stale');
    assert.equal(configMapDrift(cm('a', { [TRUST_BUNDLE_KEY]: bundle, extra: 'x' }), bundle), 'stale');
    assert.equal(configMapDrift(cm('a', { [TRUST_BUNDLE_KEY]: bundle }, {}), bundle), 'stale', 'label removed');
    assert.equal(configMapDrift({ ...cm('a', { [TRUST_BUNDLE_KEY]: bundle }), binaryData: { x: 'AA==' } }, bundle), 'stale');
    assert.equal(configMapDrift(cm('a', { [TRUST_BUNDLE_KEY]: trustBundlePem([rootA, rootB]) }), bundle), 'stale', 'other roots');
  });
  test('the repaired ConfigMap keeps foreign labels and the resourceVersion, drops foreign data', () => {
    const bundle = trustBundlePem([rootA]);
    const existing = { ...cm('a', { [TRUST_BUNDLE_KEY]: 'x', other: 'y' }, { team: 'x' }), binaryData: { b: 'AA==' } };
    const repaired = desiredConfigMap('a', bundle, existing);
    assert.deepEqual(repaired.data, { [TRUST_BUNDLE_KEY]: bundle });
    assert.equal(repaired.binaryData, undefined);
    assert.deepEqual(repaired.metadata?.labels, { team: 'x', ...TRUST_BUNDLE_LABELS });
    assert.equal(repaired.metadata?.resourceVersion, '7');
    assert.equal(configMapDrift(repaired, bundle), undefined);
    const fresh = desiredConfigMap('b', bundle);
    assert.deepEqual(fresh.metadata, { name: TRUST_BUNDLE_CONFIGMAP, namespace: 'b', labels: { ...TRUST_BUNDLE_LABELS } });
  });
});

describe('distribution check', () => {
  test('complete only when every wanted namespace holds exactly these roots', () => {
    const both = trustBundlePem([rootA, rootB]);
    const namespaces = [ns('default'), ns('kube-system'), ns('kube-public'), ns('kube-node-lease'), ns('app'), ns('dying', { status: { phase: 'Terminating' } })];
    const full = [cm('default', { [TRUST_BUNDLE_KEY]: both }), cm('kube-system', { [TRUST_BUNDLE_KEY]: trustBundlePem([rootB, rootA]) }), cm('app', { [TRUST_BUNDLE_KEY]: both })];
    const ok = distributionStatus(namespaces, full, [rootA, rootB]);
    assert.deepEqual(ok, { namespaces: 3, current: 3, missing: [], stale: [], complete: true });
    assert.equal(distributionStatus(namespaces, full, [`${rootA}${rootB}`]).complete, true, 'one concatenated PEM is the same roots');

    const partial = distributionStatus(namespaces, [full[0], cm('app', { [TRUST_BUNDLE_KEY]: trustBundlePem([rootA]) })], [rootA, rootB]);
    assert.deepEqual(partial, { namespaces: 3, current: 1, missing: ['kube-system'], stale: ['app'], complete: false });
    assert.equal(distributionStatus(namespaces, full, [rootA]).complete, false, 'a superset is not exactly these roots');
  });
  test('ConfigMaps in excluded or other-named places do not count', () => {
    const bundle = trustBundlePem([rootA]);
    const other: V1ConfigMap = { metadata: { name: 'something-else', namespace: 'app' }, data: { [TRUST_BUNDLE_KEY]: bundle } };
    const status = distributionStatus([ns('app')], [other, cm('kube-public', { [TRUST_BUNDLE_KEY]: bundle })], [rootA]);
    assert.deepEqual(status.missing, ['app']);
  });
});

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('work queue', () => {
  test('a burst of adds for one key runs the handler once', async () => {
    const seen: string[] = [];
    const q = new WorkQueue(async (k) => void seen.push(k), { concurrency: 1 });
    for (let i = 0; i < 50; i++) q.add('a');
    q.add('b');
    await q.idle();
    assert.deepEqual(seen, ['a', 'b']);
    await q.stop();
  });
  test('a key added while it is being handled is handled again afterwards, never concurrently', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    let release!: () => void;
    const q = new WorkQueue(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        runs++;
        if (runs === 1) await new Promise<void>((r) => (release = r));
        running--;
      },
      { concurrency: 4 },
    );
    q.add('a');
    await tick();
    q.add('a');
    q.add('a');
    release();
    await q.idle();
    await tick();
    await q.idle();
    assert.equal(runs, 2);
    assert.equal(maxRunning, 1);
    await q.stop();
  });
  test('failures are retried with doubling per-key backoff, reset by a success', async () => {
    const times: number[] = [];
    const errors: number[] = [];
    const q = new WorkQueue(
      async () => {
        times.push(Date.now());
        if (times.length <= 3) throw new Error('conflict');
      },
      { baseDelayMs: 20, maxDelayMs: 1000, onError: (_k, _e, retryInMs) => errors.push(retryInMs) },
    );
    q.add('a');
    const deadline = Date.now() + 2000;
    while (times.length < 4 && Date.now() < deadline) await tick(10);
    assert.equal(times.length, 4);
    assert.deepEqual(errors, [20, 40, 80]);
    assert.ok(times[3] - times[0] >= 130, `retries waited ${times[3] - times[0]} ms`);
    await q.stop();
  });
  test('concurrency bounds parallel keys; the token bucket bounds the rate', async () => {
    let running = 0;
    let maxRunning = 0;
    const q = new WorkQueue(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await tick(5);
        running--;
      },
      { concurrency: 3, qps: 100, burst: 5 },
    );
    const start = Date.now();
    for (let i = 0; i < 15; i++) q.add(`k${i}`);
    await q.idle();
    assert.equal(maxRunning, 3);
    // 5 at once from the burst, then 10 more at 100/s: at least ~100 ms.
    assert.ok(Date.now() - start >= 90, `15 keys took ${Date.now() - start} ms`);
    await q.stop();
  });
  test('stop drops queued keys and pending retries, and waits for running handlers', async () => {
    const seen: string[] = [];
    let finished = false;
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        if (k === 'fail') throw new Error('x');
        await tick(20);
        finished = true;
      },
      { concurrency: 1, baseDelayMs: 10 },
    );
    q.add('fail');
    await tick(2);
    q.add('slow');
    q.add('never');
    await tick(2);
    await q.stop();
    assert.equal(finished, true);
    q.add('after-stop');
    await tick(30);
    assert.deepEqual(seen, ['fail', 'slow']);
  });
});
