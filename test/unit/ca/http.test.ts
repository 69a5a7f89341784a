// The CA API over real HTTPS on loopback, on the real mesh server, with the real signer and rate
// limiter. Only the authenticator is a stand-in (token → caller); TokenReview against a real API
// server is covered in test/integration/ca-server.test.ts.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import { after, before, beforeEach, test } from 'node:test';
import { PassThrough } from 'node:stream';
import { createRootAndIntermediate } from '../../../src/ca/create.ts';
import { FastLeafSigner } from '../../../src/ca/fast-signer.ts';
import { caRouter } from '../../../src/ca/http.ts';
import { loadCaMaterial } from '../../../src/ca/material.ts';
import type { CaMaterial } from '../../../src/ca/material.ts';
import { createCaMetrics } from '../../../src/ca/metrics.ts';
import { TokenBucketLimiter } from '../../../src/ca/rate-limit.ts';
import { createMeshServer, type MeshServer } from '../../../src/controlplane/mesh-server.ts';
import { issueServingCertificate } from '../../../src/controlplane/serving-cert.ts';
import { AuthenticationError, type Caller } from '../../../src/identity/token-review.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { createRegistry } from '../../../src/telemetry/metrics.ts';
import { generateTestKey, makeCsr, opensslCsr, opensslVerify } from './support.ts';

const TD = 'cluster.local';
const WEB_ID = `spiffe://${TD}/ns/shop/sa/web`;
// Tokens are JWT-shaped so that a leak into the logs would be caught by the search below, not redacted.
const jwt = (name: string) => `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(name).toString('base64url')}xxxxx.c2lnbmF0dXJlc2lnbmF0dXJl`;
const TOKENS: Record<string, Caller> = {
  [jwt('web')]: { namespace: 'shop', serviceAccount: 'web', podName: 'web-7d9f-abcde', podUid: 'uid-1' },
  [jwt('hasty')]: { namespace: 'shop', serviceAccount: 'hasty' },
  [jwt('weird')]: { namespace: 'Not_A_Namespace', serviceAccount: 'web' },
};
const WEB = jwt('web');
const UNAVAILABLE = jwt('unavailable');

let material: CaMaterial;
let signer: FastLeafSigner | undefined;
let serverCa: string;
let mesh: MeshServer;
let port: number;
let logLines: string[] = [];
let brokenSigner = false;
const registry = createRegistry();
const hastyLimiter = new TokenBucketLimiter({ burst: 3, refillPerSecond: 0.5, now: () => 0 });
const metrics = createCaMetrics(registry);

before(async () => {
  material = loadCaMaterial((await createRootAndIntermediate({ trustDomain: TD })).files);
  signer = new FastLeafSigner(material);
  metrics.observeMaterial(material);
  const serving = await issueServingCertificate(material, ['localhost', '127.0.0.1']);
  serverCa = material.trustBundle.join('');
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
  const logger = createLogger({ stream, level: 'debug' });
  mesh = createMeshServer({
    key: serving.keyPem,
    cert: serving.certChainPem,
    trustBundle: material.trustBundle,
    logger,
    registry,
    routers: [
      caRouter({
        signer: () => (brokenSigner ? ({ sign: () => { throw new TypeError('a bug'); } } as unknown as FastLeafSigner) : signer),
        trustBundle: () => (signer ? material.trustBundle : []),
        trustDomain: TD,
        authenticator: {
          authenticate: async (token) => {
            if (token === undefined) throw new AuthenticationError('missing_token', 'no bearer token');
            if (token === UNAVAILABLE) throw Object.assign(new Error('connect ECONNREFUSED 10.96.0.1:443'), { code: 'ECONNREFUSED' });
            const caller = TOKENS[token];
            if (!caller) throw new AuthenticationError('invalid_token', 'token rejected by the API server: invalid bearer token');
            return caller;
          },
        },
        // Only the hasty identity is limited, on a frozen clock: its burst of 3 never refills during the test.
        rateLimiter: { take: (id) => (id.endsWith('/sa/hasty') ? hastyLimiter.take(id) : { allowed: true, remaining: 1 }) },
        metrics,
        logger,
      }),
    ],
  });
  port = await mesh.listen(0, '127.0.0.1');
});
after(() => mesh.close(100));
beforeEach(() => {
  logLines = [];
  signer ??= new FastLeafSigner(material);
  brokenSigner = false;
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

function call(opts: { method?: string; path?: string; token?: string; headers?: Record<string, string>; body?: string | Buffer }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    const req = https.request(
      { host: '127.0.0.1', port, method: opts.method ?? 'POST', path: opts.path ?? '/v1/certificates', ca: serverCa, servername: 'localhost', headers, agent: false },
      (res) => {
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
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** `token: null` sends no Authorization header. */
const post = (body: unknown, token: string | null = WEB, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  call({ token: token ?? undefined, headers, body: typeof body === 'string' ? body : JSON.stringify(body) });

function assertError(reply: Reply, status: number, code: string, message?: RegExp) {
  assert.equal(reply.status, status, reply.text);
  assert.match(String(reply.headers['content-type']), /^application\/json/);
  assert.equal(reply.json?.error?.code, code, reply.text);
  assert.equal(typeof reply.json.error.message, 'string');
  if (message) assert.match(reply.json.error.message, message);
  assert.doesNotMatch(reply.text, /<html|at .*\.ts:\d+/i, 'no HTML and no stack traces');
}

/** Log lines reach the stream a little after the response: wait for them. */
async function logged(ready: (lines: string[]) => boolean, what = 'log lines'): Promise<void> {
  for (let i = 0; i < 100 && !ready(logLines); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(ready(logLines), `${what}:\n${logLines.join('\n')}`);
}

const ecCsr = (sans: Parameters<typeof makeCsr>[1] = []) => makeCsr(generateTestKey('ec-p256'), sans);

test('a CSR naming the caller gets a chain to the root, the trust bundle and notAfter', async () => {
  const csr = await ecCsr([{ type: 'url', value: WEB_ID }]);
  const started = Date.now();
  const reply = await post({ csr });
  assert.equal(reply.status, 200, reply.text);
  assert.match(String(reply.headers['content-type']), /^application\/json/);
  assert.equal(reply.headers['cache-control'], 'no-store');
  const { certChain, trustBundle, notAfter } = reply.json;
  assert.equal(certChain.length, 3, 'leaf, intermediate, root');
  assert.deepEqual(certChain.slice(1), [...material.chainPems]);
  assert.deepEqual(trustBundle, [...material.trustBundle]);
  const leaf = new X509Certificate(certChain[0]);
  assert.equal(leaf.subjectAltName, `URI:${WEB_ID}`);
  assert.equal(leaf.ca, false);
  assert.match(notAfter, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'RFC 3339, UTC, whole seconds');
  assert.equal(new Date(notAfter).getTime(), new Date(leaf.validTo).getTime());
  const ttl = (new Date(notAfter).getTime() - started) / 1000;
  assert.ok(ttl > 3590 && ttl <= 3601, `default TTL is 1 h, got ${ttl} s`);
  assert.match(opensslVerify(certChain[0], trustBundle.join(''), certChain.slice(1, -1).join('')), /OK/);
});

test('the response text is exactly JSON.stringify of its fields, and follows a change of chain or roots', async () => {
  const csr = await ecCsr();
  const first = await post({ csr });
  assert.equal(first.status, 200, first.text);
  const { certChain, trustBundle, notAfter } = first.json;
  assert.equal(first.text, JSON.stringify({ certChain, trustBundle, notAfter }));
  assert.equal(Number(first.headers['content-length']), Buffer.byteLength(first.text));
  // A new CA (as after a rotation): the cached chain and bundle JSON must not outlive it.
  const saved = material;
  try {
    material = loadCaMaterial((await createRootAndIntermediate({ trustDomain: TD })).files);
    signer = new FastLeafSigner(material);
    const second = await post({ csr });
    assert.equal(second.status, 200, second.text);
    assert.deepEqual(second.json.certChain.slice(1), [...material.chainPems]);
    assert.deepEqual(second.json.trustBundle, [...material.trustBundle]);
    assert.equal(second.text, JSON.stringify({ certChain: second.json.certChain, trustBundle: second.json.trustBundle, notAfter: second.json.notAfter }));
    // Text beyond ASCII (not in any PEM this CA writes, but a roots file may carry it) still arrives as UTF-8.
    material = { ...material, trustBundle: [...material.trustBundle, 'ünïcode ✓ \u{1F512}'] };
    const third = await post({ csr });
    assert.equal(third.status, 200, third.text);
    assert.equal(third.json.trustBundle.at(-1), 'ünïcode ✓ \u{1F512}');
    assert.equal(Number(third.headers['content-length']), Buffer.byteLength(third.text));
    assert.equal(third.text, JSON.stringify({ certChain: third.json.certChain, trustBundle: third.json.trustBundle, notAfter: third.json.notAfter }));
  } finally {
    material = saved;
    signer = new FastLeafSigner(material);
  }
});

test('other spellings of the path (query string, trailing slash) are served by the router the same way', async () => {
  const csr = await ecCsr();
  for (const path of ['/v1/certificates?x=1', '/v1/certificates/']) {
    const reply = await call({ path, token: WEB, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ csr }) });
    assert.equal(reply.status, 200, `${path}: ${reply.text}`);
    assert.equal(new X509Certificate(reply.json.certChain[0]).subjectAltName, `URI:${WEB_ID}`);
    assertError(await call({ path, token: WEB, body: '[1]' }), 400, 'bad_request', /JSON object/);
  }
  assertError(await call({ path: '/v1/certificates?x=1', body: '{}' }), 401, 'missing_token');
});

test('a CSR without SANs gets the token’s identity; ttlSeconds is honoured', async () => {
  const reply = await post({ csr: await ecCsr(), ttlSeconds: 600 });
  assert.equal(reply.status, 200, reply.text);
  const leaf = new X509Certificate(reply.json.certChain[0]);
  assert.equal(leaf.subjectAltName, `URI:${WEB_ID}`);
  const ttl = (new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()) / 1000;
  assert.equal(ttl, 600 + 60, 'ttl plus the 60 s backdating');
});

test('a CSR from openssl req, sent without a content type (as curl --data does), is accepted', async () => {
  const { csr } = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/CN=web', ['-addext', `subjectAltName=URI:${WEB_ID}`]);
  const reply = await post({ csr }, WEB, { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(reply.status, 200, reply.text);
  assert.equal(new X509Certificate(reply.json.certChain[0]).subjectAltName, `URI:${WEB_ID}`);
});

test('a CSR naming any other identity is 403 identity_mismatch', async () => {
  for (const sans of [
    [{ type: 'url', value: `spiffe://${TD}/ns/shop/sa/admin` }],
    [{ type: 'url', value: `spiffe://evil.example/ns/shop/sa/web` }],
    [{ type: 'url', value: WEB_ID }, { type: 'dns', value: 'web.shop.svc' }],
    [{ type: 'ip', value: '10.0.0.1' }],
    [{ type: 'email', value: 'web@shop' }],
  ] as const) {
    assertError(await post({ csr: await ecCsr([...sans]) }), 403, 'identity_mismatch', /may name only the caller's SPIFFE ID/);
  }
});

test('a token whose ServiceAccount has no valid SPIFFE ID is 403', async () => {
  assertError(await post({ csr: await ecCsr() }, jwt('weird')), 403, 'identity_not_allowed');
});

test('no token, a malformed header or a rejected token is 401 with WWW-Authenticate', async () => {
  const csr = await ecCsr();
  const none = await post({ csr }, null);
  assertError(none, 401, 'missing_token');
  assert.equal(none.headers['www-authenticate'], 'Bearer realm="cinch-ca"');
  assertError(await call({ headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }, body: JSON.stringify({ csr }) }), 401, 'missing_token', /Bearer/);
  const bad = await post({ csr }, jwt('stranger'));
  assertError(bad, 401, 'invalid_token', /rejected/);
  assert.equal(bad.headers['www-authenticate'], 'Bearer realm="cinch-ca", error="invalid_token"');
});

test('authentication comes before the body: an unauthenticated bad body is still 401', async () => {
  assertError(await post('{not json', null), 401, 'missing_token');
});

test('when TokenReview cannot be reached the answer is 503 with Retry-After, not 401', async () => {
  const reply = await post({ csr: await ecCsr() }, UNAVAILABLE);
  assertError(reply, 503, 'authentication_unavailable', /retry later/);
  assert.equal(reply.headers['retry-after'], '2');
  assert.doesNotMatch(reply.text, /ECONNREFUSED|10\.96/, 'internal details stay in the log');
});

test('before the CA is loaded: 503 not_ready with Retry-After, and no token review', async () => {
  signer = undefined;
  const reply = await post({ csr: await ecCsr() }, UNAVAILABLE);
  assertError(reply, 503, 'not_ready');
  assert.equal(reply.headers['retry-after'], '5');
  const bundle = await call({ method: 'GET', path: '/v1/trust-bundle' });
  assertError(bundle, 503, 'not_ready');
});

test('bad bodies are 400 with a reason', async () => {
  assertError(await post('{"csr": '), 400, 'bad_request', /not valid JSON/);
  assertError(await post('[1, 2]'), 400, 'bad_request', /JSON object/);
  assertError(await post('"csr"'), 400, 'bad_request', /JSON object/);
  assertError(await post('null'), 400, 'bad_request', /JSON object/);
  assertError(await post(''), 400, 'bad_request', /JSON object/);
  assertError(await post({}), 400, 'bad_request', /"csr" is missing/);
  assertError(await post({ csr: 42 }), 400, 'bad_request', /"csr" is missing/);
  assertError(await post({ csr: 'hello' }), 400, 'bad_csr', /not PEM/);
  assertError(await post({ csr: material.chainPems[0] }), 400, 'bad_csr', /CERTIFICATE REQUEST/);
  const csr = await ecCsr();
  assertError(await post({ csr, ttlSeconds: 'soon' }), 400, 'bad_ttl');
  assertError(await post({ csr, ttlSeconds: 0 }), 400, 'bad_ttl');
  assertError(await post({ csr, ttlSeconds: 1.5 }), 400, 'bad_ttl');
  assertError(await post({ csr, ttlSeconds: 86_401 }), 400, 'bad_ttl', /maximum of 86400/);
  assertError(await post({ csr: await makeCsr(generateTestKey('rsa-1024')) }), 400, 'weak_key');
  assertError(await post({ csr: `${csr}\n${' '.repeat(17 * 1024)}` }), 400, 'csr_too_large');
});

test('a body over 64 KiB is 413 and the connection is not kept', async () => {
  const reply = await post({ csr: 'x'.repeat(70 * 1024) });
  assertError(reply, 413, 'payload_too_large', /65536 bytes/);
  assert.equal(reply.headers.connection, 'close');
});

test('a chunked body that grows past the limit is 413 too; compressed bodies are 415', async () => {
  const reply = await new Promise<Reply>((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/certificates', ca: serverCa, servername: 'localhost', agent: false, headers: { authorization: `Bearer ${WEB}` } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    // No content-length: chunked, so the size is only known while reading.
    for (let i = 0; i < 20; i++) req.write(`{"csr": "${'x'.repeat(8 * 1024)}`);
    req.end();
  });
  assertError(reply, 413, 'payload_too_large');
  assertError(await post('{}', WEB, { 'content-type': 'application/json', 'content-encoding': 'gzip' }), 415, 'unsupported_media_type', /gzip/);
});

test('an identity over its burst is 429 with Retry-After; others are unaffected', async () => {
  const hasty = jwt('hasty');
  const csr = await ecCsr();
  for (let i = 0; i < 3; i++) assert.equal((await post({ csr }, hasty)).status, 200);
  const limited = await post({ csr }, hasty);
  assertError(limited, 429, 'rate_limited', /spiffe:\/\/cluster.local\/ns\/shop\/sa\/hasty/);
  assert.equal(limited.headers['retry-after'], '2', '1 token at 0.5/s');
  assert.equal((await post({ csr }, WEB)).status, 200);
});

test('GET /v1/trust-bundle serves the PEM roots without authentication', async () => {
  const reply = await call({ method: 'GET', path: '/v1/trust-bundle' });
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers['content-type']), /^application\/x-pem-file/);
  assert.equal(reply.text, material.trustBundle.join(''));
  const head = await call({ method: 'HEAD', path: '/v1/trust-bundle' });
  assert.equal(head.status, 200);
  assert.equal(head.text, '');
});

test('unknown paths are JSON 404s and wrong methods JSON 405s with Allow', async () => {
  assertError(await call({ method: 'GET', path: '/v1/nothing' }), 404, 'not_found');
  assertError(await call({ method: 'GET', path: '/' }), 404, 'not_found');
  const get = await call({ method: 'GET', path: '/v1/certificates' });
  assertError(get, 405, 'method_not_allowed');
  assert.equal(get.headers.allow, 'POST');
  const put = await call({ method: 'PUT', path: '/v1/trust-bundle' });
  assertError(put, 405, 'method_not_allowed');
  assert.equal(put.headers.allow, 'GET, HEAD');
});

test('an unexpected failure is a JSON 500 without details', async () => {
  brokenSigner = true;
  const reply = await post({ csr: await ecCsr() });
  assertError(reply, 500, 'internal');
  assert.doesNotMatch(reply.text, /a bug|TypeError/);
  await logged((lines) => lines.some((l) => /"level":"error"/.test(l) && /a bug/.test(l)), 'the details are logged');
});

test('issuances and refusals are logged with who asked and why; never the token or the CSR', async () => {
  const csr = await ecCsr([{ type: 'url', value: WEB_ID }]);
  const ok = await post({ csr });
  await post({ csr: await ecCsr([{ type: 'dns', value: 'evil.example' }]) });
  await post({ csr }, jwt('stranger'));
  await logged((lines) => lines.length >= 3);
  const records: any[] = logLines.map((l): any => JSON.parse(l));
  const issued = records.find((r) => r.message === 'certificate issued');
  assert.ok(issued, logLines.join('\n'));
  const serial = new X509Certificate(ok.json.certChain[0]).serialNumber.toLowerCase();
  assert.deepEqual(
    { ns: issued.namespace, sa: issued.serviceAccount, pod: issued.pod, id: issued.identity, serial: issued.serial },
    { ns: 'shop', sa: 'web', pod: 'web-7d9f-abcde', id: WEB_ID, serial },
  );
  const refusals = records.filter((r) => r.message === 'certificate request refused');
  assert.deepEqual(
    refusals.map((r): unknown[] => [r.reason, r.identity, r.namespace]),
    [
      ['identity_mismatch', WEB_ID, 'shop'],
      ['invalid_token', undefined, undefined],
    ],
  );
  assert.match(refusals[0].detail, /dns SAN "evil.example"/);
  const all = logLines.join('\n');
  for (const token of [WEB, jwt('stranger')]) assert.ok(!all.includes(token.split('.')[1]), 'no token in the logs');
  assert.ok(!all.includes('CERTIFICATE REQUEST') && !all.includes(csr.split('\n')[1]), 'no CSR in the logs');
});

test('metrics count issued and refused certificates by reason, signing time, and CA expiry', async () => {
  await post({ csr: await ecCsr() });
  await post({ csr: 'nope' });
  const text = await registry.metrics();
  assert.match(text, /^cinch_ca_certificates_issued_total(\{[^}]*\})? [1-9]\d*$/m);
  assert.match(text, /^cinch_ca_certificate_requests_refused_total\{[^}]*reason="bad_csr"[^}]*\} [1-9]/m);
  assert.match(text, /^cinch_ca_certificate_requests_refused_total\{[^}]*reason="rate_limited"[^}]*\} 1$/m);
  assert.match(text, /^cinch_ca_signing_duration_seconds_count(\{[^}]*\})? [1-9]/m);
  assert.match(text, /^cinch_ca_signing_duration_seconds_bucket\{le="0\.0001"/m);
  const gauge = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
  assert.equal(gauge('cinch_ca_root_expiry_timestamp_seconds'), material.rootNotAfter.getTime() / 1000);
  assert.equal(gauge('cinch_ca_signing_cert_expiry_timestamp_seconds'), material.signingCertNotAfter.getTime() / 1000);
  assert.match(text, /^cinch_mesh_server_requests_total\{[^}]*route="\/v1\/certificates"[^}]*code="200"[^}]*\} [1-9]/m);
  assert.match(text, /^cinch_mesh_server_requests_total\{[^}]*route="unmatched"[^}]*code="404"/m);
});
