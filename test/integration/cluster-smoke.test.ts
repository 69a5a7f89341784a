// Proves the harness gives a real API server that issues and reviews ServiceAccount tokens,
// which is what Cinch's CA authenticates callers with.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { VersionApi } from '@kubernetes/client-node';
import { createNamespace, createServiceAccount, requestToken, reviewToken, testKubeConfig } from '../support/kube.ts';

const kc = testKubeConfig();
let ns: { name: string; cleanup: () => Promise<void> };

before(async () => {
  ns = await createNamespace(kc, 'smoke');
  await createServiceAccount(kc, ns.name, 'app');
});
after(async () => ns.cleanup());

test('the API server answers with its version', async () => {
  const v = await kc.makeApiClient(VersionApi).getCode();
  assert.match(v.gitVersion, /^v1\.\d+/);
});

test('a TokenRequest token with audience cinch-ca passes TokenReview for that audience', async () => {
  const token = await requestToken(kc, ns.name, 'app', 'cinch-ca');
  const status = await reviewToken(kc, token, ['cinch-ca']);
  assert.equal(status.authenticated, true, status.error);
  assert.equal(status.user?.username, `system:serviceaccount:${ns.name}:app`);
  assert.ok(status.user?.groups?.includes('system:serviceaccounts'));
  assert.deepEqual(status.audiences, ['cinch-ca']);
});

test('the same token is refused for another audience', async () => {
  const token = await requestToken(kc, ns.name, 'app', 'cinch-ca');
  const status = await reviewToken(kc, token, ['someone-else']);
  assert.notEqual(status.authenticated, true);
  assert.ok(status.error, "TokenReview says why");
});

test('a forged token is refused', async () => {
  const token = await requestToken(kc, ns.name, 'app', 'cinch-ca');
  const [h, p] = token.split('.');
  const status = await reviewToken(kc, `${h}.${p}.${Buffer.from('not a signature').toString('base64url')}`, ['cinch-ca']);
  assert.notEqual(status.authenticated, true);
  assert.ok(status.error, "TokenReview says why");
});
