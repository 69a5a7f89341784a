// The workload leaf profile from the design, checked on both signers: one critical URI SAN and an
// empty subject, not a CA, key usage per key type, EKU, SKI/AKI, serials, TTL and validity clamps.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { CaError } from '../../../src/ca/errors.ts';
import type { CaErrorCode } from '../../../src/ca/errors.ts';
import { createCaCertificate, createRootAndIntermediate, createRootCa, generateCaKey } from '../../../src/ca/create.ts';
import { parseCsr } from '../../../src/ca/csr.ts';
import type { CheckedCsr } from '../../../src/ca/csr.ts';
import { FastLeafSigner } from '../../../src/ca/fast-signer.ts';
import type { LeafRequest, SignedLeaf } from '../../../src/ca/fast-signer.ts';
import { GenericLeafSigner } from '../../../src/ca/generic-signer.ts';
import { loadCaMaterial } from '../../../src/ca/material.ts';
import type { CaMaterial } from '../../../src/ca/material.ts';
import { DEFAULT_TTL_POLICY, resolveTtl } from '../../../src/ca/profile.ts';
import { x509 } from '../../../src/ca/x509.ts';
import { generateTestKey, makeCsr } from './support.ts';

const ID = 'spiffe://cluster.local/ns/foo/sa/httpbin';
const DAY = 86_400_000;
const rootMaterial = loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local' })).files);
const intermediateMaterial = loadCaMaterial((await createRootAndIntermediate({ trustDomain: 'cluster.local' })).files);
const ecCsr = parseCsr(await makeCsr(generateTestKey('ec-p256')));
const rsaCsr = parseCsr(await makeCsr(generateTestKey('rsa-2048')));

type Sign = (material: CaMaterial, request: LeafRequest, options?: { maxSeconds?: number }) => Promise<SignedLeaf>;
const signers: Record<'fast' | 'generic', Sign> = {
  fast: async (material, request, options = {}) =>
    new FastLeafSigner(material, options.maxSeconds ? { ttl: { defaultSeconds: 3600, maxSeconds: options.maxSeconds } } : {}).sign(request),
  generic: async (material, request, options = {}) =>
    (await GenericLeafSigner.create(material, options.maxSeconds ? { ttl: { defaultSeconds: 3600, maxSeconds: options.maxSeconds } } : {})).sign(request),
};

async function rejects(promise: Promise<unknown>, code: CaErrorCode, status: number, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof CaError, String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, status);
    assert.match(err.message, message);
    return true;
  });
}

for (const [name, sign] of Object.entries(signers)) {
  test(`${name}: exactly one critical URI SAN, empty subject, not a CA, EKU server+client, SKI/AKI`, async () => {
    for (const [csr, keyUsage] of [
      [ecCsr, x509.KeyUsageFlags.digitalSignature],
      [rsaCsr, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment],
    ] as Array<[CheckedCsr, number]>) {
      const signed = await sign(intermediateMaterial, { csr, spiffeId: ID });
      const leaf = new x509.X509Certificate(signed.certChain[0]);
      assert.equal(leaf.subject, '');
      assert.equal(leaf.extensions.length, 6);

      const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)!;
      assert.equal(san.critical, true);
      assert.deepEqual(san.names.toJSON(), [{ type: 'url', value: ID }]);

      const bc = leaf.getExtension(x509.BasicConstraintsExtension)!;
      assert.equal(bc.critical, true);
      assert.equal(bc.ca, false);

      const ku = leaf.getExtension(x509.KeyUsagesExtension)!;
      assert.equal(ku.critical, true);
      assert.equal(ku.usages, keyUsage);

      const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension)!;
      assert.equal(eku.critical, false);
      assert.deepEqual([...eku.usages], [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);

      const ski = leaf.getExtension(x509.SubjectKeyIdentifierExtension)!;
      assert.equal(ski.keyId, Buffer.from(await leaf.publicKey.getKeyIdentifier()).toString('hex'));
      const aki = leaf.getExtension(x509.AuthorityKeyIdentifierExtension)!;
      const issuer = new x509.X509Certificate(intermediateMaterial.chainPems[0]);
      assert.equal(aki.keyId, issuer.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);

      assert.ok(Buffer.from(leaf.publicKey.rawData).equals(csr.spki));
      assert.equal(leaf.issuer, issuer.subject);
      const native = new X509Certificate(signed.certChain[0]);
      assert.equal(native.ca, false);
      assert.equal(native.subjectAltName, `URI:${ID}`);
      assert.ok(native.verify(new X509Certificate(intermediateMaterial.chainPems[0]).publicKey));
    }
  });

  test(`${name}: chain is leaf, intermediates, root last; every PEM ends with a newline`, async () => {
    const viaRoot = await sign(rootMaterial, { csr: ecCsr, spiffeId: ID });
    assert.equal(viaRoot.certChain.length, 2);
    assert.equal(viaRoot.certChain[1], rootMaterial.trustBundle[0]);
    const viaIntermediate = await sign(intermediateMaterial, { csr: ecCsr, spiffeId: ID });
    assert.equal(viaIntermediate.certChain.length, 3);
    assert.equal(viaIntermediate.certChain[2], intermediateMaterial.trustBundle[0]);
    for (const pem of [...viaRoot.certChain, ...viaIntermediate.certChain]) assert.match(pem, /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
  });

  test(`${name}: serials are positive, 16 bytes, distinct`, async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const signed = await sign(rootMaterial, { csr: ecCsr, spiffeId: ID });
      const leaf = new x509.X509Certificate(signed.leafDer);
      assert.equal(leaf.serialNumber, signed.serialNumber);
      assert.equal(signed.serialNumber.length, 32);
      assert.ok(parseInt(signed.serialNumber.slice(0, 2), 16) >= 0x40 && parseInt(signed.serialNumber.slice(0, 2), 16) < 0x80);
      serials.add(signed.serialNumber);
    }
    assert.equal(serials.size, 50);
  });

  test(`${name}: validity is backdated 60 s, TTL default 1 h, max 24 h, whole seconds`, async () => {
    const now = new Date('2030-06-01T12:00:00.750Z');
    const material = loadCaMaterial((await createRootCa({ trustDomain: 'td', now: new Date('2030-01-01T00:00:00Z') })).files, now);
    const nowSeconds = Date.parse('2030-06-01T12:00:00Z');
    const byDefault = await sign(material, { csr: ecCsr, spiffeId: ID, now });
    assert.equal(byDefault.notBefore.getTime(), nowSeconds - 60_000);
    assert.equal(byDefault.notAfter.getTime(), nowSeconds + 3_600_000);
    const leaf = new x509.X509Certificate(byDefault.leafDer);
    assert.equal(leaf.notBefore.getTime(), byDefault.notBefore.getTime());
    assert.equal(leaf.notAfter.getTime(), byDefault.notAfter.getTime());
    const longest = await sign(material, { csr: ecCsr, spiffeId: ID, now, ttlSeconds: 86_400 });
    assert.equal(longest.notAfter.getTime(), nowSeconds + DAY);
    const short = await sign(material, { csr: ecCsr, spiffeId: ID, now, ttlSeconds: 1 });
    assert.equal(short.notAfter.getTime(), nowSeconds + 1000);
  });

  test(`${name}: a TTL over the maximum is an error (or clamped on request); bad TTLs are refused`, async () => {
    await rejects(sign(rootMaterial, { csr: ecCsr, spiffeId: ID, ttlSeconds: 86_401 }), 'bad_ttl', 400, /ttlSeconds 86401 is over the maximum of 86400/);
    const clamped = await sign(rootMaterial, { csr: ecCsr, spiffeId: ID, ttlSeconds: 10 * 86_400, overMaxTtl: 'clamp', now: new Date() });
    assert.ok(Math.abs(clamped.notAfter.getTime() - Date.now() - DAY) < 2000);
    for (const ttl of [0, -5, 1.5, '3600', Number.NaN, 2 ** 60, true]) {
      await rejects(sign(rootMaterial, { csr: ecCsr, spiffeId: ID, ttlSeconds: ttl }), 'bad_ttl', 400, /ttlSeconds must be a whole number of seconds from 1 to 86400/);
    }
    // The maximum is configurable.
    await rejects(sign(rootMaterial, { csr: ecCsr, spiffeId: ID, ttlSeconds: 7201 }, { maxSeconds: 7200 }), 'bad_ttl', 400, /maximum of 7200/);
  });

  test(`${name}: never past the issuer's expiry; an expired or future issuer signs nothing`, async () => {
    const now = Date.now();
    const keys = generateCaKey();
    const root = await createCaCertificate({ subject: 'CN=ending root', publicKey: keys.publicKey, signingKey: keys.privateKey, notBefore: new Date(now - DAY), notAfter: new Date(now + 30 * 60_000) });
    const pem = `${root.toString('pem')}\n`;
    const material = loadCaMaterial({ 'ca-cert.pem': pem, 'ca-key.pem': String(keys.privateKey.export({ format: 'pem', type: 'pkcs8' })), 'root-cert.pem': pem, 'cert-chain.pem': pem });
    const signed = await sign(material, { csr: ecCsr, spiffeId: ID, ttlSeconds: 7200 });
    assert.equal(signed.notAfter.getTime(), root.notAfter.getTime());
    await rejects(sign(material, { csr: ecCsr, spiffeId: ID, now: new Date(now + 31 * 60_000) }), 'ca_expired', 503, /the signing chain expired at/);
    await rejects(sign(material, { csr: ecCsr, spiffeId: ID, now: new Date(now - 2 * DAY) }), 'ca_expired', 503, /not valid until/);
    // Clamped to the root above an intermediate, too (the earliest expiry in the chain).
    const inter = await signers.fast(intermediateMaterial, { csr: ecCsr, spiffeId: ID, now: new Date(intermediateMaterial.validity.notAfter.getTime() - 1000) });
    assert.equal(inter.notAfter.getTime(), intermediateMaterial.validity.notAfter.getTime());
  });

  test(`${name}: after 2049 the validity is GeneralizedTime and still exact`, async () => {
    const issuedAt = new Date('2049-12-31T23:30:00Z');
    const material = loadCaMaterial((await createRootCa({ trustDomain: 'td', now: new Date('2045-01-01T00:00:00Z'), rootDays: 3650 })).files, issuedAt);
    const signed = await sign(material, { csr: ecCsr, spiffeId: ID, now: issuedAt });
    const leaf = new x509.X509Certificate(signed.leafDer);
    assert.equal(leaf.notBefore.toISOString(), '2049-12-31T23:29:00.000Z');
    assert.equal(leaf.notAfter.toISOString(), '2050-01-01T00:30:00.000Z');
    // 0x17 = UTCTime for notBefore, 0x18 = GeneralizedTime for notAfter.
    assert.ok(signed.leafDer.includes(Buffer.from('170d3439313233313233323930305a', 'hex')));
    assert.ok(signed.leafDer.includes(Buffer.from('180f32303530303130313030333030305a', 'hex')));
  });

  test(`${name}: the identity must be a SPIFFE ID with a path (a caller bug → 500)`, async () => {
    for (const spiffeId of ['spiffe://cluster.local', 'cluster.local/ns/a/sa/b', 'spiffe://cluster.local/ns/a/sa/ü']) {
      await rejects(sign(rootMaterial, { csr: ecCsr, spiffeId }), 'bad_identity', 500, /cannot issue for/);
    }
  });
}

test('resolveTtl: absent → default, clamp mode, default policy values', () => {
  assert.deepEqual(DEFAULT_TTL_POLICY, { defaultSeconds: 3600, maxSeconds: 86_400 });
  assert.equal(resolveTtl(undefined), 3600);
  assert.equal(resolveTtl(null), 3600);
  assert.equal(resolveTtl(600), 600);
  assert.equal(resolveTtl(100_000, DEFAULT_TTL_POLICY, 'clamp'), 86_400);
  assert.equal(resolveTtl(undefined, { defaultSeconds: 7200, maxSeconds: 3600 }), 3600, 'a default above the max is capped');
});
