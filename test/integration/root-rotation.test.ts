// Root rotation end to end against the real API server, with `cinch ca rotate` run as users run it:
// the bundle holds both roots in every namespace, the control plane reloads the Secret and signs with
// the new root after the switch, and the old root leaves the bundle after the drop. Each phase refuses
// to run early, saying what to wait for. The control plane's part (trust-bundle controller, Secret
// watch) runs as a ServiceAccount holding exactly the shipped RBAC rules.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, type V1ClusterRole, type V1Role } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { createRootAndIntermediate } from '../../src/ca/create.ts';
import { parseCsr } from '../../src/ca/csr.ts';
import { FastLeafSigner } from '../../src/ca/fast-signer.ts';
import { toSecretData, type CaMaterial } from '../../src/ca/material.ts';
import { ROTATION_ANNOTATION, parseRotationState, rootsOf } from '../../src/ca/rotation.ts';
import { CA_SECRET, decodeSecretData, loadOrCreateCaSecret } from '../../src/controlplane/ca-store.ts';
import { watchCaSecret, type CaWatch } from '../../src/controlplane/ca-watch.ts';
import { TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY, TrustBundleController, checkTrustBundleDistribution } from '../../src/controlplane/trust-bundle.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { generateTestKey, makeCsr, opensslVerify } from '../unit/ca/support.ts';
import { createNamespace, createServiceAccount, testKubeConfig, uniqueName } from '../support/kube.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
const logger = createLogger({ stream: new PassThrough(), level: 'error' });
const clusterRoles: string[] = [];
let cp: { name: string; cleanup: () => Promise<void> };
let app: { name: string; cleanup: () => Promise<void> };
let controlPlaneKc: KubeConfig;
let controller: TrustBundleController;
let watch: CaWatch;
let current: CaMaterial;
let oldRoot: string;

function cinch(...args: string[]) {
  const res = spawnSync(process.execPath, [path.join(repo, 'bin/cinch.js'), 'ca', 'rotate', '--kubeconfig', process.env.KUBECONFIG!, '--namespace', cp.name, ...args], {
    encoding: 'utf8',
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr, all: `${res.stdout}\n${res.stderr}` };
}

async function waitFor(what: string, probe: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const start = Date.now();
  while (!(await probe())) {
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function secretData(): Promise<{ data: Record<string, string>; annotation?: string }> {
  const secret = await core.readNamespacedSecret({ name: CA_SECRET, namespace: cp.name });
  return { data: decodeSecretData(secret), annotation: secret.metadata?.annotations?.[ROTATION_ANNOTATION] };
}

async function bundleIn(ns: string): Promise<string | undefined> {
  return (await core.readNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace: ns }).catch(() => undefined))?.data?.[TRUST_BUNDLE_KEY];
}

async function leafFromCurrent(): Promise<string[]> {
  const csr = parseCsr(await makeCsr(generateTestKey('ec-p256'), [{ type: 'url', value: `spiffe://cluster.local/ns/${app.name}/sa/default` }]));
  return new FastLeafSigner(current).sign({ csr, spiffeId: `spiffe://cluster.local/ns/${app.name}/sa/default` }).certChain;
}

before(async () => {
  cp = await createNamespace(kc, 'rot-cp');
  app = await createNamespace(kc, 'rot-app');
  await createServiceAccount(kc, cp.name, 'cinch');
  // The shipped ClusterRole and the Secret/Lease Role, moved to this test's namespace.
  const shipped = parseAllDocuments(fs.readFileSync(path.join(repo, 'webhook-config/rbac.yaml'), 'utf8')).map((d) => d.toJS() as V1ClusterRole & V1Role);
  const name = uniqueName('cinch-test-rotation');
  await rbac.createClusterRole({ body: { metadata: { name }, rules: shipped.find((d) => d.kind === 'ClusterRole')!.rules } });
  await rbac.createClusterRoleBinding({
    body: { metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name }, subjects: [{ kind: 'ServiceAccount', name: 'cinch', namespace: cp.name }] },
  });
  clusterRoles.push(name);
  await rbac.createNamespacedRole({ namespace: cp.name, body: { metadata: { name: 'cinch-control-plane' }, rules: shipped.find((d) => d.kind === 'Role')!.rules } });
  await rbac.createNamespacedRoleBinding({
    namespace: cp.name,
    body: {
      metadata: { name: 'cinch-control-plane' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'cinch-control-plane' },
      subjects: [{ kind: 'ServiceAccount', name: 'cinch', namespace: cp.name }],
    },
  });
  const token = (await core.createNamespacedServiceAccountToken({ namespace: cp.name, name: 'cinch', body: { spec: { audiences: [], expirationSeconds: 3600 } } })).status!.token;
  const cluster = kc.getCurrentCluster()!;
  controlPlaneKc = new KubeConfig();
  controlPlaneKc.loadFromOptions({ clusters: [cluster], users: [{ name: 'cinch', token }], contexts: [{ name: 'cinch', cluster: cluster.name, user: 'cinch' }], currentContext: 'cinch' });

  // What the control plane does at start: load or create the CA, distribute its roots, watch the Secret.
  const ca = await loadOrCreateCaSecret(controlPlaneKc, cp.name, 'cluster.local', logger);
  current = ca.material;
  oldRoot = ca.material.trustBundle[0];
  controller = new TrustBundleController(controlPlaneKc, { logger });
  await controller.start(current.trustBundle);
  watch = watchCaSecret(controlPlaneKc, {
    namespace: cp.name,
    current,
    logger,
    onChange: (source) => {
      current = source.material;
      controller.setRoots(source.material.trustBundle);
    },
  });
  await watch.synced;
  await waitFor('initial bundle', () => controller.everywhere());
});

after(async () => {
  await watch?.stop();
  await controller?.stop();
  for (const name of clusterRoles) {
    await rbac.deleteClusterRoleBinding({ name }).catch(() => undefined);
    await rbac.deleteClusterRole({ name }).catch(() => undefined);
  }
  await app?.cleanup();
  await cp?.cleanup();
});

test('a rotation end to end: add, switch once the bundle is everywhere, drop after the lifetime', async () => {
  // Nothing to switch or drop before a rotation starts.
  const early = cinch('--phase', 'switch');
  assert.equal(early.status, 3, early.all);
  assert.match(early.stderr, /no rotation in progress: add the new root first/);

  // With the trust-bundle controller down, the add happens but the switch must wait for the bundle.
  await controller.stop();
  const added = cinch('--max-cert-ttl', '4', '--grace', '2');
  assert.equal(added.status, 0, added.all);
  assert.match(added.stdout, /^add: applied — root-cert.pem now holds 2 roots/m);
  assert.match(added.stdout, /^switch: blocked — not switching yet: wait for ConfigMap cinch-ca-root-cert to hold both roots in every namespace .*, and until .*one max certificate lifetime, 4 s, \+ 2 s after the add/m);
  assert.doesNotMatch(added.all, /PRIVATE KEY/);
  const afterAdd = await secretData();
  const state = parseRotationState(afterAdd.annotation)!;
  assert.equal(state.phase, 'added');
  assert.equal(rootsOf(afterAdd.data['root-cert.pem']).length, 2);
  const bothRoots = afterAdd.data['root-cert.pem'];
  assert.equal(rootsOf(bothRoots)[0], rootsOf(oldRoot)[0], 'old root first');

  // The control plane reloaded: both roots in its bundle, signing still with the old root.
  await waitFor('reload after add', () => current.trustBundle.length === 2);
  const duringAdd = await leafFromCurrent();
  assert.equal(duringAdd[duringAdd.length - 1], oldRoot);
  assert.equal(cinch('--phase', 'add').status, 0, 'add again: already done, nothing changes');
  assert.equal((await secretData()).annotation, afterAdd.annotation);

  await new Promise((r) => setTimeout(r, 6300));
  const noBundle = cinch('--phase', 'switch');
  assert.equal(noBundle.status, 3, noBundle.all);
  assert.match(noBundle.stderr, /wait for ConfigMap cinch-ca-root-cert to hold both roots in every namespace \(not yet both roots in /);
  assert.doesNotMatch(noBundle.stderr, /until/, 'the time has passed; only the bundle is missing');
  assert.match(cinch('--phase', 'drop').stderr, /signing still uses the old root: run --phase switch first/);

  // The controller comes back (a leader again) and puts both roots everywhere, new namespaces included.
  await controller.start(current.trustBundle);
  await waitFor('both roots everywhere', () => controller.distributed([bothRoots]));
  const fresh = await createNamespace(kc, 'rot-new');
  await waitFor('both roots in a new namespace', async () => (await bundleIn(fresh.name)) !== undefined);
  assert.equal(rootsOf((await bundleIn(fresh.name))!).length, 2);
  assert.equal(rootsOf((await bundleIn(app.name))!).length, 2);
  assert.equal(await bundleIn('kube-public'), undefined);
  assert.equal(await bundleIn('kube-node-lease'), undefined);
  assert.equal((await checkTrustBundleDistribution(kc, [bothRoots])).complete, true);

  const dry = cinch('--phase', 'switch', '--dry-run');
  assert.equal(dry.status, 0, dry.all);
  assert.match(dry.stdout, /^switch: would-apply — signing switched to/m);
  assert.equal((await secretData()).annotation, afterAdd.annotation, 'a dry run writes nothing');

  const switched = cinch('--phase', 'switch');
  assert.equal(switched.status, 0, switched.all);
  assert.match(switched.stdout, /^switch: applied/m);
  const afterSwitch = await secretData();
  assert.equal(parseRotationState(afterSwitch.annotation)!.phase, 'switched');
  assert.equal(Object.keys(afterSwitch.data).filter((k) => k.startsWith('next-')).length, 0);
  // Straight away, before anything slow: the drop must wait one lifetime after the switch.
  const tooEarly = cinch('--phase', 'drop');
  assert.equal(tooEarly.status, 3, tooEarly.all);
  assert.match(tooEarly.stderr, /not dropping the old root yet: certificates it signed may be in use until .*one max certificate lifetime, 4 s, \+ 2 s after the switch/);

  // Leaves now come from the new root; peers holding both roots accept old and new leaves alike.
  await waitFor('reload after switch', () => current.chainPems[current.chainPems.length - 1] !== oldRoot);
  const newRoot = current.chainPems[current.chainPems.length - 1];
  const afterSwitchLeaf = await leafFromCurrent();
  assert.match(opensslVerify(afterSwitchLeaf[0], newRoot), /OK/);
  assert.match(opensslVerify(afterSwitchLeaf[0], bothRoots), /OK/);
  assert.match(opensslVerify(duringAdd[0], bothRoots), /OK/);
  assert.throws(() => opensslVerify(afterSwitchLeaf[0], oldRoot), 'not under the old root');

  await new Promise((r) => setTimeout(r, 6300));
  const dropped = cinch();
  assert.equal(dropped.status, 0, dropped.all);
  assert.match(dropped.stdout, /^drop: applied — root-cert.pem now holds 1 root; 1 old root dropped/m);
  const afterDrop = await secretData();
  assert.equal(parseRotationState(afterDrop.annotation)!.phase, 'dropped');
  assert.deepEqual(rootsOf(afterDrop.data['root-cert.pem']), rootsOf(newRoot));

  await waitFor('only the new root everywhere', () => controller.distributed([newRoot]));
  assert.deepEqual(rootsOf((await bundleIn(app.name))!), rootsOf(newRoot));
  assert.deepEqual(rootsOf((await bundleIn(fresh.name))!), rootsOf(newRoot));
  await waitFor('reload after drop', () => current.trustBundle.length === 1);
  assert.match(opensslVerify((await leafFromCurrent())[0], current.trustBundle.join('')), /OK/);

  const done = cinch();
  assert.equal(done.status, 0, done.all);
  assert.match(done.stdout, /the last rotation completed at .*; start another with --phase add/);
  await fresh.cleanup();
});

test('a bad edit of the Secret is refused by the watch; the control plane keeps its material', async () => {
  const before = current;
  const secret = await core.readNamespacedSecret({ name: CA_SECRET, namespace: cp.name });
  const original = { ...secret.data };
  secret.data = { ...secret.data, 'ca-key.pem': Buffer.from('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n').toString('base64') };
  await core.replaceNamespacedSecret({ name: CA_SECRET, namespace: cp.name, body: secret });
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(current, before);
  const restored = await core.readNamespacedSecret({ name: CA_SECRET, namespace: cp.name });
  restored.data = original;
  await core.replaceNamespacedSecret({ name: CA_SECRET, namespace: cp.name, body: restored });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(current, before, 'the same files again are no change');
});

test('new material is checked before anything is written; a plugged-in intermediate needs --from-dir', async () => {
  const missing = cinch('--phase', 'add', '--from-dir', path.join(repo, 'does-not-exist'));
  assert.equal(missing.status, 1, missing.all);
  assert.match(missing.stderr, /cinch ca rotate: CA material: incomplete CA bundle: missing/);

  const plugged = await createNamespace(kc, 'rot-plugged');
  try {
    const files = (await createRootAndIntermediate({ trustDomain: 'cluster.local' })).files;
    await core.createNamespacedSecret({ namespace: plugged.name, body: { metadata: { name: CA_SECRET }, stringData: toSecretData(files) } });
    const res = spawnSync(process.execPath, [path.join(repo, 'bin/cinch.js'), 'ca', 'rotate', '--kubeconfig', process.env.KUBECONFIG!, '--namespace', plugged.name, '--phase', 'add'], { encoding: 'utf8' });
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, /signs with an intermediate .* pass --from-dir certs-next/);
    const secret = await core.readNamespacedSecret({ name: CA_SECRET, namespace: plugged.name });
    assert.equal(secret.metadata?.annotations?.[ROTATION_ANNOTATION], undefined, 'nothing written');

    // The documented way: a new root + intermediate from `cinch ca init --intermediate`, added with --from-dir.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-next-'));
    try {
      const init = spawnSync(process.execPath, [path.join(repo, 'bin/cinch.js'), 'ca', 'init', '--intermediate', '--dir', dir], { encoding: 'utf8' });
      assert.equal(init.status, 0, init.stderr);
      const add = spawnSync(
        process.execPath,
        [path.join(repo, 'bin/cinch.js'), 'ca', 'rotate', '--kubeconfig', process.env.KUBECONFIG!, '--namespace', plugged.name, '--phase', 'add', '--from-dir', dir],
        { encoding: 'utf8' },
      );
      assert.equal(add.status, 0, add.stderr);
      assert.match(add.stdout, /^add: applied — root-cert.pem now holds 2 roots/m);
      const data = decodeSecretData(await core.readNamespacedSecret({ name: CA_SECRET, namespace: plugged.name }));
      assert.equal(data['next-ca-cert.pem'], fs.readFileSync(path.join(dir, 'ca-cert.pem'), 'utf8'));
      assert.equal(data['root-key.pem'], undefined, 'the new root key stays offline');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    await plugged.cleanup();
  }
});
