// TokenAuthenticator against a stand-in API server: the order of checks and the positive cache.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { AuthenticationError, TokenAuthenticator } from '../../../src/identity/token-review.ts';

let server: http.Server;
const reviewed: string[] = [];
let kc: KubeConfig;

before(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const token = (JSON.parse(body) as { spec: { token: string } }).spec.token;
      reviewed.push(token);
      const ok = token.startsWith('good');
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          status: ok
            ? { authenticated: true, audiences: ['cinch-ca'], user: { username: 'system:serviceaccount:ns1:web', uid: 'u1', groups: ['system:serviceaccounts'] } }
            : { authenticated: false, error: 'invalid bearer token' },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'x' }],
    contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
    currentContext: 'c',
  });
});
after(() => server.close());

async function refused(auth: TokenAuthenticator, token: string | undefined, code: string, message: RegExp) {
  await assert.rejects(auth.authenticate(token), (err: unknown) => {
    assert.ok(err instanceof AuthenticationError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  });
}

test('a token is reviewed once per cache window; tokens that are not JWTs never reach the API server', async () => {
  const registry = new Registry();
  const auth = new TokenAuthenticator(kc, { audience: 'cinch-ca', registry });
  reviewed.length = 0;
  const good = 'good.payload.signature';
  for (let i = 0; i < 3; i++) assert.deepEqual(await auth.authenticate(good), { namespace: 'ns1', serviceAccount: 'web', serviceAccountUid: 'u1', podName: undefined, podUid: undefined });
  assert.deepEqual(reviewed, [good]);
  // Whatever was cached before, a token of the wrong shape is refused without a review.
  for (const bad of ['good', 'good.payload', 'good.payload.sig.extra', 'good.pay load.sig', 'good.payload.sig=', `${good}\n`, 'good..sig']) {
    await refused(auth, bad, 'invalid_token', /not a JWT/);
  }
  await refused(auth, undefined, 'missing_token', /no bearer token/);
  await refused(auth, 'x'.repeat(16 * 1024 + 1), 'invalid_token', /too large/);
  assert.deepEqual(reviewed, [good]);
  // A rejected JWT is reviewed, then refused from the short negative cache.
  await refused(auth, 'bad.payload.signature', 'invalid_token', /rejected by the API server/);
  await refused(auth, 'bad.payload.signature', 'invalid_token', /rejected by the API server/);
  assert.deepEqual(reviewed, [good, 'bad.payload.signature']);
  const cache = (await registry.getSingleMetric('cinch_ca_token_review_cache_total')!.get()).values;
  const count = (result: string) => cache.find((v) => v.labels.result === result)?.value ?? 0;
  assert.deepEqual([count('hit'), count('miss'), count('refused_hit')], [2, 2, 1]);
});
