// `cinch ca init` and `cinch ca inspect` as users run them: a child process on the pinned Node.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readCaDir } from '../../../src/ca/files.ts';
import { parseCsr } from '../../../src/ca/csr.ts';
import { FastLeafSigner } from '../../../src/ca/fast-signer.ts';
import { loadCaMaterial } from '../../../src/ca/material.ts';
import { generateTestKey, makeCsr, withTempDir } from './support.ts';

const root = path.resolve(import.meta.dirname, '../../..');
const cinch = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/cinch.js'), ...args], { encoding: 'utf8' });
const mode = (file: string): number => statSync(file).mode & 0o777;

test('ca init writes the cacerts layout (keys 0600) that the CA loads, and refuses to overwrite', () => {
  withTempDir((tmp) => {
    const dir = path.join(tmp, 'certs');
    const res = cinch('ca', 'init', '--dir', dir, '--trust-domain', 'example.org');
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /wrote .*ca-key.pem \(mode 0600\)/);
    assert.doesNotMatch(res.stdout + res.stderr, /PRIVATE KEY/);
    assert.equal(mode(path.join(dir, 'ca-key.pem')), 0o600);
    assert.equal(mode(path.join(dir, 'ca-cert.pem')), 0o644);
    assert.ok(!existsSync(path.join(dir, 'root-key.pem')));
    const material = loadCaMaterial(readCaDir(dir));
    assert.match(material.signingCert.subject, /O=example.org/);
    assert.equal(material.chain.length, 1);

    const before = readFileSync(path.join(dir, 'ca-key.pem'), 'utf8');
    const again = cinch('ca', 'init', '--dir', dir);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /cinch ca init: refusing to overwrite .*ca-cert.pem.*\(use --force to replace them\)/);
    assert.equal(readFileSync(path.join(dir, 'ca-key.pem'), 'utf8'), before);
  });
});

test('ca init --intermediate keeps the root key apart; --force replaces and drops a stale root key', () => {
  withTempDir((dir) => {
    assert.equal(cinch('ca', 'init', '--dir', dir, '--intermediate', '--intermediate-days', '30').status, 0);
    assert.equal(mode(path.join(dir, 'root-key.pem')), 0o600);
    const material = loadCaMaterial(readCaDir(dir));
    assert.equal(material.chain.length, 2);
    assert.ok(material.signingCertNotAfter.getTime() - Date.now() < 31 * 86_400_000);

    writeFileSync(path.join(dir, 'ca-key.pem'), 'stale', { mode: 0o644 });
    const forced = cinch('ca', 'init', '--dir', dir, '--force');
    assert.equal(forced.status, 0, forced.stderr);
    assert.equal(mode(path.join(dir, 'ca-key.pem')), 0o600);
    assert.ok(!existsSync(path.join(dir, 'root-key.pem')), 'a root-only CA has no separate root key');
    assert.equal(loadCaMaterial(readCaDir(dir)).chain.length, 1);
  });
});

test('ca init refuses a bad trust domain', () => {
  const res = cinch('ca', 'init', '--dir', '/nonexistent/never-written', '--trust-domain', 'Bad_Domain');
  assert.equal(res.status, 1);
  assert.match(res.stderr, /--trust-domain: trust domain "Bad_Domain" may contain only lowercase letters/);
});

test('ca inspect shows a leaf: empty subject, SPIFFE SAN, key, validity, not a CA; -o json too', async () => {
  const csr = parseCsr(await makeCsr(generateTestKey('ec-p384')));
  await withTempDir(async (dir) => {
    assert.equal(cinch('ca', 'init', '--dir', dir, '--intermediate').status, 0);
    const material = loadCaMaterial(readCaDir(dir));
    const signed = new FastLeafSigner(material).sign({ csr, spiffeId: 'spiffe://cluster.local/ns/foo/sa/bar' });
    const leafFile = path.join(dir, 'leaf.pem');
    writeFileSync(leafFile, signed.certChain.join(''));

    const res = cinch('ca', 'inspect', leafFile);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /: 3 certificates/);
    assert.match(res.stdout, /#1\n {2}subject: {5}\(empty\)\n {2}issuer: {6}O=cluster.local, CN=Cinch Intermediate CA\n {2}SANs: {8}URI:spiffe:\/\/cluster.local\/ns\/foo\/sa\/bar\n {2}key: {9}EC P-384/);
    assert.match(res.stdout, /validity: {4}\S+ → \S+ \(0 day\(s\) left\)\n {2}CA: {10}no\n {2}key usage: {3}digitalSignature\n {2}ext. usage: {2}serverAuth, clientAuth/);
    assert.match(res.stdout, /CA: {10}yes, path length 0/);
    assert.match(res.stdout, /chain: ok: each certificate is issued by the next, ending at the self-signed root O=cluster.local, CN=Cinch Root CA/);

    const json = cinch('ca', 'inspect', leafFile, '-o', 'json');
    assert.equal(json.status, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { certificates: Array<{ sans: string[]; isCa: boolean }>; chain: { ok: boolean } };
    assert.deepEqual(parsed.certificates[0].sans, ['URI:spiffe://cluster.local/ns/foo/sa/bar']);
    assert.equal(parsed.chain.ok, true);

    // Leaf followed by the root, skipping the intermediate: the chain check names the broken link.
    writeFileSync(leafFile, signed.certChain[0] + signed.certChain[2]);
    const broken = cinch('ca', 'inspect', leafFile);
    assert.equal(broken.status, 1);
    assert.match(broken.stdout, /chain: broken: #1 \(empty subject\) is not issued by #2 \(O=cluster.local, CN=Cinch Root CA\)/);
    assert.match(broken.stderr, /chain check failed/);
  });
});

test('ca inspect never prints keys and explains what it could not read', () => {
  withTempDir((dir) => {
    assert.equal(cinch('ca', 'init', '--dir', dir).status, 0);
    const keyOnly = cinch('ca', 'inspect', path.join(dir, 'ca-key.pem'));
    assert.equal(keyOnly.status, 1);
    assert.match(keyOnly.stderr, /holds only PRIVATE KEY blocks \(inspect shows certificates, never keys\)/);
    const combined = path.join(dir, 'combined.pem');
    writeFileSync(combined, readFileSync(path.join(dir, 'ca-key.pem'), 'utf8') + readFileSync(path.join(dir, 'ca-cert.pem'), 'utf8'));
    const res = cinch('ca', 'inspect', combined);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /skipped PRIVATE KEY block\(s\): keys are never shown/);
    assert.doesNotMatch(res.stdout, /BEGIN/);
    assert.match(cinch('ca', 'inspect', path.join(dir, 'missing.pem')).stderr, /cannot read .*missing.pem: ENOENT/);
    writeFileSync(combined, 'not pem');
    assert.match(cinch('ca', 'inspect', combined).stderr, /holds no PEM certificate/);
  });
});
