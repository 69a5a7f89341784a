// Injection end to end through the real API server: the shipped MutatingWebhookConfiguration (its
// selectors as they are, only clientConfig pointed at this process), the real injector, real pods.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { AdmissionregistrationV1Api, AppsV1Api, CoreV1Api, type V1MutatingWebhookConfiguration, type V1Pod } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { Injector, INJECTION_CONFIGMAP } from '../../src/controlplane/injection.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createRegistry } from '../../src/telemetry/metrics.ts';
import { createWebhookServer, type WebhookServer } from '../../src/webhook/server.ts';
import { createNamespace, testKubeConfig, uniqueName } from '../support/kube.ts';
import { makeServingCert } from '../support/tls.ts';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const logger = createLogger({ stream: new PassThrough(), level: 'error' });
const tlsMaterial = makeServingCert();
const webhookName = uniqueName('cinch-test-injector');
const controlNs = uniqueName('cinch-system');
let injector: Injector;
let webhook: WebhookServer;
let port: number;
const namespaces: { name: string; cleanup: () => Promise<void> }[] = [];

function webhookConfig(url: string): V1MutatingWebhookConfiguration {
  const shipped = parseYaml(fs.readFileSync(path.resolve(import.meta.dirname, '../../webhook-config/mutatingwebhook.yaml'), 'utf8')) as V1MutatingWebhookConfiguration;
  return {
    ...shipped,
    metadata: { name: webhookName },
    webhooks: shipped.webhooks!.map((w) => ({ ...w, clientConfig: { url, caBundle: Buffer.from(tlsMaterial.ca).toString('base64') } })),
  };
}

before(async () => {
  await core.createNamespace({ body: { metadata: { name: controlNs } } });
  injector = new Injector(kc, { namespace: controlNs, logger, registry: createRegistry() });
  await injector.start();
  webhook = createWebhookServer({ ...tlsMaterial, registry: createRegistry(), logger, mutate: injector.mutate });
  port = await webhook.listen(0, '127.0.0.1');
  await admission.createMutatingWebhookConfiguration({ body: webhookConfig(`https://127.0.0.1:${port}/inject`) });
});

after(async () => {
  await admission.deleteMutatingWebhookConfiguration({ name: webhookName }).catch(() => undefined);
  await webhook?.close(100);
  await injector?.stop();
  await Promise.all(namespaces.map((n) => n.cleanup()));
  await core.deleteNamespace({ name: controlNs }).catch(() => undefined);
});

async function ns(labels: Record<string, string> = {}) {
  const n = await createNamespace(kc, 'inj', labels);
  namespaces.push(n);
  return n.name;
}

const pod = (name: string, labels: Record<string, string> = {}, extra: Partial<V1Pod['spec']> = {}): V1Pod => ({
  metadata: { name, labels },
  spec: {
    // A real cluster's ServiceAccount admission plugin fills this in; the test API server runs without it.
    serviceAccountName: 'default',
    containers: [
      {
        name: 'app',
        image: 'example.invalid/app:1',
        ports: [{ name: 'http', containerPort: 8080 }],
        readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 5 },
      },
    ],
    ...extra,
  },
});

const names = (p: V1Pod) => ({
  init: (p.spec?.initContainers ?? []).map((c) => c.name),
  containers: (p.spec?.containers ?? []).map((c) => c.name),
  volumes: (p.spec?.volumes ?? []).map((v) => v.name),
});

test('a pod in a labelled namespace is stored with the sidecar, init container, volumes and rewritten probe', async () => {
  const n = await ns({ 'cinch.dev/inject': 'enabled' });
  const stored = await core.createNamespacedPod({ namespace: n, body: pod('web') });
  const { init, containers, volumes } = names(stored);
  assert.ok(init.includes('cinch-init'), JSON.stringify(init));
  assert.ok(containers.includes('cinch-proxy') || init.includes('cinch-proxy'));
  for (const v of ['cinch-token', 'cinch-ca-root', 'cinch-credentials', 'cinch-podinfo']) assert.ok(volumes.includes(v), `volume ${v}`);
  const app = stored.spec!.containers.find((c) => c.name === 'app')!;
  assert.equal(app.readinessProbe?.httpGet?.path, '/app-health/app/readyz');
  assert.equal(String(app.readinessProbe?.httpGet?.port), '15020');
  assert.ok(stored.metadata?.annotations?.['cinch.dev/status']);
  const token = stored.spec!.volumes!.find((v) => v.name === 'cinch-token')!;
  assert.equal(token.projected?.sources?.[0]?.serviceAccountToken?.audience, 'cinch-ca');
});

test('a Deployment\'s pod template is not touched, its pods are (the webhook sees pod CREATE only)', async () => {
  const n = await ns({ 'cinch.dev/inject': 'enabled' });
  const apps = kc.makeApiClient(AppsV1Api);
  const dep = await apps.createNamespacedDeployment({
    namespace: n,
    body: {
      metadata: { name: 'web' },
      spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: pod('x').spec! } },
    },
  });
  assert.deepEqual(names({ spec: dep.spec!.template.spec! }).containers, ['app']);
  // No controller-manager here: create the pod the ReplicaSet controller would, from the template.
  const stored = await core.createNamespacedPod({ namespace: n, body: { metadata: { generateName: 'web-', labels: { app: 'web' } }, spec: dep.spec!.template.spec! } });
  assert.ok(names(stored).init.includes('cinch-init'));
});

test('opt-out pods, unlabelled namespaces and hostNetwork pods are stored untouched', async () => {
  const enabled = await ns({ 'cinch.dev/inject': 'enabled' });
  const plain = await ns();
  const optOut = await core.createNamespacedPod({ namespace: enabled, body: pod('opt-out', { 'cinch.dev/inject': 'disabled' }) });
  const unlabelled = await core.createNamespacedPod({ namespace: plain, body: pod('plain') });
  const hostNet = await core.createNamespacedPod({ namespace: enabled, body: pod('hostnet', {}, { hostNetwork: true }) });
  for (const p of [optOut, unlabelled, hostNet]) {
    assert.deepEqual(names(p).containers, ['app'], p.metadata?.name);
    assert.equal(p.metadata?.annotations?.['cinch.dev/status'], undefined);
  }
});

test('a pod label opts a single pod in, in a namespace without the label', async () => {
  const plain = await ns();
  const stored = await core.createNamespacedPod({ namespace: plain, body: pod('solo', { 'cinch.dev/inject': 'enabled' }) });
  assert.ok(names(stored).init.includes('cinch-init'));
});

test('an invalid annotation refuses the pod with a message naming it', async () => {
  const n = await ns({ 'cinch.dev/inject': 'enabled' });
  const bad = pod('bad');
  bad.metadata!.annotations = { 'cinch.dev/proxy-cpu': 'lots' };
  await assert.rejects(core.createNamespacedPod({ namespace: n, body: bad }), (err: any) => {
    assert.equal(err.code, 400);
    assert.match(String(err.body), /cinch\.dev\/proxy-cpu/);
    assert.match(String(err.body), /lots/);
    return true;
  });
});

test('the injection ConfigMap is reloaded without restart, and an invalid one keeps the last good config', async () => {
  await core.createNamespacedConfigMap({
    namespace: controlNs,
    body: { metadata: { name: INJECTION_CONFIGMAP }, data: { 'config.yaml': 'proxyImage: registry.example/cinch:9.9\n' } },
  });
  const deadline = Date.now() + 5000;
  while (injector.currentConfig.proxyImage !== 'registry.example/cinch:9.9' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const n = await ns({ 'cinch.dev/inject': 'enabled' });
  const stored = await core.createNamespacedPod({ namespace: n, body: pod('configured') });
  const proxy = [...(stored.spec!.initContainers ?? []), ...stored.spec!.containers].find((c) => c.name === 'cinch-proxy')!;
  assert.equal(proxy.image, 'registry.example/cinch:9.9');

  await core.replaceNamespacedConfigMap({
    name: INJECTION_CONFIGMAP,
    namespace: controlNs,
    body: { metadata: { name: INJECTION_CONFIGMAP }, data: { 'config.yaml': 'proxyImage: [not, a, string]\n' } },
  });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(injector.currentConfig.proxyImage, 'registry.example/cinch:9.9');
});

test('with the webhook down and failurePolicy Fail, creation in a labelled namespace is refused naming the webhook', async () => {
  const n = await ns({ 'cinch.dev/inject': 'enabled' });
  await webhook.close(100);
  await assert.rejects(core.createNamespacedPod({ namespace: n, body: pod('while-down') }), (err: any) => {
    assert.equal(err.code, 500);
    assert.match(String(err.body), /namespace\.inject\.cinch\.dev/);
    return true;
  });
  // Unlabelled namespaces never reach the webhook, so they keep working.
  const plain = await ns();
  await core.createNamespacedPod({ namespace: plain, body: pod('unaffected') });
});
