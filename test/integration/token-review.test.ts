// Caller authentication against the real API server: TokenRequest tokens in, callers or 401s out.
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { SignJWT, decodeProtectedHeader } from 'jose';
import { Registry } from 'prom-client';
import { AuthenticationError, TokenAuthenticator } from '../../src/identity/token-review.ts';
import { createNamespace, createServiceAccount, requestToken, testKubeConfig } from '../support/kube.ts';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const registry = new Registry();
const auth = new TokenAuthenticator(kc, { audience: 'cinch-ca', registry, cacheTtlMs: 2000 });
let ns: { name: string; cleanup: () => Promise<void> };

before(async () => {
  ns = await createNamespace(kc, 'authn');
  await createServiceAccount(kc, ns.name, 'web');
});
after(async () => ns.cleanup());

async function rejects(token: string | undefined, code: string, message: RegExp) {
  await assert.rejects(auth.authenticate(token), (err: unknown) => {
    assert.ok(err instanceof AuthenticationError, String(err));
    assert.equal(err.status, 401);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

test('a ServiceAccount token for cinch-ca authenticates as that ServiceAccount', async () => {
  const caller = await auth.authenticate(await requestToken(kc, ns.name, 'web', 'cinch-ca'));
  assert.equal(caller.namespace, ns.name);
  assert.equal(caller.serviceAccount, 'web');
  assert.ok(caller.serviceAccountUid);
});

test('missing, malformed, forged and wrong-audience tokens are 401 with a reason', async () => {
  await rejects(undefined, 'missing_token', /no bearer token/);
  await rejects('not-a-jwt', 'invalid_token', /not a JWT/);
  const good = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  const [h, p] = good.split('.');
  await rejects(`${h}.${p}.${Buffer.from('x'.repeat(256)).toString('base64url')}`, 'invalid_token', /rejected by the API server/);
  await rejects(await requestToken(kc, ns.name, 'web', 'another-audience'), 'invalid_token', /rejected/);
});

test('an expired token signed with the real ServiceAccount key is 401', async (t) => {
  const dir = process.env.CINCH_TEST_CLUSTER_DIR;
  if (!dir) return t.skip('needs the local test cluster (its signing key); KUBECONFIG points elsewhere');
  const signingKey = createPrivateKey(fs.readFileSync(`${dir}/sa.key`));
  const real = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  const sa = await core.readNamespacedServiceAccount({ name: 'web', namespace: ns.name });
  const now = Math.floor(Date.now() / 1000);
  const expired = await new SignJWT({
    'kubernetes.io': { namespace: ns.name, serviceaccount: { name: 'web', uid: sa.metadata!.uid } },
  })
    .setProtectedHeader({ alg: 'RS256', kid: decodeProtectedHeader(real).kid })
    .setIssuer('https://kubernetes.default.svc.cluster.local')
    .setSubject(`system:serviceaccount:${ns.name}:web`)
    .setAudience('cinch-ca')
    .setIssuedAt(now - 7200)
    .setNotBefore(now - 7200)
    .setExpirationTime(now - 3600)
    .sign(signingKey);
  await rejects(expired, 'invalid_token', /expired/);
});

test('a deleted ServiceAccount stops authenticating', async () => {
  await createServiceAccount(kc, ns.name, 'doomed');
  const token = await requestToken(kc, ns.name, 'doomed', 'cinch-ca');
  await core.deleteNamespacedServiceAccount({ name: 'doomed', namespace: ns.name });
  await rejects(token, 'invalid_token', /rejected/);
});

test('a pod-bound token authenticates with its pod, and stops when the pod is deleted', async () => {
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
  const caller = await auth.authenticate(token);
  assert.equal(caller.podName, 'web-0');
  assert.equal(caller.podUid, pod.metadata!.uid);
  await core.deleteNamespacedPod({ name: 'web-0', namespace: ns.name, gracePeriodSeconds: 0 });
  await new Promise((r) => setTimeout(r, 2100)); // past the positive cache
  await assert.rejects(auth.authenticate(token), (err: unknown) => err instanceof AuthenticationError && err.status === 401);
});

test('repeat authentications within the cache window are served from the cache', async () => {
  const token = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  await Promise.all([auth.authenticate(token), auth.authenticate(token), auth.authenticate(token)]);
  await auth.authenticate(token);
  const metrics = await registry.getSingleMetricAsString('cinch_ca_token_review_cache_total');
  assert.match(metrics, /result="hit"\} [1-9]/);
});

test('a refused token retried in a loop costs one TokenReview per short window', async () => {
  const good = await requestToken(kc, ns.name, 'web', 'cinch-ca');
  const [h, p] = good.split('.');
  const forged = `${h}.${p}.${Buffer.from('y'.repeat(256)).toString('base64url')}`;
  for (let i = 0; i < 5; i++) await assert.rejects(auth.authenticate(forged), (err: unknown) => err instanceof AuthenticationError && err.status === 401);
  const metrics = await registry.getSingleMetricAsString('cinch_ca_token_review_cache_total');
  assert.match(metrics, /result="refused_hit"\} [4-9]/);
});
