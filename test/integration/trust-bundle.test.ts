// Trust-bundle distribution against the real API server: every namespace but kube-public and
// kube-node-lease, new namespaces within a couple of seconds, repair after kubectl edits and deletes,
// root changes, the exact distribution check, and handover between controller instances.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { createRootCa } from '../../src/ca/create.ts';
import {
  TRUST_BUNDLE_CONFIGMAP,
  TRUST_BUNDLE_KEY,
  TRUST_BUNDLE_LABELS,
  TrustBundleController,
  checkTrustBundleDistribution,
  trustBundlePem,
} from '../../src/controlplane/trust-bundle.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const logger = createLogger({ stream: new PassThrough(), level: 'error' });
const cleanups: Array<() => Promise<void>> = [];
let rootA: string;
let rootB: string;
let controller: TrustBundleController;

before(async () => {
  rootA = (await createRootCa({ trustDomain: 'cluster.local' })).files['root-cert.pem'];
  rootB = (await createRootCa({ trustDomain: 'cluster.local' })).files['root-cert.pem'];
  controller = new TrustBundleController(kc, { logger });
  await controller.start([rootA]);
});
after(async () => {
  await controller.stop();
  for (const cleanup of cleanups) await cleanup();
});

async function namespace(prefix: string): Promise<string> {
  const ns = await createNamespace(kc, prefix);
  cleanups.push(ns.cleanup);
  return ns.name;
}

async function read(ns: string): Promise<V1ConfigMap | undefined> {
  try {
    return await core.readNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace: ns });
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, ms = 5000): Promise<{ value: T; tookMs: number }> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value) return { value, tookMs: Date.now() - start };
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function kubectl(...args: string[]): string {
  return execFileSync('kubectl', ['--kubeconfig', process.env.KUBECONFIG!, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const holds = (roots: string[]) => async (ns: string) => {
  const cm = await read(ns);
  return cm?.data?.[TRUST_BUNDLE_KEY] === trustBundlePem(roots) && Object.entries(TRUST_BUNDLE_LABELS).every(([k, v]) => cm.metadata?.labels?.[k] === v) ? cm : undefined;
};

test('every namespace holds the bundle, with our labels; kube-public and kube-node-lease never', async () => {
  await waitFor('bundle everywhere', () => controller.everywhere());
  for (const ns of ['default', 'kube-system']) {
    const cm = await holds([rootA])(ns);
    assert.ok(cm, `${ns} holds the bundle`);
    assert.deepEqual(Object.keys(cm.data ?? {}), [TRUST_BUNDLE_KEY]);
  }
  await controller.idle();
  for (const ns of ['kube-public', 'kube-node-lease']) assert.equal(await read(ns), undefined, `${ns} has no bundle`);
  const status = await checkTrustBundleDistribution(kc, [rootA]);
  assert.equal(status.complete, true, JSON.stringify(status));
  assert.ok(status.namespaces >= 2);
});

test('a new namespace gets the bundle within a couple of seconds', async () => {
  const ns = await namespace('tb-new');
  const { tookMs } = await waitFor('bundle in the new namespace', () => holds([rootA])(ns), 5000);
  assert.ok(tookMs < 2000, `took ${tookMs} ms`);
});

test('repaired after a kubectl edit of the data, a removed label, and a delete', async () => {
  const ns = await namespace('tb-repair');
  await waitFor('bundle', () => holds([rootA])(ns));

  kubectl('-n', ns, 'patch', 'configmap', TRUST_BUNDLE_CONFIGMAP, '--type', 'merge', '-p', JSON.stringify({ data: { [TRUST_BUNDLE_KEY]: 'tampered', extra: 'x' } }));
  const edited = await waitFor('repair after edit', () => holds([rootA])(ns));
  assert.deepEqual(Object.keys(edited.value.data ?? {}), [TRUST_BUNDLE_KEY]);
  assert.ok(edited.tookMs < 2000, `edit repaired in ${edited.tookMs} ms`);

  kubectl('-n', ns, 'label', 'configmap', TRUST_BUNDLE_CONFIGMAP, 'cinch.dev/trust-bundle-', 'team=payments');
  const relabelled = await waitFor('repair after label removal', () => holds([rootA])(ns));
  assert.equal(relabelled.value.metadata?.labels?.team, 'payments', 'foreign labels are kept');

  kubectl('-n', ns, 'delete', 'configmap', TRUST_BUNDLE_CONFIGMAP);
  const recreated = await waitFor('re-created after delete', () => holds([rootA])(ns));
  assert.ok(recreated.tookMs < 2000, `re-created in ${recreated.tookMs} ms`);
});

test('a ConfigMap of that name made by someone else is taken over', async () => {
  await controller.stop();
  const ns = await namespace('tb-foreign');
  await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: TRUST_BUNDLE_CONFIGMAP }, data: { 'root-cert.pem': 'someone else', other: 'x' } } });
  await controller.start([rootA]);
  const { value } = await waitFor('taken over', () => holds([rootA])(ns));
  assert.deepEqual(Object.keys(value.data ?? {}), [TRUST_BUNDLE_KEY]);
});

test('new roots reach every namespace; distributed() is exact', async () => {
  const ns = await namespace('tb-roots');
  await waitFor('bundle', () => holds([rootA])(ns));
  // The controller's cache sees its own write a moment after the API server has it (and namespaces the tests
  // before this one delete are still terminating): wait for its view rather than assume it is already there.
  await waitFor('distributed', () => controller.distributed([rootA]));
  controller.setRoots([rootA, rootB]);
  await waitFor('both roots everywhere', () => controller.distributed([rootA, rootB]));
  assert.equal(controller.distributed([rootA]), false, 'the old set alone is no longer distributed');
  assert.equal(controller.distributed([rootB, rootA]), true, 'order does not matter to the check');
  assert.ok(await holds([rootA, rootB])(ns));
  assert.equal((await checkTrustBundleDistribution(kc, [rootA, rootB])).complete, true);
  assert.equal((await checkTrustBundleDistribution(kc, [rootB])).complete, false);
  controller.setRoots([rootA]);
  await waitFor('back to one root', () => controller.distributed([rootA]));
});

test('a namespace being deleted is neither written nor counted', async () => {
  const ns = await namespace('tb-dying');
  await waitFor('bundle', () => holds([rootA])(ns));
  // Without a namespace controller the namespace stays Terminating, with our ConfigMap in it.
  await core.deleteNamespace({ name: ns });
  controller.setRoots([rootB]);
  await waitFor('new root everywhere else', () => controller.distributed([rootB]));
  assert.ok(await holds([rootA])(ns), 'the terminating namespace keeps the old bundle');
  assert.equal((await checkTrustBundleDistribution(kc, [rootB])).complete, true);
  controller.setRoots([rootA]);
  await waitFor('back', () => controller.distributed([rootA]));
});

test('after stop nothing is repaired; the next leader repairs at start', async () => {
  const ns = await namespace('tb-handover');
  await waitFor('bundle', () => holds([rootA])(ns));
  await controller.stop();
  assert.equal(controller.everywhere(), false, 'a stopped controller cannot vouch for anything');
  await core.deleteNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace: ns });
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(await read(ns), undefined);
  const next = new TrustBundleController(kc, { logger });
  await next.start([rootA]);
  await waitFor('repaired by the next leader', () => holds([rootA])(ns));
  await next.stop();
  await controller.start([rootA]);
});
