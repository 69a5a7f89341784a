// The config stream end to end against the real API server: MeshState's informers, the router on
// an mTLS server, workload certificates from the CA core, and the proxy's own ConfigClient.
// `kubectl apply` of a policy reaches the connected proxy; invalid policies get an Event and do not
// take the valid ones down; only the pod's own identity may read its config.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { CoreV1Api, CustomObjectsApi, type CoreV1Event } from '@kubernetes/client-node';
import express from 'express';
import { Registry } from 'prom-client';
import { checkCsr, createRootCa, FastLeafSigner, issueServingCertificate, loadCaMaterial, type CaMaterial } from '../../src/ca/index.ts';
import { configRouter } from '../../src/controlplane/config-stream.ts';
import { MeshState } from '../../src/controlplane/mesh-state.ts';
import { ConfigClient, CONFIG_PATH, type ProxyConfig } from '../../src/proxy/config.ts';
import type { MeshCredentials } from '../../src/proxy/types.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { generateTestKey, makeCsr } from '../unit/ca/support.ts';
import { createServiceAccount, runKubectl, testKubeConfig, uniqueName } from '../support/kube.ts';

const TD = 'cluster.local';
const REPO = path.resolve(import.meta.dirname, '../..');
const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const logLines: string[] = [];
const logStream = new PassThrough();
logStream.setEncoding('utf8');
logStream.on('data', (chunk: string) => logLines.push(...chunk.split('\n').filter((l) => l !== '')));
const logger = createLogger({ stream: logStream, level: 'info' });
const clientLogger = createLogger({ stream: new PassThrough(), level: 'error' });
const registry = new Registry();

// A unique root namespace, so mesh-wide policies of other tests never apply here.
const rootNs = uniqueName('cinch-root');
const appNs = uniqueName('cfg');
// Pod IPs no other test uses: there is no kubelet or IPAM, tests make them up.
const ipBase = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}`;
// As the mesh server does: one signal for the server (on res.locals), one the owner passes to the router.
const serverClosing = new AbortController();
const routerClosing = new AbortController();
let material: CaMaterial;
let signer: FastLeafSigner;
let state: MeshState;
let server: https.Server;
let port: number;
const clients: ConfigClient[] = [];

async function kubectl(args: string[], input?: string): Promise<string> {
  const run = await runKubectl(args, input);
  if (run.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return run.stdout;
}

/** A workload certificate signed by the CA core for `spiffeId`, in the shape the proxy's agent keeps. */
async function workloadCredentials(spiffeId: string, ca = material, caSigner = signer): Promise<MeshCredentials> {
  const key = generateTestKey('ec-p256');
  const csr = checkCsr(await makeCsr(key, [{ type: 'url', value: spiffeId }]), spiffeId);
  const signed = caSigner.sign({ csr, spiffeId });
  const keyPem = String(key.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const certChainPem = signed.certChain.slice(0, -1).join('');
  return { spiffeId, keyPem, certChainPem, trustBundle: ca.trustBundle, secureContext: tls.createSecureContext({ key: keyPem, cert: certChainPem }) };
}

const spiffe = (ns: string, sa: string) => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

async function createRunningPod(name: string, serviceAccount: string, ip: string, labels: Record<string, string> = {}): Promise<void> {
  const created = await core.createNamespacedPod({
    namespace: appNs,
    body: {
      metadata: { name, labels: { app: name, 'security.cinch.dev/tls-mode': 'cinch', ...labels } },
      spec: { serviceAccountName: serviceAccount, containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
    },
  });
  // No kubelet: report the pod running at its address, as the kubelet would.
  created.status = { phase: 'Running', podIP: ip, podIPs: [{ ip }] };
  await core.replaceNamespacedPodStatus({ name, namespace: appNs, body: created });
}

function startClient(podName: string, credentials: MeshCredentials): ConfigClient {
  const client = new ConfigClient({ address: `127.0.0.1:${port}`, podName, credentials: () => credentials, logger: clientLogger });
  clients.push(client);
  client.start();
  return client;
}

/** Resolves with the first config (current or pushed) that satisfies `ok`, and when it arrived. */
function waitForConfig(client: ConfigClient, ok: (c: ProxyConfig) => boolean, timeoutMs = 5000): Promise<{ config: ProxyConfig; at: number }> {
  const current = client.current;
  if (current && ok(current)) return Promise.resolve({ config: current, at: performance.now() });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('config', listener);
      reject(new Error(`no matching config within ${timeoutMs} ms; last version ${client.current?.version}`));
    }, timeoutMs);
    const listener = (config: ProxyConfig) => {
      if (!ok(config)) return;
      clearTimeout(timer);
      client.off('config', listener);
      resolve({ config, at: performance.now() });
    };
    client.on('config', listener);
  });
}

const policyNames = (c: ProxyConfig) => c.authorizationPolicies.map((p) => p.metadata.name).sort();

/** A raw GET /v1/config with the given TLS client options; the status and the JSON body (or first line). */
function rawGet(podName: string, tlsOptions: https.RequestOptions): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path: `${CONFIG_PATH}?pod=${podName}`, ca: [...material.trustBundle], agent: false, ...tlsOptions },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          // A stream never ends on its own: the first line is enough.
          if (res.statusCode === 200 && text.includes('\n')) req.destroy();
        });
        const done = () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text.split('\n')[0] || 'null') });
        res.on('end', done);
        res.on('close', done);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  await kubectl(['apply', '-f', path.join(REPO, 'webhook-config/crds/')]);
  await kubectl(['wait', '--for=condition=established', '--timeout=30s', 'crd/authorizationpolicies.security.istio.io', 'crd/peerauthentications.security.istio.io']);
  await core.createNamespace({ body: { metadata: { name: rootNs } } });
  await core.createNamespace({ body: { metadata: { name: appNs } } });
  await createServiceAccount(kc, appNs, 'httpbin');
  await createServiceAccount(kc, appNs, 'sleep');

  material = loadCaMaterial((await createRootCa({ trustDomain: TD })).files);
  signer = new FastLeafSigner(material);
  state = new MeshState(kc, { trustDomain: TD, rootNamespace: rootNs, trustBundle: material.trustBundle, logger, registry, instance: 'config-stream-test' });
  await state.start();

  const serverKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const serving = await issueServingCertificate(material, { publicKey: serverKey.publicKey, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: 3600 });
  const app = express();
  app.use((_req, res, next) => {
    res.locals.closing = serverClosing.signal;
    next();
  });
  app.use(configRouter({ state, trustDomain: TD, rootNamespace: rootNs, logger, registry, closing: routerClosing.signal }));
  server = https.createServer(
    {
      key: serverKey.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      cert: serving.certChain.slice(0, -1).join(''),
      ca: [...material.trustBundle],
      requestCert: true,
      rejectUnauthorized: false,
    },
    app,
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const c of clients) c.stop();
  serverClosing.abort();
  routerClosing.abort();
  server?.closeAllConnections();
  server?.close();
  await state?.stop();
  await kubectl(['delete', 'namespace', appNs, rootNs, '--wait=false']).catch(() => undefined);
});

test('a proxy connecting before its pod exists is refused with 404, retries, and gets its config once the pod is running', async () => {
  const client = startClient('httpbin', await workloadCredentials(spiffe(appNs, 'httpbin')));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(client.current, undefined);
  await createRunningPod('httpbin', 'httpbin', `${ipBase}.10`);
  const { config } = await waitForConfig(client, () => true, 10_000);
  assert.deepEqual(config.workload, { namespace: appNs, name: 'httpbin', serviceAccount: 'httpbin', labels: { app: 'httpbin', 'security.cinch.dev/tls-mode': 'cinch' } });
  assert.equal(config.trustDomain, TD);
  assert.equal(config.rootNamespace, rootNs);
  assert.deepEqual(config.trustBundle, [...material.trustBundle]);
  assert.deepEqual(config.meshedDestinations[`${ipBase}.10`]?.identities, [spiffe(appNs, 'httpbin')]);
});

test('kubectl apply of an AuthorizationPolicy reaches the connected proxy, and its deletion too', async () => {
  const client = clients[0];
  const policy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
  namespace: ${appNs}
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin*"]
        ports: ["8000"]
`;
  const started = performance.now();
  await kubectl(['apply', '-f', '-'], policy);
  const applied = performance.now();
  const { config, at } = await waitForConfig(client, (c) => policyNames(c).includes('deny-admin'));
  console.log(`# apply → proxy: ${(at - applied).toFixed(0)} ms after kubectl returned (${(at - started).toFixed(0)} ms including kubectl itself)`);
  const pushed = config.authorizationPolicies.find((p) => p.metadata.name === 'deny-admin')!;
  assert.equal(pushed.spec.action, 'DENY');
  assert.deepEqual(pushed.spec.rules?.[0].to?.[0].operation.paths, ['/admin*']);
  assert.equal(pushed.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'], undefined);

  const deleting = performance.now();
  await kubectl(['delete', 'authorizationpolicy', '-n', appNs, 'deny-admin']);
  const gone = await waitForConfig(client, (c) => !policyNames(c).includes('deny-admin'));
  console.log(`# delete → proxy: ${(gone.at - deleting).toFixed(0)} ms including kubectl`);

  // The same through the API directly, without kubectl's start-up: from the create call to the proxy.
  const latencies: number[] = [];
  for (let i = 0; i < 5; i++) {
    const name = `direct-${i}`;
    const t0 = performance.now();
    await custom.createNamespacedCustomObject({
      group: 'security.istio.io',
      version: 'v1',
      namespace: appNs,
      plural: 'authorizationpolicies',
      body: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name }, spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['blocked'] } }] }] } },
    });
    const arrived = await waitForConfig(client, (c) => policyNames(c).includes(name));
    latencies.push(arrived.at - t0);
    await custom.deleteNamespacedCustomObject({ group: 'security.istio.io', version: 'v1', namespace: appNs, plural: 'authorizationpolicies', name });
    await waitForConfig(client, (c) => !policyNames(c).includes(name));
  }
  console.log(`# API create → proxy: ${latencies.map((l) => l.toFixed(0)).join(', ')} ms`);
});

test('a mesh-wide PeerAuthentication in the root namespace applies to the pod', async () => {
  const client = clients[0];
  await kubectl(['apply', '-f', '-'], `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: ${rootNs}
spec:
  mtls:
    mode: STRICT
`);
  const { config } = await waitForConfig(client, (c) => c.peerAuthentications.some((p) => p.metadata.name === 'default'));
  assert.deepEqual(config.peerAuthentications.map((p) => `${p.metadata.namespace}/${p.metadata.name}`), [`${rootNs}/default`]);
  assert.equal(config.peerAuthentications[0].spec.mtls?.mode, 'STRICT');
});

async function eventsFor(name: string): Promise<CoreV1Event[]> {
  const list = await core.listNamespacedEvent({ namespace: appNs, fieldSelector: `involvedObject.name=${name}` });
  return list.items;
}

test('invalid policies get an InvalidPolicy Event, a log line and a metric; the valid ones are still delivered', async () => {
  const client = clients[0];
  await kubectl(['apply', '-f', '-'], `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bad-action
  namespace: ${appNs}
spec:
  action: DENY
  provider:
    name: my-ext-authz
  rules:
  - {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext-authz
  namespace: ${appNs}
spec:
  action: CUSTOM
  provider:
    name: my-ext-authz
  rules:
  - to:
    - operation:
        paths: ["/ext/*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-sleep
  namespace: ${appNs}
spec:
  rules:
  - from:
    - source:
        principals: ["${TD}/ns/${appNs}/sa/sleep"]
`);
  const { config } = await waitForConfig(client, (c) => policyNames(c).includes('allow-sleep'));
  // The DENY policy naming a provider is refused (its meaning is unclear); CUSTOM stays, failing closed; the valid one is there.
  assert.deepEqual(policyNames(config), ['allow-sleep', 'ext-authz']);

  const deadline = Date.now() + 5000;
  let refused: CoreV1Event[] = [];
  let custom: CoreV1Event[] = [];
  while (Date.now() < deadline) {
    [refused, custom] = await Promise.all([eventsFor('bad-action'), eventsFor('ext-authz')]);
    if (refused.length > 0 && custom.length > 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(refused.length, 1, 'one Event on the refused policy');
  assert.equal(refused[0].reason, 'InvalidPolicy');
  assert.equal(refused[0].type, 'Warning');
  assert.equal(refused[0].involvedObject.kind, 'AuthorizationPolicy');
  assert.ok(refused[0].involvedObject.uid);
  assert.match(refused[0].message ?? '', /must not be set with a non-CUSTOM action/);
  assert.match(refused[0].message ?? '', /not enforced/);
  assert.equal(custom.length, 1);
  assert.equal(custom[0].reason, 'InvalidPolicy');
  assert.match(custom[0].message ?? '', /CUSTOM/);
  assert.equal((await eventsFor('allow-sleep')).length, 0);

  const warned = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === 'warn' && l.policy === `${appNs}/bad-action`);
  assert.ok(warned, 'a warn log line names the policy');
  assert.match(JSON.stringify(warned.errors), /must not be set with a non-CUSTOM action/);
  const metrics = await registry.getSingleMetricAsString('cinch_policy_invalid');
  assert.match(metrics, /cinch_policy_invalid\{kind="AuthorizationPolicy",enforced="false"\} [1-9]/);
  assert.match(metrics, /cinch_policy_invalid\{kind="AuthorizationPolicy",enforced="true"\} [1-9]/);

  // A rebuild (here: a valid policy changes) neither repeats the Event nor the log line.
  const warnsBefore = logLines.filter((l) => l.includes('bad-action')).length;
  await kubectl(['label', 'authorizationpolicy', '-n', appNs, 'allow-sleep', 'touched=yes']);
  await kubectl(['annotate', 'authorizationpolicy', '-n', appNs, 'allow-sleep', 'note=again']);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await eventsFor('bad-action')).length, 1);
  assert.equal(logLines.filter((l) => l.includes('bad-action')).length, warnsBefore);
});

test('a certificate for another ServiceAccount asking for this pod gets 403', async () => {
  const other = await workloadCredentials(spiffe(appNs, 'sleep'));
  const res = await rawGet('httpbin', { key: other.keyPem, cert: other.certChainPem });
  assert.equal(res.status, 403);
  assert.equal(res.body.error.code, 'forbidden');
  // The same identity from another namespace looks in its own namespace: no such pod there.
  const elsewhere = await workloadCredentials(spiffe(rootNs, 'httpbin'));
  assert.equal((await rawGet('httpbin', { key: elsewhere.keyPem, cert: elsewhere.certChainPem })).status, 404);
});

test('no client certificate, an untrusted one, or one outside the trust domain gets 401', async () => {
  const none = await rawGet('httpbin', {});
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, 'unauthenticated');

  const foreign = loadCaMaterial((await createRootCa({ trustDomain: TD })).files);
  const untrusted = await workloadCredentials(spiffe(appNs, 'httpbin'), foreign, new FastLeafSigner(foreign));
  assert.equal((await rawGet('httpbin', { key: untrusted.keyPem, cert: untrusted.certChainPem })).status, 401);

  const otherDomain = await workloadCredentials(`spiffe://example.org/ns/${appNs}/sa/httpbin`);
  const res = await rawGet('httpbin', { key: otherDomain.keyPem, cert: otherDomain.certChainPem });
  assert.equal(res.status, 401);
  assert.match(res.body.error.message, /example\.org/);
});

test('the right certificate gets a 200 NDJSON stream whose first line is the config', async () => {
  const mine = await workloadCredentials(spiffe(appNs, 'httpbin'));
  const res = await rawGet('httpbin', { key: mine.keyPem, cert: mine.certChainPem });
  assert.equal(res.status, 200);
  assert.equal(res.body.type, 'config');
  assert.equal(res.body.config.version, clients[0].current?.version);
});

test('a second meshed pod and a Service selecting it appear in meshedDestinations with its SPIFFE ID', async () => {
  const client = clients[0];
  const ip = `${ipBase}.11`;
  await createRunningPod('sleep', 'sleep', ip, { role: 'client' });
  const svc = await core.createNamespacedService({ namespace: appNs, body: { metadata: { name: 'sleep' }, spec: { selector: { role: 'client' }, ports: [{ port: 80 }] } } });
  const clusterIp = svc.spec?.clusterIP;
  assert.ok(clusterIp);
  const { config } = await waitForConfig(client, (c) => c.meshedDestinations[ip] !== undefined && c.meshedDestinations[clusterIp] !== undefined);
  assert.deepEqual(config.meshedDestinations[ip], { identities: [spiffe(appNs, 'sleep')], workload: { name: 'sleep', namespace: appNs } });
  assert.deepEqual(config.meshedDestinations[clusterIp], { identities: [spiffe(appNs, 'sleep')], workload: { name: 'sleep', namespace: appNs }, service: `sleep.${appNs}.svc.cluster.local` });

  // The sleep pod's own proxy gets its own workload and the valid policies of its namespace.
  const sleepClient = startClient('sleep', await workloadCredentials(spiffe(appNs, 'sleep')));
  const sleepConfig = await waitForConfig(sleepClient, () => true);
  assert.equal(sleepConfig.config.workload.serviceAccount, 'sleep');
  assert.deepEqual(policyNames(sleepConfig.config), ['allow-sleep', 'ext-authz']);

  // Pod deleted: it leaves the destinations, and the Service has no meshed backend left.
  await core.deleteNamespacedPod({ name: 'sleep', namespace: appNs, gracePeriodSeconds: 0 });
  await waitForConfig(client, (c) => c.meshedDestinations[ip] === undefined && c.meshedDestinations[clusterIp] === undefined);
});

test('a label change on the pod is pushed (policies are selected by labels)', async () => {
  const client = clients[0];
  await kubectl(['label', 'pod', '-n', appNs, 'httpbin', 'version=v2']);
  const { config } = await waitForConfig(client, (c) => c.workload.labels.version === 'v2');
  assert.equal(config.workload.labels.app, 'httpbin');
});

test('a new trust bundle is pushed to every stream', async () => {
  const client = clients[0];
  const extra = loadCaMaterial((await createRootCa({ trustDomain: TD })).files).trustBundle[0];
  state.setTrustBundle([...material.trustBundle, extra]);
  const { config } = await waitForConfig(client, (c) => c.trustBundle.length === 2);
  assert.equal(config.trustBundle[1], extra);
  state.setTrustBundle(material.trustBundle);
  await waitForConfig(client, (c) => c.trustBundle.length === 1);
});

test('metrics count the streams and pushes; the server closing ends every stream, the router closing unhooks it', async () => {
  const text = await registry.metrics();
  assert.match(text, /cinch_config_streams [1-9]/);
  assert.match(text, /cinch_config_pushes_total\{reason="update"\} [1-9]/);
  assert.match(text, /cinch_config_push_latency_seconds_count [1-9]/);
  const p50 = /cinch_config_push_latency_seconds_sum ([\d.e-]+)/.exec(text);
  const count = /cinch_config_push_latency_seconds_count (\d+)/.exec(text);
  if (p50 && count) console.log(`# mean change → write latency: ${((Number(p50[1]) / Number(count[1])) * 1000).toFixed(1)} ms over ${count[1]} pushes`);

  for (const c of clients) c.stop();
  const mine = await workloadCredentials(spiffe(appNs, 'httpbin'));
  const ended = new Promise<void>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: `${CONFIG_PATH}?pod=httpbin`, ca: [...material.trustBundle], key: mine.keyPem, cert: mine.certChainPem, agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      res.resume();
      res.on('data', () => serverClosing.abort());
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
  await ended;
  assert.match(await registry.getSingleMetricAsString('cinch_config_streams'), /cinch_config_streams 0/);
  const after = await rawGet('httpbin', { key: mine.keyPem, cert: mine.certChainPem });
  assert.equal(after.status, 503);
  assert.equal(after.body.error.code, 'shutting_down');

  assert.equal(state.listenerCount('changed'), 1);
  routerClosing.abort();
  assert.equal(state.listenerCount('changed'), 0);
});
