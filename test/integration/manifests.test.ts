// The install manifests as users apply them: `kubectl kustomize` renders the base (webhook-config/) and
// each overlay (overlays/dev, overlays/ha); the CRDs and the Namespace are applied for real, everything
// else with `kubectl apply --dry-run=server`, so the real API server validates every object (schemas,
// enums, selectors, RBAC rules) without anything running. Renderings are also checked for the settings
// that must agree across objects (proxy image, trust domain) and for each overlay's intent.
//
// Isolation: every namespaced object is moved from cinch-system into a namespace unique to this run
// (as `kustomize edit set namespace` would), so the test never touches a real cinch-system and leaves
// only what a namespace deletion removes. Cluster-scoped objects other than the CRDs are dry-run only.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';
import { CONFIG_KEY, parseInjectionConfig, type InjectionConfig } from '../../src/inject/index.ts';
import { testKubeConfig, uniqueName } from '../support/kube.ts';

const root = path.resolve(import.meta.dirname, '../..');
const BASE_NS = 'cinch-system';
testKubeConfig(); // fails early, with a useful message, when KUBECONFIG is missing

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: any;
}

const run = promisify(execFile);

async function kubectl(args: string[], input?: string): Promise<string> {
  const child = run('kubectl', args, { env: process.env, maxBuffer: 32 * 1024 * 1024, timeout: 60_000 });
  if (input !== undefined) child.child.stdin!.end(input);
  try {
    return (await child).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`kubectl ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

async function render(dir: string): Promise<K8sObject[]> {
  const text = await kubectl(['kustomize', path.join(root, dir)]);
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

const toYaml = (objects: K8sObject[]) => objects.map((o) => stringify(o)).join('---\n');
const find = (objects: K8sObject[], kind: string) => objects.find((o) => o.kind === kind);
const id = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;

/** Moves the install into `ns`: the Namespace itself, namespaced objects, and references to them. */
function intoNamespace(objects: K8sObject[], ns: string): K8sObject[] {
  return structuredClone(objects).map((o) => {
    if (o.kind === 'Namespace' && o.metadata.name === BASE_NS) o.metadata.name = ns;
    if (o.metadata.namespace === BASE_NS) o.metadata.namespace = ns;
    for (const s of o.subjects ?? []) if (s.namespace === BASE_NS) s.namespace = ns;
    for (const w of o.webhooks ?? []) if (w.clientConfig?.service?.namespace === BASE_NS) w.clientConfig.service.namespace = ns;
    return o;
  });
}

function injectionConfig(objects: K8sObject[]): InjectionConfig {
  const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'cinch-injection');
  assert.ok(cm, 'the cinch-injection ConfigMap is rendered');
  return parseInjectionConfig(cm.data);
}

function controlPlane(objects: K8sObject[]) {
  const deployment = find(objects, 'Deployment');
  assert.ok(deployment, 'the control-plane Deployment is rendered');
  const container = (deployment.spec.template.spec.containers as any[]).find((c) => c.name === 'control-plane');
  assert.ok(container, 'the Deployment has the control-plane container');
  const args = (container.args ?? []) as string[];
  const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  return { deployment, container, args, flag };
}

/** Whether the server serves policy/v1 (Kubernetes >= 1.21); the test API server is 1.20. */
let servesPolicyV1 = true;
const namespaces: string[] = [];
const createdCrds: string[] = [];

before(async () => {
  servesPolicyV1 = (await kubectl(['api-versions'])).split('\n').includes('policy/v1');
});

after(async () => {
  for (const ns of namespaces) await kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']).catch(() => undefined);
  // CRDs this run created go again (deleting them removes their objects); ones that were already there stay.
  for (const crd of createdCrds) await kubectl(['delete', 'crd', crd, '--wait=false', '--ignore-not-found']).catch(() => undefined);
});

test('the base lists every manifest in webhook-config/', async () => {
  const kustomization = parseAllDocuments(fs.readFileSync(path.join(root, 'webhook-config/kustomization.yaml'), 'utf8'))[0].toJS() as { resources: string[] };
  const onDisk = ['.', 'crds']
    .flatMap((dir) => fs.readdirSync(path.join(root, 'webhook-config', dir)).map((f) => path.posix.join(dir, f)))
    .map((f) => f.replace(/^\.\//, ''))
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  assert.deepEqual([...kustomization.resources].sort(), onDisk.sort());
});

/** The checks every rendering must pass, then the apply against the real API server. */
function installTests(dir: string, expectations: (objects: K8sObject[]) => void): void {
  describe(dir, () => {
    let objects: K8sObject[] = [];
    before(async () => {
      objects = await render(dir);
    });

    test('renders the whole install', () => {
      const kinds = new Set(objects.map((o) => o.kind));
      for (const kind of ['Namespace', 'CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'Service', 'ConfigMap', 'Deployment', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
        assert.ok(kinds.has(kind), `${dir} renders a ${kind}`);
      }
      assert.deepEqual(objects.filter((o) => o.kind === 'CustomResourceDefinition').map((o) => o.metadata.name).sort(), [
        'authorizationpolicies.security.istio.io',
        'peerauthentications.security.istio.io',
      ]);
    });

    test('the proxy image, trust domain and certificate lifetimes agree across objects', () => {
      const config = injectionConfig(objects);
      const { container, flag } = controlPlane(objects);
      // One image for control plane and proxy: a mismatch would run a proxy from another release.
      assert.equal(config.proxyImage, container.image, 'proxyImage in the injection ConfigMap equals the control plane image');
      assert.equal(flag('trust-domain') ?? 'cluster.local', config.trustDomain, 'the control plane --trust-domain equals the injection trustDomain');
      const defaultTtl = Number(flag('default-cert-ttl') ?? 3600);
      const maxTtl = Number(flag('max-cert-ttl') ?? 86400);
      assert.ok(defaultTtl <= maxTtl, `--default-cert-ttl ${defaultTtl} is within --max-cert-ttl ${maxTtl}`);
      // A PDB that keeps every replica blocks every node drain.
      const pdb = find(objects, 'PodDisruptionBudget');
      const replicas = controlPlane(objects).deployment.spec.replicas ?? 1;
      if (pdb?.spec.minAvailable !== undefined) assert.ok(pdb.spec.minAvailable < replicas, `PDB minAvailable ${pdb.spec.minAvailable} < replicas ${replicas}`);
    });

    test('overlay settings', () => expectations(objects));

    let ns = '';
    test('the real API server accepts it: CRDs and Namespace applied, the rest with --dry-run=server', async () => {
      ns = uniqueName('cinch-manifests');
      namespaces.push(ns);
      const moved = intoNamespace(objects, ns);
      const crds = moved.filter((o) => o.kind === 'CustomResourceDefinition');
      const namespace = moved.filter((o) => o.kind === 'Namespace');
      // PodDisruptionBudgets have their own test below: the test API server predates policy/v1.
      const rest = moved.filter((o) => !['CustomResourceDefinition', 'Namespace', 'PodDisruptionBudget'].includes(o.kind));

      for (const crd of crds) {
        const existed = (await kubectl(['get', 'crd', crd.metadata.name, '--ignore-not-found', '-o', 'name'])).trim() !== '';
        if (!existed && !createdCrds.includes(crd.metadata.name)) createdCrds.push(crd.metadata.name);
      }
      await kubectl(['apply', '-f', '-'], toYaml(crds));
      await kubectl(['wait', '--for=condition=Established', '--timeout=30s', ...crds.map((c) => `crd/${c.metadata.name}`)]);
      // Namespaced objects can be dry-run only into a namespace that exists.
      await kubectl(['apply', '-f', '-'], toYaml(namespace));
      const labels = JSON.parse(await kubectl(['get', 'namespace', ns, '-o', 'jsonpath={.metadata.labels}'])) as Record<string, string>;
      assert.equal(labels['cinch.dev/inject'], 'disabled', 'the control-plane namespace is never injected');

      const out = await kubectl(['apply', '--dry-run=server', '-o', 'name', '-f', '-'], toYaml(rest));
      const applied = out.trim().split('\n').filter(Boolean);
      assert.equal(applied.length, rest.length, `every object dry-run: ${applied.join(', ')}`);
    });

    test('the real API server accepts its PodDisruptionBudget (policy/v1)', async (t) => {
      const pdbs = intoNamespace(objects, ns).filter((o) => o.kind === 'PodDisruptionBudget');
      if (pdbs.length === 0) return t.skip(`${dir} renders no PodDisruptionBudget`);
      assert.ok(ns, 'the namespace was created by the previous test');
      // policy/v1 came with Kubernetes 1.21 and is the only PDB API from 1.25 on, so the manifests keep it.
      for (const pdb of pdbs) assert.equal(pdb.apiVersion, 'policy/v1', id(pdb));
      if (servesPolicyV1) {
        const out = await kubectl(['apply', '--dry-run=server', '-o', 'name', '-f', '-'], toYaml(pdbs));
        assert.equal(out.trim().split('\n').length, pdbs.length);
        return;
      }
      // An older server cannot take policy/v1. policy/v1beta1 has the same minAvailable and selector fields,
      // so the server still validates the spec in that form; the policy/v1 object itself is reported skipped.
      const asBeta = pdbs.map((o) => ({ ...o, apiVersion: 'policy/v1beta1' }));
      const out = await kubectl(['apply', '--dry-run=server', '-o', 'name', '-f', '-'], toYaml(asBeta));
      assert.equal(out.trim().split('\n').length, asBeta.length);
      t.skip(`this API server does not serve policy/v1 (Kubernetes < 1.21): ${pdbs.map(id).join(', ')} not applied as policy/v1; its fields were dry-run as policy/v1beta1`);
    });
  });
}

installTests('webhook-config', (objects) => {
  const { deployment, args } = controlPlane(objects);
  assert.equal(deployment.spec.replicas, 2);
  assert.deepEqual(args, ['control-plane', '--shutdown-delay-seconds=5']);
  for (const w of find(objects, 'MutatingWebhookConfiguration')!.webhooks) assert.equal(w.failurePolicy, 'Fail', w.name);
  assert.equal(find(objects, 'PodDisruptionBudget')?.spec.minAvailable, 1);
});

installTests('overlays/dev', (objects) => {
  const { deployment, container, flag } = controlPlane(objects);
  const config = injectionConfig(objects);
  assert.equal(deployment.spec.replicas, 1);
  assert.equal(container.image, 'cinch:dev');
  assert.equal(container.env.find((e: { name: string }) => e.name === 'CINCH_LOG_LEVEL')?.value, 'debug');
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.nativeSidecar, 'auto');
  assert.equal(config.resources.requests.cpu, '10m');
  assert.equal(flag('max-cert-ttl'), '3600');
  assert.equal(find(objects, 'PodDisruptionBudget'), undefined, 'no PDB for a single replica (it would block every drain)');
  for (const w of find(objects, 'MutatingWebhookConfiguration')!.webhooks) assert.equal(w.failurePolicy, 'Ignore', w.name);
  // The replaced ConfigMap keeps its name: the control plane looks it up as cinch-injection.
  assert.ok(Object.keys(objects.find((o) => o.kind === 'ConfigMap')!.data).includes(CONFIG_KEY));
});

installTests('overlays/ha', (objects) => {
  const { deployment, container, flag } = controlPlane(objects);
  const config = injectionConfig(objects);
  assert.equal(deployment.spec.replicas, 3);
  assert.equal(container.image, 'registry.example.com/cinch/cinch:0.1.0');
  assert.equal(config.nativeSidecar, 'true');
  assert.equal(config.trustDomain, 'prod.example.com');
  assert.equal(flag('max-cert-ttl'), '86400');
  assert.equal(find(objects, 'PodDisruptionBudget')?.spec.minAvailable, 2);
  const anti = deployment.spec.template.spec.affinity.podAntiAffinity;
  assert.deepEqual(anti.requiredDuringSchedulingIgnoredDuringExecution, [{ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { app: 'cinch' } } }]);
  // No surge: with one replica per node on three nodes, a surge pod would have nowhere to go.
  assert.equal(deployment.spec.strategy.rollingUpdate.maxSurge, 0);
  for (const w of find(objects, 'MutatingWebhookConfiguration')!.webhooks) assert.equal(w.failurePolicy, 'Fail', w.name);
});
