// CSR checks: what is accepted, and each refusal with its code, status and message.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CaError } from '../../../src/ca/errors.ts';
import type { CaErrorCode } from '../../../src/ca/errors.ts';
import { ECDH, sign } from 'node:crypto';
import { MAX_CSR_PEM_BYTES, checkCsr, knownEcSpki, parseCsr } from '../../../src/ca/csr.ts';
import { bitString, integer, oid, sequence } from '../../../src/ca/der.ts';
import { OID } from '../../../src/ca/profile.ts';
import { encodePem, decodePem } from '../../../src/ca/pem.ts';
import { x509 } from '../../../src/ca/x509.ts';
import { generateTestKey, makeCsr, opensslCsr } from './support.ts';

const ID = 'spiffe://cluster.local/ns/foo/sa/httpbin';
const p256 = generateTestKey('ec-p256');

function refused(fn: () => unknown, code: CaErrorCode, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CaError, `expected CaError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    assert.equal(err.status, code === 'identity_mismatch' ? 403 : 400);
    assert.deepEqual(err.toResponseBody(), { error: { code, message: err.message } });
    return true;
  });
}

function der(pem: string): Buffer {
  return decodePem(pem)[0].der;
}

test('accepts P-256, P-384, RSA 2048 and RSA 3072 keys, with or without the caller’s URI SAN', async () => {
  for (const type of ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072'] as const) {
    const key = type === 'ec-p256' ? p256 : generateTestKey(type);
    for (const sans of [[], [{ type: 'url' as const, value: ID }], [{ type: 'url' as const, value: ID }, { type: 'url' as const, value: ID }]]) {
      const pem = await makeCsr(key, sans);
      const csr = checkCsr(pem, ID);
      assert.equal(csr.keyType, type.startsWith('rsa') ? 'rsa' : type);
      assert.equal(csr.keyBits, Number(type.replace(/\D+/g, '')) || undefined);
      // The same key @peculiar/x509 sees, and its own verification agrees.
      const reference = new x509.Pkcs10CertificateRequest(pem);
      assert.ok(csr.spki.equals(Buffer.from(reference.publicKey.rawData)));
      assert.equal(await reference.verify(), true);
      assert.equal(csr.sans.length, sans.length);
    }
  }
});

test('the subject is ignored: the leaf never carries it', async () => {
  const csr = checkCsr(await makeCsr(p256, [], 'CN=somebody-else, O=evil'), ID);
  assert.equal(csr.keyType, 'ec-p256');
});

test('refuses an oversize CSR before parsing it', async () => {
  const pem = await makeCsr(p256);
  refused(() => parseCsr(pem + ' '.repeat(MAX_CSR_PEM_BYTES)), 'csr_too_large', /CSR is \d+ bytes; the limit is 16384/);
  refused(() => parseCsr('x'.repeat(MAX_CSR_PEM_BYTES + 1)), 'csr_too_large', /limit/);
});

test('refuses garbage with a precise bad_csr', async () => {
  const good = await makeCsr(p256);
  const goodDer = der(good);
  refused(() => parseCsr(''), 'bad_csr', /no "-----BEGIN CERTIFICATE REQUEST-----" block/);
  refused(() => parseCsr('hello'), 'bad_csr', /not PEM/);
  refused(() => parseCsr('-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n'), 'bad_csr', /valid base64/);
  refused(() => parseCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n'), 'bad_csr', /not terminated/);
  refused(() => parseCsr(encodePem('CERTIFICATE REQUEST', Buffer.from('not der at all'))), 'bad_csr', /not a valid PKCS#10 request/);
  refused(() => parseCsr(good + good), 'bad_csr', /exactly one CERTIFICATE REQUEST/);
  refused(() => parseCsr(encodePem('CERTIFICATE', goodDer)), 'bad_csr', /exactly one CERTIFICATE REQUEST.*found CERTIFICATE/);
  refused(() => parseCsr(encodePem('CERTIFICATE REQUEST', Buffer.concat([goodDer, Buffer.from([0])]))), 'bad_csr', /trailing data/);
  refused(() => parseCsr(encodePem('CERTIFICATE REQUEST', goodDer.subarray(0, goodDer.length - 5))), 'bad_csr', /runs past the end/);
  // BER's indefinite length is refused, not guessed at.
  const ber = Buffer.concat([Buffer.from([0x30, 0x80]), goodDer.subarray(goodDer[1] & 0x80 ? 2 + (goodDer[1] & 0x7f) : 2), Buffer.from([0, 0])]);
  refused(() => parseCsr(encodePem('CERTIFICATE REQUEST', ber)), 'bad_csr', /indefinite length/);
});

test('refuses a CSR whose signature does not verify (forged, or a swapped key)', async () => {
  const goodDer = der(await makeCsr(p256));
  const forged = Buffer.from(goodDer);
  forged[forged.length - 3] ^= 0x01;
  refused(() => parseCsr(encodePem('CERTIFICATE REQUEST', forged)), 'bad_csr', /signature does not verify .*no proof of possession/);

  // Someone else's public key in a request signed with ours.
  const other = generateTestKey('ec-p256').publicKey.export({ format: 'der', type: 'spki' });
  const ours = p256.publicKey.export({ format: 'der', type: 'spki' });
  const at = goodDer.indexOf(ours);
  assert.ok(at > 0);
  const swapped = Buffer.concat([goodDer.subarray(0, at), other, goodDer.subarray(at + ours.length)]);
  refused(() => parseCsr(encodePem('CERTIFICATE REQUEST', swapped)), 'bad_csr', /signature does not verify/);
});

test('refuses weak or unsupported keys with weak_key', async () => {
  const rsa1024 = await makeCsr(generateTestKey('rsa-1024'));
  refused(() => parseCsr(rsa1024), 'weak_key', /RSA key of 1024 bits is too weak; use at least 2048 bits/);
  refused(() => parseCsr(opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime192v1']).csr), 'weak_key', /EC curve P-192 is not accepted; use P-256 or P-384/);
  refused(() => parseCsr(opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp521r1']).csr), 'weak_key', /P-521 is not accepted/);
  refused(() => parseCsr(opensslCsr(['-newkey', 'ed25519']).csr), 'weak_key', /key type ed25519 is not accepted; use ECDSA P-256\/P-384 or RSA >= 2048 bits/);
});

test('refuses SHA-1 and RSASSA-PSS signed CSRs', () => {
  refused(() => parseCsr(opensslCsr(['-newkey', 'rsa:2048', '-sha1']).csr), 'bad_csr', /signed with SHA-1/);
  refused(() => parseCsr(opensslCsr(['-newkey', 'rsa:2048', '-sigopt', 'rsa_padding_mode:pss']).csr), 'bad_csr', /RSASSA-PSS/);
});

test('accepts CSRs made by openssl req (EC and RSA, subject set, caller’s SAN)', () => {
  const ec = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/CN=sleep', ['-addext', `subjectAltName=URI:${ID}`]);
  assert.equal(checkCsr(ec.csr, ID).keyType, 'ec-p256');
  const rsa = opensslCsr(['-newkey', 'rsa:2048', '-sha384']);
  assert.equal(checkCsr(rsa.csr, ID).keyType, 'rsa');
});

test('refuses, with 403 identity_mismatch, a CSR that names anyone but the caller', async () => {
  const cases: Array<[x509.JsonGeneralName[], RegExp]> = [
    [[{ type: 'url', value: 'spiffe://cluster.local/ns/foo/sa/admin' }], /uri SAN "spiffe:\/\/cluster.local\/ns\/foo\/sa\/admin"/],
    [[{ type: 'url', value: ID }, { type: 'url', value: 'spiffe://other.domain/ns/foo/sa/httpbin' }], /uri SAN "spiffe:\/\/other.domain/],
    [[{ type: 'url', value: `${ID}/` }], /uri SAN/],
    [[{ type: 'url', value: 'SPIFFE://cluster.local/ns/foo/sa/httpbin' }], /uri SAN/],
    [[{ type: 'dns', value: 'httpbin.foo.svc' }], /dns SAN "httpbin.foo.svc"/],
    [[{ type: 'ip', value: '10.0.0.7' }], /ip SAN "10.0.0.7"/],
    [[{ type: 'ip', value: '2001:db8::1' }], /ip SAN "2001:0db8:0000:0000:0000:0000:0000:0001"/],
    [[{ type: 'email', value: 'root@example.com' }], /email SAN "root@example.com"/],
    [[{ type: 'upn', value: 'admin@corp' }], /otherName SAN "1.3.6.1.4.1.311.20.2.3"/],
    [[{ type: 'dn', value: 'CN=admin' }], /directoryName SAN/],
    [[{ type: 'id', value: '1.2.3.4' }], /registeredID SAN "1.2.3.4"/],
  ];
  for (const [sans, message] of cases) {
    const pem = await makeCsr(p256, sans);
    refused(() => checkCsr(pem, ID), 'identity_mismatch', message);
    refused(() => checkCsr(pem, ID), 'identity_mismatch', /the caller is spiffe:\/\/cluster.local\/ns\/foo\/sa\/httpbin/);
  }
});

test('knownEcSpki recognises exactly the uncompressed P-256 and P-384 layouts', () => {
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(knownEcSpki(generateTestKey('ec-p256').publicKey.export({ format: 'der', type: 'spki' })), { keyType: 'ec-p256', bits: 256 });
    assert.deepEqual(knownEcSpki(generateTestKey('ec-p384').publicKey.export({ format: 'der', type: 'spki' })), { keyType: 'ec-p384', bits: 384 });
  }
  const p256 = generateTestKey('ec-p256').publicKey.export({ format: 'der', type: 'spki' });
  assert.equal(knownEcSpki(generateTestKey('rsa-2048').publicKey.export({ format: 'der', type: 'spki' })), undefined);
  assert.equal(knownEcSpki(p256.subarray(0, p256.length - 1)), undefined, 'truncated');
  assert.equal(knownEcSpki(Buffer.concat([p256, Buffer.from([0])])), undefined, 'trailing byte');
  const hybrid = Buffer.from(p256);
  hybrid[26] = 0x06; // not an uncompressed point
  assert.equal(knownEcSpki(hybrid), undefined);
  const otherCurve = Buffer.from(p256);
  otherCurve[24] ^= 0x01; // last byte of the curve OID
  assert.equal(knownEcSpki(otherCurve), undefined);
  assert.equal(knownEcSpki(Buffer.alloc(0)), undefined);
});

/** A CSR (empty subject, no attributes) over any SubjectPublicKeyInfo, signed ECDSA-SHA256 by `key`. */
function csrWithSpki(spki: Buffer, key: ReturnType<typeof generateTestKey>): string {
  const info = sequence(integer(0), sequence(), spki);
  const signature = sign('sha256', info, key.privateKey);
  return encodePem('CERTIFICATE REQUEST', sequence(info, sequence(oid(OID.ecdsaWithSha256)), bitString(signature)));
}

test('a P-256 key with a compressed point takes the general path and is still accepted', () => {
  const key = generateTestKey('ec-p256');
  const spki = key.publicKey.export({ format: 'der', type: 'spki' });
  const compressedPoint = ECDH.convertKey(spki.subarray(26), 'prime256v1', undefined, undefined, 'compressed') as Buffer;
  const compressed = Buffer.concat([Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'), compressedPoint]);
  assert.equal(knownEcSpki(compressed), undefined);
  const csr = checkCsr(csrWithSpki(compressed, key), ID);
  assert.equal(csr.keyType, 'ec-p256');
  assert.equal(csr.keyBits, 256);
  assert.ok(csr.spki.equals(compressed));
});

test('a point off the curve in the usual P-256 layout is refused as unparsable, not guessed at', () => {
  const key = generateTestKey('ec-p256');
  const spki = Buffer.from(key.publicKey.export({ format: 'der', type: 'spki' }));
  spki[spki.length - 1] ^= 0x01; // y no longer matches x
  assert.deepEqual(knownEcSpki(spki), { keyType: 'ec-p256', bits: 256 });
  refused(() => parseCsr(csrWithSpki(spki, key)), 'bad_csr', /CSR public key cannot be parsed/);
});
