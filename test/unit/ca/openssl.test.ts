// The fast path's certificates as OpenSSL sees them: `openssl verify -x509_strict` against the
// bundle, and `openssl x509 -text` showing the profile. CSRs come from `openssl req` as well.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRootAndIntermediate, createRootCa } from '../../../src/ca/create.ts';
import { checkCsr } from '../../../src/ca/csr.ts';
import { FastLeafSigner } from '../../../src/ca/fast-signer.ts';
import { loadCaMaterial } from '../../../src/ca/material.ts';
import type { CaMaterial } from '../../../src/ca/material.ts';
import { opensslCsr, opensslText, opensslVerify } from './support.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';

function verifyChain(material: CaMaterial, certChain: string[], atTime?: Date): string {
  return opensslVerify(certChain[0], material.trustBundle.join(''), certChain.slice(1, -1).join(''), atTime);
}

test('openssl verifies fast-path leaves from a root, an intermediate, P-384 and RSA issuers', async () => {
  const csr = checkCsr(opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/CN=sleep', ['-addext', `subjectAltName=URI:${ID}`]).csr, ID);
  for (const created of [
    await createRootCa({ trustDomain: 'cluster.local' }),
    await createRootAndIntermediate({ trustDomain: 'cluster.local' }),
    await createRootCa({ trustDomain: 'cluster.local', keyType: 'ec-p384' }),
    await createRootAndIntermediate({ trustDomain: 'cluster.local', keyType: 'rsa' }),
  ]) {
    const material = loadCaMaterial(created.files);
    const signed = new FastLeafSigner(material).sign({ csr, spiffeId: ID });
    assert.match(verifyChain(material, signed.certChain), /leaf\.pem: OK/);
  }
});

test('openssl x509 -text shows the profile: critical URI SAN, CA:FALSE, key usage, EKU, SKI/AKI', async () => {
  const material = loadCaMaterial((await createRootAndIntermediate({ trustDomain: 'cluster.local' })).files);
  const rsa = checkCsr(opensslCsr(['-newkey', 'rsa:2048']).csr, ID);
  const text = opensslText(new FastLeafSigner(material).sign({ csr: rsa, spiffeId: ID }).certChain[0]);
  assert.match(text, /Version: 3 \(0x2\)/);
  assert.match(text, /Subject: *\n/);
  assert.match(text, /Issuer: O = cluster.local, CN = Cinch Intermediate CA/);
  assert.match(text, /X509v3 Subject Alternative Name: critical\n\s+URI:spiffe:\/\/cluster.local\/ns\/default\/sa\/sleep\n/);
  assert.match(text, /X509v3 Basic Constraints: critical\n\s+CA:FALSE/);
  assert.match(text, /X509v3 Key Usage: critical\n\s+Digital Signature, Key Encipherment\n/);
  assert.match(text, /X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(text, /X509v3 Subject Key Identifier: \n\s+[0-9A-F:]{59}/);
  assert.match(text, /X509v3 Authority Key Identifier: \n\s+[0-9A-F:]{59}/);
  assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
});

test('openssl accepts a GeneralizedTime (2050+) leaf and a leaf at its maximum identity length', async () => {
  const issuedAt = new Date('2060-01-01T00:00:00Z');
  const material = loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local', now: new Date('2055-01-01T00:00:00Z') })).files, issuedAt);
  const csr = checkCsr(opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']).csr, ID);
  const longId = `spiffe://${'t'.repeat(255)}/ns/${'n'.repeat(63)}/sa/${Array.from({ length: 4 }, () => 's'.repeat(62)).join('.')}.x`;
  const signed = new FastLeafSigner(material).sign({ csr, spiffeId: longId, now: issuedAt, ttlSeconds: 86_400 });
  assert.match(verifyChain(material, signed.certChain, new Date(issuedAt.getTime() + 1000)), /OK/);
  const text = opensslText(signed.certChain[0]);
  assert.match(text, /Not After : Jan {2}2 00:00:00 2060 GMT/);
  assert.ok(text.includes(`URI:${longId}`));
});
