// runInformer against the real API server: `synced` means the first list really landed. A resource the
// server does not serve (a CRD not installed) or a list it refuses must never count as an empty, synced
// cache: the config stream would push proxies "no AuthorizationPolicies", which allows everything.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { CoreV1Api, CustomObjectsApi, type KubernetesListObject, type KubernetesObject, type V1ConfigMap } from '@kubernetes/client-node';
import { runInformer } from '../../src/kube/informer.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';

const kc = testKubeConfig();
let ns: { name: string; cleanup: () => Promise<void> };
before(async () => (ns = await createNamespace(kc, 'informer')));
after(async () => ns.cleanup());

function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const stream = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)));
  return { logger: createLogger({ stream, level: 'debug' }), lines: () => lines };
}

test('a resource the API server does not serve never counts as synced, and the retries back off', async () => {
  const { logger, lines } = capturingLogger();
  const custom = kc.makeApiClient(CustomObjectsApi);
  const informer = runInformer<KubernetesObject>(
    kc,
    '/apis/example.cinch.dev/v1/gadgets',
    () => custom.listClusterCustomObject({ group: 'example.cinch.dev', version: 'v1', plural: 'gadgets' }) as Promise<KubernetesListObject<KubernetesObject>>,
    {},
    logger,
  );
  try {
    const outcome = await Promise.race([informer.synced.then(() => 'synced'), new Promise((r) => setTimeout(() => r('waiting'), 3500))]);
    assert.equal(outcome, 'waiting', 'a failed list is not a synced cache');
    const retries = lines().filter((l) => l.path === '/apis/example.cinch.dev/v1/gadgets' && typeof l.retryInMs === 'number');
    assert.ok(retries.length >= 2, JSON.stringify(lines()));
    assert.deepEqual(
      retries.slice(0, 2).map((l) => l.retryInMs),
      [1000, 2000],
      'each failed attempt waits twice as long as the one before',
    );
    assert.equal(retries[0].status, 404);
    assert.match(String(retries[0].message), /CRD/);
  } finally {
    await informer.stop();
  }
});

test('a served resource syncs, with what is there', async () => {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'present' }, data: { a: '1' } } });
  const informer = runInformer<V1ConfigMap>(kc, `/api/v1/namespaces/${ns.name}/configmaps`, () => core.listNamespacedConfigMap({ namespace: ns.name }), {}, capturingLogger().logger);
  try {
    await informer.synced;
    assert.ok(informer.get('present', ns.name));
  } finally {
    await informer.stop();
  }
});
