// The proxy's hand-built CSR must be what the CA core and openssl accept.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { checkCsr } from '../../../src/ca/csr.ts';
import { buildSpiffeCsr } from '../../../src/ca/csr-build.ts';

const id = 'spiffe://cluster.local/ns/shop/sa/web';

test('the CA core accepts it for its own identity and refuses it for another', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = buildSpiffeCsr(privateKey, publicKey, id);
  const checked = checkCsr(pem, id);
  assert.equal(checked.keyType, 'ec-p256');
  assert.deepEqual(checked.sans.map((s) => [s.type, s.value]), [['uri', id]]);
  assert.throws(() => checkCsr(pem, 'spiffe://cluster.local/ns/shop/sa/other'), /may name only the caller's SPIFFE ID/);
});

test('openssl verifies its signature and reads the URI SAN', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const out = execFileSync('openssl', ['req', '-verify', '-noout', '-text'], { input: buildSpiffeCsr(privateKey, publicKey, id), encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  assert.match(out, /URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/);
  assert.match(out, /X509v3 Subject Alternative Name: critical/);
});

test('only P-256 keys', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  assert.throws(() => buildSpiffeCsr(privateKey, publicKey, id), /P-256/);
});
