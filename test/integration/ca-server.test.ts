// The CA API over HTTPS against the real API server: tokens from the TokenRequest API, checked by
// the real TokenAuthenticator (TokenReview); CSRs made by `openssl req`; the certificates checked by
// `openssl verify` and `openssl x509 -text`; and one request made by curl.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { PassThrough } from 'node:stream';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { SignJWT, decodeProtectedHeader } from 'jose';
import { createRootAndIntermediate } from '../../src/ca/create.ts';
import { FastLeafSigner } from '../../src/ca/fast-signer.ts';
import { caRouter, type CaRateLimiter } from '../../src/ca/http.ts';
import { loadCaMaterial, type CaMaterial } from '../../src/ca/material.ts';
import { createCaMetrics } from '../../src/ca/metrics.ts';
import { TokenBucketLimiter } from '../../src/ca/rate-limit.ts';
import { createMeshServer, type MeshServer } from '../../src/controlplane/mesh-server.ts';
import { issueServingCertificate } from '../../src/controlplane/serving-cert.ts';
import { TokenAuthenticator } from '../../src/identity/token-review.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createRegistry } from '../../src/telemetry/metrics.ts';
import { createNamespace, createServiceAccount, requestToken, testKubeConfig } from '../support/kube.ts';

const TD = 'cluster.local';
const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-ca-server-'));
let ns: { name: string; cleanup: () => Promise<void> };
let material: CaMaterial;
let rootFile: string;
const servers: MeshServer[] = [];
let port: number;
let deadPort: number;

const idOf = (sa: string) => `spiffe://${TD}/ns/${ns.name}/sa/${sa}`;

/** A CA server on loopback like the control plane's: real TokenReview, real signer, real limiter. */
async function startCaServer(kubeConfig: KubeConfig, limiter: CaRateLimiter): Promise<number> {
  const registry = createRegistry();
  const logger = createLogger({ stream: new PassThrough(), level: 'error' });
  const signer = new FastLeafSigner(material);
  const serving = await issueServingCertificate(material, ['localhost', '127.0.0.1']);
  const mesh = createMeshServer({
    key: serving.keyPem,
    cert: serving.certChainPem,
    trustBundle: material.trustBundle,
    logger,
    registry,
    routers: [
      caRouter({
        signer: () => signer,
        trustBundle: () => material.trustBundle,
        authenticator: new TokenAuthenticator(kubeConfig, { audience: 'cinch-ca', registry, cacheTtlMs: 1000 }),
        trustDomain: TD,
        rateLimiter: limiter,
        metrics: createCaMetrics(registry),
        logger,
      }),
    ],
  });
  servers.push(mesh);
  return mesh.listen(0, '127.0.0.1');
}

before(async () => {
  ns = await createNamespace(kc, 'ca-http');
  for (const sa of ['web', 'other', 'hasty', 'doomed']) await createServiceAccount(kc, ns.name, sa);
  material = loadCaMaterial((await createRootAndIntermediate({ trustDomain: TD })).files);
  rootFile = write('root.pem', material.trustBundle.join(''));
  // Only the hasty ServiceAccount gets a tight bucket; the other tests must not trip over the limit.
  const tight = new TokenBucketLimiter({ burst: 2, refillPerSecond: 0.25 });
  const loose = new TokenBucketLimiter({ burst: 1000, refillPerSecond: 100 });
  port = await startCaServer(kc, { take: (id) => (id.endsWith('/sa/hasty') ? tight : loose).take(id) });
  // The same server whose API server cannot be reached (nothing listens on port 1).
  const dead = new KubeConfig();
  dead.loadFromOptions({
    clusters: [{ name: 'dead', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
    users: [{ name: 'u', token: 'unused' }],
    contexts: [{ name: 'dead', cluster: 'dead', user: 'u' }],
    currentContext: 'dead',
  });
  deadPort = await startCaServer(dead, loose);
});
after(async () => {
  await Promise.all(servers.map((s) => s.close(100)));
  await ns.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

// curl must run asynchronously: the server it talks to lives on this process's event loop.
const curl = async (...args: string[]) => (await promisify(execFile)('curl', args, { encoding: 'utf8', timeout: 20_000 })).stdout;
const openssl = (...args: string[]) => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** A CSR from the real `openssl req`: a fresh EC P-256 key, optional extensions. */
function opensslCsr(name: string, subject: string, addext: string[] = []): string {
  const csrFile = path.join(tmp, `${name}.csr`);
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(tmp, `${name}.key`), '-subj', subject, ...addext.flatMap((e) => ['-addext', e]), '-out', csrFile);
  return fs.readFileSync(csrFile, 'utf8');
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: any;
  text: string;
}

function call(token: string | undefined, body: unknown, toPort = port, method = 'POST', urlPath = '/v1/certificates'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const req = https.request({ host: '127.0.0.1', port: toPort, path: urlPath, method, ca: material.trustBundle.join(''), headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json, text });
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

function assertRefused(reply: Reply, status: number, code: string) {
  assert.equal(reply.status, status, reply.text);
  assert.equal(reply.json?.error?.code, code, reply.text);
  assert.equal(typeof reply.json.error.message, 'string');
}

/** openssl's view of an issued chain: verify against the bundle, and the leaf's text form. */
function opensslCheck(certChain: string[], trustBundle: string[], name: string): string {
  const leaf = write(`${name}-leaf.pem`, certChain[0]);
  const untrusted = write(`${name}-chain.pem`, certChain.slice(1, -1).join(''));
  const bundle = write(`${name}-bundle.pem`, trustBundle.join(''));
  assert.equal(openssl('verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', bundle, '-untrusted', untrusted, leaf).trim(), `${leaf}: OK`);
  return openssl('x509', '-in', leaf, '-noout', '-text');
}

/** Every SAN line in `openssl x509 -text`. */
function sanLines(text: string): string[] {
  const m = /X509v3 Subject Alternative Name:.*\n\s+(.*)\n/.exec(text);
  return m ? m[1].split(', ') : [];
}

test('a CSR from openssl req naming the caller gets a certificate openssl verifies, with exactly that URI SAN', async () => {
  const token = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  const csr = opensslCsr('match', '/CN=web', [`subjectAltName=URI:${idOf('web')}`]);
  const reply = await call(token, { csr });
  assert.equal(reply.status, 200, reply.text);
  const { certChain, trustBundle, notAfter } = reply.json;
  assert.equal(certChain.length, 3);
  assert.deepEqual(trustBundle, [...material.trustBundle]);
  const text = opensslCheck(certChain, trustBundle, 'match');
  assert.deepEqual(sanLines(text), [`URI:${idOf('web')}`]);
  assert.match(text, /Subject: *\n/, 'the CSR’s subject is not copied');
  assert.match(text, /CA:FALSE/);
  assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
  const hours = (new Date(notAfter).getTime() - Date.now()) / 3_600_000;
  assert.ok(hours > 0.98 && hours <= 1, `1 h by default, got ${hours} h`);

  // The bundle endpoint serves the same roots, without a token.
  const bundle = await call(undefined, undefined, port, 'GET', '/v1/trust-bundle');
  assert.equal(bundle.status, 200);
  assert.equal(bundle.text, trustBundle.join(''));
});

test('a CSR without SANs gets the identity of the token’s ServiceAccount', async () => {
  const token = await requestToken(kc, ns.name, 'other', 'cinch-ca');
  const reply = await call(token, { csr: opensslCsr('nosan', '/CN=whoever/O=whatever'), ttlSeconds: 900 });
  assert.equal(reply.status, 200, reply.text);
  assert.deepEqual(sanLines(opensslCheck(reply.json.certChain, reply.json.trustBundle, 'nosan')), [`URI:${idOf('other')}`]);
});

test('curl, as a real client, gets a certificate', async () => {
  const token = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  const body = write('body.json', JSON.stringify({ csr: opensslCsr('curl', '/CN=curl', [`subjectAltName=URI:${idOf('web')}`]) }));
  // The header comes from a file so the token is not in curl's argv (visible in ps).
  const header = write('auth.header', `Authorization: Bearer ${token}\n`);
  fs.chmodSync(header, 0o600);
  const out = await curl('-sS', '--cacert', rootFile, '-H', `@${header}`, '--data', `@${body}`, '-w', '\n%{http_code}', `https://127.0.0.1:${port}/v1/certificates`);
  const status = out.slice(out.lastIndexOf('\n') + 1);
  const json = JSON.parse(out.slice(0, out.lastIndexOf('\n')));
  assert.equal(status, '200', out);
  assert.deepEqual(sanLines(opensslCheck(json.certChain, json.trustBundle, 'curl')), [`URI:${idOf('web')}`]);

  const bundle = await curl('-sS', '--cacert', rootFile, `https://127.0.0.1:${port}/v1/trust-bundle`);
  assert.equal(bundle, material.trustBundle.join(''));
});

test('no token, a garbage token or one for another audience is 401', async () => {
  const csr = opensslCsr('anon', '/CN=x');
  assertRefused(await call(undefined, { csr }), 401, 'missing_token');
  assertRefused(await call('not-a-token', { csr }), 401, 'invalid_token');
  assertRefused(await call(await requestToken(kc, ns.name, 'web', 'vault'), { csr }), 401, 'invalid_token');
  // The default audience of the API server itself is not cinch-ca either.
  assertRefused(await call(await requestToken(kc, ns.name, 'web', 'https://kubernetes.default.svc.cluster.local'), { csr }), 401, 'invalid_token');
});

test('an expired token signed with the cluster’s real ServiceAccount key is 401', async (t) => {
  const dir = process.env.CINCH_TEST_CLUSTER_DIR;
  if (!dir) return t.skip('needs the local test cluster (its signing key); KUBECONFIG points elsewhere');
  const real = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  const sa = await core.readNamespacedServiceAccount({ name: 'web', namespace: ns.name });
  const now = Math.floor(Date.now() / 1000);
  const expired = await new SignJWT({ 'kubernetes.io': { namespace: ns.name, serviceaccount: { name: 'web', uid: sa.metadata!.uid } } })
    .setProtectedHeader({ alg: 'RS256', kid: decodeProtectedHeader(real).kid })
    .setIssuer('https://kubernetes.default.svc.cluster.local')
    .setSubject(`system:serviceaccount:${ns.name}:web`)
    .setAudience('cinch-ca')
    .setIssuedAt(now - 7200)
    .setNotBefore(now - 7200)
    .setExpirationTime(now - 3600)
    .sign(createPrivateKey(fs.readFileSync(path.join(dir, 'sa.key'))));
  const reply = await call(expired, { csr: opensslCsr('expired', '/CN=x') });
  assertRefused(reply, 401, 'invalid_token');
  assert.match(reply.json.error.message, /expired/);
});

test('a deleted ServiceAccount’s token is 401', async () => {
  const token = await requestToken(kc, ns.name, 'doomed', 'cinch-ca');
  await core.deleteNamespacedServiceAccount({ name: 'doomed', namespace: ns.name });
  assertRefused(await call(token, { csr: opensslCsr('doomed', '/CN=x') }), 401, 'invalid_token');
});

test('a pod-bound token works while its pod exists, and is 401 once it is deleted', async () => {
  const pod = await core.createNamespacedPod({
    namespace: ns.name,
    body: { metadata: { name: 'web-0' }, spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'example.invalid/app' }] } },
  });
  const res = await core.createNamespacedServiceAccountToken({
    namespace: ns.name,
    name: 'web',
    body: { spec: { audiences: ['cinch-ca'], expirationSeconds: 600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'web-0', uid: pod.metadata!.uid } } },
  });
  const token = res.status!.token;
  const csr = opensslCsr('bound', '/CN=x');
  assert.equal((await call(token, { csr })).status, 200);
  await core.deleteNamespacedPod({ name: 'web-0', namespace: ns.name, gracePeriodSeconds: 0 });
  await new Promise((r) => setTimeout(r, 1100)); // past the 1 s positive cache of this server
  assertRefused(await call(token, { csr }), 401, 'pod_gone');
});

test('a CSR naming another ServiceAccount, trust domain or any DNS name is 403', async () => {
  const token = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  for (const [name, ext] of [
    ['spoof-sa', `subjectAltName=URI:${idOf('other')}`],
    ['spoof-ns', `subjectAltName=URI:spiffe://${TD}/ns/kube-system/sa/web`],
    ['spoof-td', `subjectAltName=URI:spiffe://evil.example/ns/${ns.name}/sa/web`],
    ['spoof-dns', `subjectAltName=DNS:web.${ns.name}.svc`],
    ['spoof-both', `subjectAltName=URI:${idOf('web')},DNS:kubernetes.default.svc`],
  ]) {
    const reply = await call(token, { csr: opensslCsr(name, '/CN=x', [ext]) });
    assertRefused(reply, 403, 'identity_mismatch');
  }
});

test('over its burst an identity gets 429 with Retry-After', async () => {
  const token = await requestToken(kc, ns.name, 'hasty', 'cinch-ca');
  const csr = opensslCsr('hasty', '/CN=x');
  assert.equal((await call(token, { csr })).status, 200);
  assert.equal((await call(token, { csr })).status, 200);
  const limited = await call(token, { csr });
  assertRefused(limited, 429, 'rate_limited');
  assert.equal(limited.headers['retry-after'], '4', 'one token at 0.25/s');
});

test('when the API server cannot be reached the answer is 503, not 401', async () => {
  const token = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  const reply = await call(token, { csr: opensslCsr('dead', '/CN=x') }, deadPort);
  assertRefused(reply, 503, 'authentication_unavailable');
  assert.ok(Number(reply.headers['retry-after']) > 0);
});
