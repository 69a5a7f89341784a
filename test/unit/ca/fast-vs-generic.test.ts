// Property test: over many random identities (every legal character, maximum lengths), leaf key
// types and issuers, the fast signer's certificate parses with @peculiar/x509 and node:crypto,
// verifies against its issuer, and has exactly the fields of the generic signer's certificate.
// Replay a failure with CINCH_PROPERTY_SEED=<seed printed in the assertion message>.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { childrenOf, rawOf, readNode } from '../../../src/ca/der.ts';
import { createRootAndIntermediate, createRootCa } from '../../../src/ca/create.ts';
import { checkCsr } from '../../../src/ca/csr.ts';
import { FastLeafSigner } from '../../../src/ca/fast-signer.ts';
import { GenericLeafSigner } from '../../../src/ca/generic-signer.ts';
import { loadCaMaterial } from '../../../src/ca/material.ts';
import type { CaMaterial } from '../../../src/ca/material.ts';
import { randomSerial } from '../../../src/ca/profile.ts';
import { x509 } from '../../../src/ca/x509.ts';
import { formatWorkloadId } from '../../../src/identity/spiffe.ts';
import { generateTestKey, makeCsr, seededRandom } from './support.ts';
import type { TestKeyPair, TestKeyType } from './support.ts';

const seed = Number(process.env.CINCH_PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31));
const random = seededRandom(seed);
const IDENTITIES_PER_ISSUER = Number(process.env.CINCH_PROPERTY_RUNS ?? 40);

const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
const between = (min: number, max: number): number => min + Math.floor(random() * (max - min + 1));
const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A DNS-1123 label of exactly `length` characters: alphanumeric ends, '-' allowed inside. */
function label(length: number): string {
  let out = pick([...ALNUM]);
  for (let i = 1; i < length - 1; i++) out += pick([...ALNUM, '-', '-']);
  if (length > 1) out += pick([...ALNUM]);
  return out;
}

/** Lengths biased to the edges: 1, the maximum, and anything between. */
function length(max: number): number {
  return pick([1, max, max, between(1, max), between(1, max)]);
}

function serviceAccount(): string {
  const target = length(253);
  const labels: string[] = [];
  let used = 0;
  while (used < target) {
    const room = target - used - (labels.length > 0 ? 1 : 0);
    if (room < 1) break;
    const size = Math.min(room, between(1, 63));
    labels.push(label(size));
    used += size + (labels.length > 1 ? 1 : 0);
  }
  return labels.join('.');
}

function trustDomain(): string {
  const chars = [...ALNUM, '.', '-', '_'];
  return Array.from({ length: length(255) }, () => pick(chars)).join('');
}

interface Issuer {
  readonly name: string;
  readonly material: CaMaterial;
  readonly now: Date;
}

async function issuers(): Promise<Issuer[]> {
  const now = new Date();
  const far = new Date('2055-06-15T08:09:10Z');
  return [
    { name: 'P-256 root', material: loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local' })).files), now },
    { name: 'P-256 intermediate', material: loadCaMaterial((await createRootAndIntermediate({ trustDomain: 'cluster.local' })).files), now },
    { name: 'P-384 root', material: loadCaMaterial((await createRootCa({ trustDomain: 'p384.example', keyType: 'ec-p384' })).files), now },
    { name: 'RSA intermediate', material: loadCaMaterial((await createRootAndIntermediate({ trustDomain: 'rsa.example', keyType: 'rsa' })).files), now },
    {
      name: 'P-256 root after 2049 (GeneralizedTime)',
      material: loadCaMaterial((await createRootCa({ trustDomain: 'future.example', now: new Date('2049-06-01T00:00:00Z'), rootDays: 3650 })).files, far),
      now: far,
    },
  ];
}

function tbsOf(certificate: Buffer): Buffer {
  return rawOf(certificate, childrenOf(certificate, readNode(certificate, 0))[0]);
}

/** Every field but the signature, in a comparable form. */
function fields(der: Buffer): Record<string, unknown> {
  const cert = new x509.X509Certificate(der);
  return {
    serialNumber: cert.serialNumber,
    subject: cert.subject,
    subjectDer: Buffer.from(cert.subjectName.toArrayBuffer()).toString('hex'),
    issuer: cert.issuer,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    signatureAlgorithm: cert.signatureAlgorithm,
    publicKey: Buffer.from(cert.publicKey.rawData).toString('hex'),
    extensions: cert.extensions.map((e) => ({ type: e.type, critical: e.critical, value: Buffer.from(e.value).toString('hex') })),
    san: cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(),
  };
}

test(`fast and generic signers agree on every field over random identities, keys and issuers (seed ${seed})`, async () => {
  const keyTypes: TestKeyType[] = ['ec-p256', 'ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072'];
  const pool = new Map<TestKeyType, TestKeyPair[]>();
  for (const type of new Set(keyTypes)) pool.set(type, Array.from({ length: type.startsWith('rsa') ? 2 : 4 }, () => generateTestKey(type)));

  let checked = 0;
  for (const issuer of await issuers()) {
    const fast = new FastLeafSigner(issuer.material);
    const generic = await GenericLeafSigner.create(issuer.material);
    const issuerCert = new X509Certificate(issuer.material.chain[0]);
    const issuerX509 = new x509.X509Certificate(issuer.material.chain[0]);
    for (let i = 0; i < IDENTITIES_PER_ISSUER; i++) {
      const spiffeId = formatWorkloadId({ trustDomain: trustDomain(), namespace: label(length(63)), serviceAccount: serviceAccount() });
      const key = pick(pool.get(pick(keyTypes))!);
      const csr = checkCsr(await makeCsr(key, random() < 0.5 ? [{ type: 'url', value: spiffeId }] : []), spiffeId);
      const ttlSeconds = pick([undefined, 1, 60, 3600, 86_400, between(1, 86_400)]);
      const request = { csr, spiffeId, ttlSeconds, now: new Date(issuer.now.getTime() + between(0, 3_600_000)), serial: randomSerial() };
      const context = `seed ${seed}, issuer ${issuer.name}, #${i}, key ${key.type}, id ${spiffeId}`;

      const fastLeaf = fast.sign(request);
      const genericLeaf = await generic.sign(request);
      assert.deepEqual(fields(fastLeaf.leafDer), fields(genericLeaf.leafDer), context);
      // Stronger than field equality: the signed bytes are identical.
      assert.ok(tbsOf(fastLeaf.leafDer).equals(tbsOf(genericLeaf.leafDer)), `TBS differs: ${context}`);

      const native = new X509Certificate(fastLeaf.certChain[0]);
      assert.ok(native.raw.equals(fastLeaf.leafDer), context);
      assert.ok(native.verify(issuerCert.publicKey), `node verify: ${context}`);
      assert.ok(native.checkIssued(issuerCert), `node checkIssued: ${context}`);
      assert.equal(native.subjectAltName, `URI:${spiffeId}`, context);
      assert.equal(native.ca, false, context);
      const parsed = new x509.X509Certificate(fastLeaf.certChain[0]);
      assert.ok(await parsed.verify({ publicKey: issuerX509.publicKey, signatureOnly: true }), `@peculiar verify: ${context}`);
      assert.deepEqual(fastLeaf.certChain.slice(1), issuer.material.chainPems, context);
      checked++;
    }
  }
  assert.equal(checked, 5 * IDENTITIES_PER_ISSUER);
});

test('the fast signer reuses its last SAN and validity encodings only for the same ID and times', async () => {
  const [issuer] = await issuers();
  const fast = new FastLeafSigner(issuer.material);
  const generic = await GenericLeafSigner.create(issuer.material);
  const key = generateTestKey('ec-p256');
  const a = 'spiffe://cluster.local/ns/a/sa/one';
  const b = 'spiffe://cluster.local/ns/b/sa/two';
  const t0 = issuer.now.getTime();
  // Repeats (cache hits) and changes (misses) of the ID and of each time, in turn.
  const steps: Array<[string, number, number | undefined]> = [
    [a, t0, undefined], [a, t0, undefined], [a, t0 + 400, undefined], [a, t0 + 1000, undefined], [b, t0 + 1000, undefined],
    [b, t0 + 1000, 60], [a, t0 + 1000, 60], [a, t0 + 1000, undefined], [b, t0 + 7000, 3600], [b, t0 + 7000, 3600],
  ];
  for (const [spiffeId, now, ttlSeconds] of steps) {
    const request = { csr: checkCsr(await makeCsr(key, []), spiffeId), spiffeId, ttlSeconds, now: new Date(now), serial: randomSerial() };
    const fastLeaf = fast.sign(request);
    assert.ok(tbsOf(fastLeaf.leafDer).equals(tbsOf((await generic.sign(request)).leafDer)), `${spiffeId} at +${now - t0} ms, ttl ${ttlSeconds}`);
    assert.equal(new X509Certificate(fastLeaf.certChain[0]).subjectAltName, `URI:${spiffeId}`);
  }
  // An ID the check refuses is refused right after a cached good one, and leaves the cache good.
  const csr = checkCsr(await makeCsr(key, []), a);
  assert.throws(() => fast.sign({ csr, spiffeId: 'spiffe://cluster.local' }), /bad_identity|no path/);
  assert.throws(() => fast.sign({ csr, spiffeId: 'spiffe://cluster.local/ns/a/sa/one/' }), /empty segment/);
  assert.equal(new X509Certificate(fast.sign({ csr, spiffeId: a }).certChain[0]).subjectAltName, `URI:${a}`);
});
