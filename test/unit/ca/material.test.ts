// CA material in the cacerts layout: the good shapes load, and each inconsistency is refused
// with the check that failed and the file it concerns.
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { test } from 'node:test';
import { CaMaterialError } from '../../../src/ca/errors.ts';
import type { MaterialCheck } from '../../../src/ca/errors.ts';
import { createCaCertificate, createRootAndIntermediate, createRootCa, generateCaKey } from '../../../src/ca/create.ts';
import { fromSecretData, loadCaMaterial, toSecretData } from '../../../src/ca/material.ts';
import type { CaFiles } from '../../../src/ca/material.ts';
import { x509 } from '../../../src/ca/x509.ts';

const DAY = 86_400_000;
const td = 'cluster.local';
const rootOnly = (await createRootCa({ trustDomain: td })).files;
const withIntermediate = await createRootAndIntermediate({ trustDomain: td });
const otherRoot = (await createRootCa({ trustDomain: 'other.domain' })).files;

function refused(data: Record<string, string | undefined>, check: MaterialCheck, message: RegExp, now?: Date): void {
  assert.throws(
    () => loadCaMaterial(data, now),
    (err: unknown) => {
      assert.ok(err instanceof CaMaterialError, `expected CaMaterialError, got ${String(err)}`);
      assert.equal(err.check, check, err.message);
      assert.match(err.message, /^CA material: /);
      assert.match(err.message, message);
      return true;
    },
  );
}

const pem = (cert: x509.X509Certificate): string => `${cert.toString('pem')}\n`;
const keyPem = (key: { export(o: { format: 'pem'; type: 'pkcs8' }): string | Buffer }): string => String(key.export({ format: 'pem', type: 'pkcs8' }));

test('a self-signed root loads; it signs, is the bundle and the whole chain', () => {
  const material = loadCaMaterial(rootOnly);
  assert.equal(material.keyType, 'ec-p256');
  assert.equal(material.chainPems.length, 1);
  assert.deepEqual(material.trustBundle, material.chainPems);
  assert.match(material.signingCert.subject, /O=cluster.local/);
  assert.ok(material.signingCert.ca);
  // 10 years, backdated a minute.
  const lifetime = material.rootNotAfter.getTime() - material.signingCert.validFromDate.getTime();
  assert.ok(Math.abs(lifetime - 3650 * DAY - 60_000) < 2000, String(lifetime));
  assert.equal(material.subjectKeyId.length, 20);
});

test('root + intermediate loads: chain is intermediate then root, validity is the intersection', () => {
  const material = loadCaMaterial(withIntermediate.files);
  assert.equal(material.chain.length, 2);
  assert.match(material.signingCert.subject, /CN=Cinch Intermediate CA/);
  assert.equal(material.validity.notAfter.getTime(), material.signingCertNotAfter.getTime());
  assert.ok(material.rootNotAfter > material.signingCertNotAfter);
  assert.ok(withIntermediate.rootKeyPem?.includes('PRIVATE KEY'));
});

test('Istio layouts load too: empty cert-chain for a root, a chain without the root, several roots', () => {
  assert.equal(loadCaMaterial({ ...rootOnly, 'cert-chain.pem': '' }).chain.length, 1);
  const files = withIntermediate.files;
  const withoutRoot = loadCaMaterial({ ...files, 'cert-chain.pem': files['ca-cert.pem'] });
  assert.equal(withoutRoot.chain.length, 2, 'the root is found in root-cert.pem and appended');
  const rotating = loadCaMaterial({ ...files, 'root-cert.pem': otherRoot['root-cert.pem'] + files['root-cert.pem'] });
  assert.equal(rotating.trustBundle.length, 2);
  assert.equal(rotating.chainPems[1], files['root-cert.pem']);
});

test('P-384 and RSA material load with their key types', async () => {
  assert.equal(loadCaMaterial((await createRootCa({ trustDomain: td, keyType: 'ec-p384' })).files).keyType, 'ec-p384');
  assert.equal(loadCaMaterial((await createRootAndIntermediate({ trustDomain: td, keyType: 'rsa' })).files).keyType, 'rsa');
});

test('Secret data round-trips and a partial Secret is incomplete', () => {
  const data = toSecretData(rootOnly);
  assert.deepEqual(Object.keys(data).sort(), ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
  assert.deepEqual(fromSecretData(data), rootOnly);
  assert.throws(() => fromSecretData({}), /incomplete CA bundle: missing ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem/);
});

test('incomplete: a missing or empty file', () => {
  const { 'root-cert.pem': _root, ...noRoot } = rootOnly;
  refused(noRoot, 'incomplete', /missing root-cert.pem/);
  const { 'cert-chain.pem': _chain, ...noChain } = rootOnly;
  refused(noChain, 'incomplete', /missing cert-chain.pem/);
  refused({ ...rootOnly, 'ca-key.pem': '  \n' }, 'incomplete', /ca-key.pem is empty/);
});

test('unparsable: each file, with what is wrong', () => {
  refused({ ...rootOnly, 'ca-cert.pem': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }, 'unparsable', /ca-cert.pem is not a valid certificate/);
  refused({ ...rootOnly, 'ca-cert.pem': 'hello' }, 'unparsable', /ca-cert.pem must hold exactly one certificate, found 0/);
  refused({ ...rootOnly, 'ca-cert.pem': rootOnly['ca-cert.pem'] + otherRoot['ca-cert.pem'] }, 'unparsable', /exactly one certificate, found 2/);
  refused({ ...rootOnly, 'root-cert.pem': rootOnly['ca-key.pem'] }, 'unparsable', /root-cert.pem is a "PRIVATE KEY" block, not a certificate/);
  refused({ ...rootOnly, 'ca-key.pem': rootOnly['ca-cert.pem'] }, 'unparsable', /ca-key.pem must hold exactly one private key, found CERTIFICATE/);
  refused({ ...rootOnly, 'ca-key.pem': '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n' }, 'unparsable', /encrypted/);
  refused({ ...rootOnly, 'ca-key.pem': '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' }, 'unparsable', /ca-key.pem is not a valid private key/);
});

test('unsupported_key: a P-521 CA key', async () => {
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-521' }, true, ['sign', 'verify']));
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=p521',
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-512' },
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const key = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const files = { 'ca-cert.pem': pem(cert), 'ca-key.pem': `-----BEGIN PRIVATE KEY-----\n${key}\n-----END PRIVATE KEY-----\n`, 'root-cert.pem': pem(cert), 'cert-chain.pem': '' };
  refused(files, 'unsupported_key', /ca-key.pem is a EC secp521r1 key; the CA signs with ECDSA P-256, P-384 or RSA >= 2048 only/);
});

test('key_mismatch: ca-key.pem is not the key of ca-cert.pem', () => {
  refused({ ...rootOnly, 'ca-key.pem': otherRoot['ca-key.pem'] }, 'key_mismatch', /ca-key.pem does not match the certificate in ca-cert.pem \(O=cluster.local, CN=Cinch Root CA\)/);
});

test('not_ca: a leaf as signing cert, a KeyUsage without keyCertSign, a non-CA root', async () => {
  const keys = generateCaKey();
  const signingKey = keys.privateKey.toCryptoKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  const build = async (extensions: x509.Extension[]): Promise<x509.X509Certificate> =>
    x509.X509CertificateGenerator.create({
      subject: 'CN=not a ca',
      issuer: 'CN=not a ca',
      publicKey: new x509.PublicKey(keys.publicKey.export({ format: 'der', type: 'spki' })),
      signingKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions,
    });
  const leaf = await build([new x509.BasicConstraintsExtension(false, undefined, true)]);
  const files = (cert: x509.X509Certificate): CaFiles => ({ 'ca-cert.pem': pem(cert), 'ca-key.pem': keyPem(keys.privateKey), 'root-cert.pem': pem(cert), 'cert-chain.pem': '' });
  refused(files(leaf), 'not_ca', /ca-cert.pem \(CN=not a ca\) is not a CA certificate \(BasicConstraints CA:TRUE is missing\)/);
  refused(files(await build([])), 'not_ca', /not a CA certificate/);
  const noCertSign = await build([new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)]);
  refused(files(noCertSign), 'not_ca', /has a KeyUsage without keyCertSign/);
  refused({ ...rootOnly, 'root-cert.pem': rootOnly['root-cert.pem'] + pem(leaf) }, 'not_ca', /root-cert.pem #2 \(CN=not a ca\) is not a CA/);
});

test('expired and not yet valid, for the signing cert and for the root above it', async () => {
  const old = (await createRootCa({ trustDomain: td, now: new Date(Date.now() - 3651 * DAY) })).files;
  refused(old, 'expired', /ca-cert.pem \(O=cluster.local, CN=Cinch Root CA\) expired at \d{4}-/);
  const future = (await createRootCa({ trustDomain: td, now: new Date(Date.now() + DAY) })).files;
  refused(future, 'not_yet_valid', /ca-cert.pem \(O=cluster.local, CN=Cinch Root CA\) is not valid until/);
  // An intermediate that outlives nothing: evaluated a day after it expired.
  const short = await createRootAndIntermediate({ trustDomain: td, intermediateDays: 1 });
  refused(short.files, 'expired', /ca-cert.pem \(O=cluster.local, CN=Cinch Intermediate CA\) expired/, new Date(Date.now() + 2 * DAY));
  // A root that expires before the intermediate (made by hand): the root is reported.
  const rootKeys = generateCaKey();
  const now = Date.now();
  const root = await createCaCertificate({ subject: 'CN=short root', publicKey: rootKeys.publicKey, signingKey: rootKeys.privateKey, notBefore: new Date(now - DAY), notAfter: new Date(now + DAY) });
  const interKeys = generateCaKey();
  const inter = await createCaCertificate({ subject: 'CN=long inter', publicKey: interKeys.publicKey, issuer: { certificate: root, key: rootKeys.privateKey }, notBefore: new Date(now - DAY), notAfter: new Date(now + 30 * DAY) });
  const files = { 'ca-cert.pem': pem(inter), 'ca-key.pem': keyPem(interKeys.privateKey), 'root-cert.pem': pem(root), 'cert-chain.pem': pem(inter) + pem(root) };
  assert.equal(loadCaMaterial(files).validity.notAfter.getTime(), root.notAfter.getTime(), 'leaves are clamped to the root too');
  refused(files, 'expired', /cert-chain.pem #2 \(CN=short root\) expired/, new Date(now + 2 * DAY));
});

test('chain_broken: wrong start, a link not signed by the next, a path length exceeded', async () => {
  const files = withIntermediate.files;
  refused({ ...files, 'cert-chain.pem': otherRoot['ca-cert.pem'] }, 'chain_broken', /cert-chain.pem must start with the certificate in ca-cert.pem, but starts with O=other.domain/);
  refused(
    { ...files, 'cert-chain.pem': files['ca-cert.pem'] + otherRoot['ca-cert.pem'] },
    'chain_broken',
    /ca-cert.pem \(O=cluster.local, CN=Cinch Intermediate CA\) is not signed by the next one, cert-chain.pem #2 \(O=other.domain, CN=Cinch Root CA\)/,
  );
  const rootKeys = generateCaKey();
  const now = Date.now();
  const root = await createCaCertificate({ subject: 'CN=strict root', publicKey: rootKeys.publicKey, signingKey: rootKeys.privateKey, notBefore: new Date(now - DAY), notAfter: new Date(now + DAY), pathLength: 0 });
  const interKeys = generateCaKey();
  const inter = await createCaCertificate({ subject: 'CN=inter', publicKey: interKeys.publicKey, issuer: { certificate: root, key: rootKeys.privateKey }, notBefore: new Date(now - DAY), notAfter: new Date(now + DAY) });
  refused(
    { 'ca-cert.pem': pem(inter), 'ca-key.pem': keyPem(interKeys.privateKey), 'root-cert.pem': pem(root), 'cert-chain.pem': pem(inter) + pem(root) },
    'chain_broken',
    /cert-chain.pem #2 \(CN=strict root\) allows 0 CA certificate\(s\) below it, but the chain has 1/,
  );
});

test('untrusted_root: the chain does not lead to a root in root-cert.pem', () => {
  refused({ ...rootOnly, 'root-cert.pem': otherRoot['root-cert.pem'] }, 'untrusted_root', /the chain ends at the root O=cluster.local, CN=Cinch Root CA, which is not in root-cert.pem/);
  const files = withIntermediate.files;
  refused({ ...files, 'cert-chain.pem': files['ca-cert.pem'], 'root-cert.pem': otherRoot['root-cert.pem'] }, 'untrusted_root', /no root in root-cert.pem issued ca-cert.pem \(O=cluster.local, CN=Cinch Intermediate CA\)/);
});
