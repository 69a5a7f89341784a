// Root rotation, pure part: each phase's precondition (order, trust-bundle distribution, waiting
// periods), what each phase writes, idempotence, state parsing, and a full cycle in which leaves
// from before, during and after the rotation verify against the bundle workloads hold at the time.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { parseCsr } from '../../../src/ca/csr.ts';
import { createRootAndIntermediate, createRootCa } from '../../../src/ca/create.ts';
import { CaMaterialError } from '../../../src/ca/errors.ts';
import { FastLeafSigner } from '../../../src/ca/fast-signer.ts';
import { loadCaMaterial, type CaFiles } from '../../../src/ca/material.ts';
import {
  NEXT_CA_CERT_FILE,
  NEXT_CA_KEY_FILE,
  NEXT_CERT_CHAIN_FILE,
  ROTATION_ANNOTATION,
  RotationError,
  addRoot,
  checkPrecondition,
  dropOldRoots,
  formatRotationState,
  nextPhase,
  parseRotationState,
  readyAt,
  rootsOf,
  switchSigning,
  trustDomainOf,
  type BundleCheck,
  type RotationState,
} from '../../../src/ca/rotation.ts';
import { generateTestKey, makeCsr, opensslVerify } from './support.ts';

const T0 = new Date('2030-01-01T00:00:00Z');
const HOUR = 3600_000;
const at = (ms: number) => new Date(T0.getTime() + ms);
const EVERYWHERE: BundleCheck = { complete: true, missing: [], stale: [] };

let oldCa: CaFiles;
let newCa: CaFiles;
let plugged: CaFiles;
before(async () => {
  const created = { now: new Date(T0.getTime() - 24 * HOUR) };
  oldCa = (await createRootCa({ trustDomain: 'cluster.local', ...created })).files;
  newCa = (await createRootCa({ trustDomain: 'cluster.local', ...created })).files;
  plugged = (await createRootAndIntermediate({ trustDomain: 'cluster.local', ...created })).files;
});

function state(phase: RotationState['phase'], extra: Partial<RotationState> = {}): RotationState {
  return {
    version: 1,
    phase,
    oldRoots: ['aa'],
    newRoots: ['bb'],
    maxCertTtlSeconds: 86_400,
    graceSeconds: 300,
    addedAt: T0.toISOString(),
    ...(phase !== 'added' ? { switchedAt: at(25 * HOUR).toISOString() } : {}),
    ...(phase === 'dropped' ? { droppedAt: at(50 * HOUR).toISOString() } : {}),
    ...extra,
  };
}

describe('preconditions', () => {
  test('add: ready with no rotation or after a completed one; done when added; blocked mid-rotation', () => {
    assert.equal(checkPrecondition('add', { state: undefined, now: T0 }).status, 'ready');
    assert.equal(checkPrecondition('add', { state: state('dropped'), now: T0 }).status, 'ready');
    assert.equal(checkPrecondition('add', { state: state('added'), now: T0 }).status, 'done');
    const mid = checkPrecondition('add', { state: state('switched'), now: T0 });
    assert.equal(mid.status, 'blocked');
    assert.match((mid as { message: string }).message, /still in progress.*--phase drop \(possible from 2030-01-03T01:05:00.000Z\)/);
  });

  test('switch: needs the add, the bundle everywhere, and one max lifetime + grace since the add', () => {
    const added = state('added');
    const ready = at(24 * HOUR + 5 * 60_000);
    assert.equal(checkPrecondition('switch', { state: undefined, now: ready, bundle: EVERYWHERE }).status, 'blocked');
    assert.equal(checkPrecondition('switch', { state: state('dropped'), now: ready, bundle: EVERYWHERE }).status, 'blocked');
    assert.equal(checkPrecondition('switch', { state: state('switched'), now: ready }).status, 'done');
    assert.deepEqual(checkPrecondition('switch', { state: added, now: ready, bundle: EVERYWHERE }), { status: 'ready' });

    const early = checkPrecondition('switch', { state: added, now: at(HOUR), bundle: EVERYWHERE });
    assert.equal(early.status, 'blocked');
    assert.match((early as { message: string }).message, /wait until 2030-01-02T00:05:00.000Z \(one max certificate lifetime, 24 h, \+ 5 min after the add\)/);
    assert.deepEqual((early as { readyAt?: Date }).readyAt, ready);

    const notEverywhere = checkPrecondition('switch', { state: added, now: ready, bundle: { complete: false, missing: ['a', 'b'], stale: ['c'] } });
    assert.equal(notEverywhere.status, 'blocked');
    assert.match((notEverywhere as { message: string }).message, /cinch-ca-root-cert to hold both roots in every namespace \(missing in a, b; not yet both roots in c\)/);
    const both = checkPrecondition('switch', { state: added, now: at(HOUR), bundle: { complete: false, missing: [], stale: Array.from({ length: 8 }, (_, i) => `ns${i}`) } });
    assert.match((both as { message: string }).message, /ns0, ns1, ns2, ns3, ns4 and 3 more.*, and until/);
  });

  test('drop: needs the switch and one max lifetime + grace since it', () => {
    assert.equal(checkPrecondition('drop', { state: undefined, now: T0 }).status, 'blocked');
    const added = checkPrecondition('drop', { state: state('added'), now: at(100 * HOUR) });
    assert.match((added as { message: string }).message, /run --phase switch first/);
    assert.equal(checkPrecondition('drop', { state: state('dropped'), now: T0 }).status, 'done');
    const switched = state('switched');
    const early = checkPrecondition('drop', { state: switched, now: at(48 * HOUR) });
    assert.equal(early.status, 'blocked');
    assert.match((early as { message: string }).message, /may be in use until 2030-01-03T01:05:00.000Z/);
    assert.equal(checkPrecondition('drop', { state: switched, now: at(49 * HOUR + 5 * 60_000) }).status, 'ready');
  });

  test('auto follows add → switch → drop and stops after a completed rotation', () => {
    assert.equal(nextPhase(undefined), 'add');
    assert.equal(nextPhase(state('added')), 'switch');
    assert.equal(nextPhase(state('switched')), 'drop');
    assert.equal(nextPhase(state('dropped')), undefined);
    assert.deepEqual(readyAt(state('switched'), 'drop'), at(49 * HOUR + 5 * 60_000));
  });
});

describe('state annotation', () => {
  test('round-trips and refuses what it does not understand', () => {
    assert.equal(ROTATION_ANNOTATION, 'cinch.dev/root-rotation');
    const s = state('switched');
    assert.deepEqual(parseRotationState(formatRotationState(s)), s);
    assert.equal(parseRotationState(undefined), undefined);
    assert.equal(parseRotationState(''), undefined);
    for (const bad of ['{', '{}', JSON.stringify({ ...s, version: 2 }), JSON.stringify({ ...s, phase: 'x' }), JSON.stringify({ ...s, switchedAt: undefined }), JSON.stringify({ ...s, addedAt: 'yesterday' })]) {
      assert.throws(() => parseRotationState(bad), RotationError, bad);
    }
  });
});

describe('phases', () => {
  test('add keeps signing with the old root, bundles both (old first), parks the new material', () => {
    const r = addRoot(oldCa, newCa, { now: T0, maxCertTtlSeconds: 7200, graceSeconds: 60 });
    const material = loadCaMaterial(r.data, T0);
    assert.equal(r.data['ca-cert.pem'], oldCa['ca-cert.pem']);
    assert.equal(r.data['ca-key.pem'], oldCa['ca-key.pem']);
    assert.deepEqual(rootsOf(r.data['root-cert.pem']), [...rootsOf(oldCa['root-cert.pem']), ...rootsOf(newCa['root-cert.pem'])]);
    assert.equal(material.trustBundle.length, 2);
    assert.equal(r.data[NEXT_CA_CERT_FILE], newCa['ca-cert.pem']);
    assert.equal(r.data[NEXT_CA_KEY_FILE], newCa['ca-key.pem']);
    assert.equal(r.data[NEXT_CERT_CHAIN_FILE], newCa['cert-chain.pem']);
    assert.deepEqual(r.state, {
      version: 1,
      phase: 'added',
      oldRoots: rootsOf(oldCa['root-cert.pem']),
      newRoots: rootsOf(newCa['root-cert.pem']),
      maxCertTtlSeconds: 7200,
      graceSeconds: 60,
      addedAt: T0.toISOString(),
    });
    assert.match(r.summary, /now holds 2 roots/);
    assert.doesNotMatch(r.summary, /PRIVATE KEY/);
  });

  test('add refuses a root already in the bundle, and inconsistent new material', () => {
    assert.throws(() => addRoot(oldCa, oldCa, { now: T0, maxCertTtlSeconds: 60 }), /no root that is not already in the bundle/);
    assert.throws(() => addRoot(oldCa, { ...newCa, 'ca-key.pem': oldCa['ca-key.pem'] }, { now: T0, maxCertTtlSeconds: 60 }), (e: unknown) => e instanceof CaMaterialError && e.check === 'key_mismatch');
  });

  test('switch moves the parked material in; drop removes only the old roots', () => {
    const added = addRoot(oldCa, plugged, { now: T0, maxCertTtlSeconds: 60 });
    const switched = switchSigning(added.data, added.state, at(HOUR));
    assert.equal(switched.data['ca-cert.pem'], plugged['ca-cert.pem']);
    assert.equal(switched.data['ca-key.pem'], plugged['ca-key.pem']);
    assert.equal(switched.data['cert-chain.pem'], plugged['cert-chain.pem']);
    for (const f of [NEXT_CA_CERT_FILE, NEXT_CA_KEY_FILE, NEXT_CERT_CHAIN_FILE]) assert.equal(f in switched.data, false, f);
    assert.equal(switched.data['root-cert.pem'], added.data['root-cert.pem']);
    assert.equal(switched.state.phase, 'switched');
    assert.equal(switched.state.switchedAt, at(HOUR).toISOString());

    const dropped = dropOldRoots(switched.data, switched.state, at(3 * HOUR));
    assert.deepEqual(rootsOf(dropped.data['root-cert.pem']), rootsOf(plugged['root-cert.pem']));
    assert.equal(dropped.state.phase, 'dropped');
    assert.equal(loadCaMaterial(dropped.data, at(3 * HOUR)).trustBundle.length, 1);
  });

  test('switch refuses a Secret whose parked material is gone', () => {
    const added = addRoot(oldCa, newCa, { now: T0, maxCertTtlSeconds: 60 });
    const broken = { ...added.data };
    delete broken[NEXT_CA_KEY_FILE];
    assert.throws(() => switchSigning(broken, added.state, T0), /lacks next-ca-key.pem/);
  });

  test('the trust domain of a generated root comes from the current one', () => {
    assert.equal(trustDomainOf(oldCa['ca-cert.pem']), 'cluster.local');
  });
});

describe('a full rotation keeps every connection verifiable', () => {
  test('leaves before, during and after verify against the bundle their peers hold', async () => {
    const key = generateTestKey('ec-p256');
    const csr = parseCsr(await makeCsr(key, [{ type: 'url', value: 'spiffe://cluster.local/ns/a/sa/b' }]));
    const leafFrom = (data: Record<string, string>, now: Date) =>
      new FastLeafSigner(loadCaMaterial(data, now)).sign({ csr, spiffeId: 'spiffe://cluster.local/ns/a/sa/b', now, ttlSeconds: 3600 }).certChain;
    const verify = (chain: string[], roots: string, now: Date) => opensslVerify(chain[0], roots, chain.slice(1, -1).join(''), now);

    const t1 = at(10 * 60_000);
    const beforeLeaf = leafFrom(oldCa, T0);
    const added = addRoot(oldCa, plugged, { now: t1, maxCertTtlSeconds: 3600, graceSeconds: 0 });
    // A workload that renewed after the add trusts both roots; leaves from before still verify.
    verify(beforeLeaf, added.data['root-cert.pem'], t1);

    const t2 = new Date(t1.getTime() + HOUR + 1000);
    assert.equal(checkPrecondition('switch', { state: added.state, now: new Date(t2.getTime() - 2000), bundle: EVERYWHERE }).status, 'blocked');
    assert.equal(checkPrecondition('switch', { state: added.state, now: t2, bundle: EVERYWHERE }).status, 'ready');
    const lastOld = leafFrom(added.data, new Date(t2.getTime() - 1000));
    assert.equal(lastOld[1], oldCa['ca-cert.pem'], 'until the switch, the old root signs');
    const switched = switchSigning(added.data, added.state, t2);
    const afterSwitch = leafFrom(switched.data, t2);
    verify(afterSwitch, added.data['root-cert.pem'], t2);
    verify(lastOld, switched.data['root-cert.pem'], t2);
    assert.throws(() => verify(afterSwitch, oldCa['root-cert.pem'], t2), 'a new leaf does not chain to the old root alone');

    const t3 = new Date(t2.getTime() + HOUR + 1000);
    assert.equal(checkPrecondition('drop', { state: switched.state, now: t3 }).status, 'ready');
    assert.throws(() => verify(lastOld, added.data['root-cert.pem'], t3), 'by drop time, every old-root leaf has expired');
    const dropped = dropOldRoots(switched.data, switched.state, t3);
    verify(leafFrom(dropped.data, t3), dropped.data['root-cert.pem'], t3);
    assert.throws(() => verify(lastOld, dropped.data['root-cert.pem'], t2), 'old-root leaves are no longer trusted');
  });
});
