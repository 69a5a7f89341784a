// What the injected pod contains, shape by shape: layout (native vs classic), security contexts,
// env, probes, volumes, annotations, collisions, status handling, escaping.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import {
  CA_ROOT_FILE,
  InjectionError,
  MOUNT_PATH,
  PROXY_ENV,
  TOKEN_FILE,
  escapePointer,
  injectPod,
  type AppProbes,
  type InjectionContext,
} from '../../../src/inject/index.ts';
import { SHAPES, classic, config, native } from './fixtures.ts';

const json = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;
const names = (list?: { name: string }[]) => (list ?? []).map((c) => c.name);
const byName = (list: V1Container[] | undefined, name: string) => list?.find((c) => c.name === name);
const proxyOf = (pod: V1Pod) => byName(pod.spec!.initContainers, 'cinch-proxy') ?? byName(pod.spec!.containers, 'cinch-proxy')!;
const initOf = (pod: V1Pod) => byName(pod.spec!.initContainers, 'cinch-init')!;
const env = (c: V1Container, name: string) => c.env?.find((e) => e.name === name);
const appProbes = (pod: V1Pod) => JSON.parse(env(proxyOf(pod), PROXY_ENV.appProbes)!.value!) as AppProbes;
const withAnnotations = (annotations: Record<string, string>, extra: Partial<V1Pod['spec']> = {}): V1Pod => ({
  metadata: { name: 'p', annotations },
  spec: { containers: [{ name: 'app', image: 'a' }], ...extra },
});

describe('layout', () => {
  test('native: cinch-init, then the proxy with restartPolicy Always, then the app init containers', () => {
    const { pod, native: isNative, status } = injectPod(SHAPES['existing-init-and-volumes'], native);
    assert.equal(isNative, true);
    assert.deepEqual(names(pod.spec!.initContainers), ['cinch-init', 'cinch-proxy', 'migrate', 'fetch-config']);
    assert.deepEqual(names(pod.spec!.containers), ['db']);
    assert.equal(proxyOf(pod).restartPolicy, 'Always');
    assert.deepEqual(status.initContainers, ['cinch-init', 'cinch-proxy']);
    assert.deepEqual(status.containers, []);
  });

  test('classic: app init containers, then cinch-init last; the proxy first among containers', () => {
    const { pod, native: isNative, status } = injectPod(SHAPES['existing-init-and-volumes'], classic);
    assert.equal(isNative, false);
    assert.deepEqual(names(pod.spec!.initContainers), ['migrate', 'fetch-config', 'cinch-init']);
    assert.deepEqual(names(pod.spec!.containers), ['cinch-proxy', 'db']);
    assert.equal(proxyOf(pod).restartPolicy, undefined);
    assert.deepEqual(status.containers, ['cinch-proxy']);
  });

  test('the classic patch inserts rather than rewrites the app containers', () => {
    const { patch } = injectPod(SHAPES['existing-init-and-volumes'], classic);
    const specOps = patch.filter((op) => op.path.startsWith('/spec/'));
    assert.deepEqual(
      specOps.map((op) => `${op.op} ${op.path}`),
      ['add /spec/initContainers/2', 'add /spec/containers/0', 'add /spec/volumes/2', 'add /spec/volumes/3', 'add /spec/volumes/4', 'add /spec/volumes/5'],
    );
  });

  test('missing lists and maps are created whole (add below a missing parent would fail)', () => {
    const { patch } = injectPod(SHAPES.minimal, native);
    assert.deepEqual(
      patch.map((op) => `${op.op} ${op.path}`),
      ['add /metadata/labels', 'add /metadata/annotations', 'add /spec/initContainers', 'add /spec/volumes'],
    );
    assert.deepEqual(
      injectPod(SHAPES['no-metadata'], native).patch.map((op) => `${op.op} ${op.path}`),
      ['add /metadata', 'add /spec/initContainers', 'add /spec/volumes'],
    );
  });

  test('config nativeSidecar true/false wins over what the cluster supports; the annotation wins over both', () => {
    const forced = (mode: 'true' | 'false', supported: boolean): InjectionContext => ({ config: { ...config, nativeSidecar: mode }, nativeSidecarSupported: supported });
    assert.equal(injectPod(SHAPES.minimal, forced('true', false)).native, true);
    assert.equal(injectPod(SHAPES.minimal, forced('false', true)).native, false);
    assert.equal(injectPod(SHAPES['native-annotation-false'], native).native, false);
    assert.equal(injectPod(SHAPES['native-annotation-true'], classic).native, true);
    assert.equal(injectPod(SHAPES['native-annotation-true'], forced('false', false)).native, true);
  });

  test('default-container names the first app container unless already set', () => {
    const classicPod = injectPod(SHAPES['multi-container-every-probe'], classic).pod;
    assert.equal(classicPod.metadata!.annotations!['kubectl.kubernetes.io/default-container'], 'web');
    const set = injectPod(SHAPES['default-container-set'], classic);
    assert.equal(set.pod.metadata!.annotations!['kubectl.kubernetes.io/default-container'], 'second');
    assert.ok(!set.status.annotations.includes('kubectl.kubernetes.io/default-container'));
  });

  test('a Job-like pod in classic mode gets a warning; native does not', () => {
    assert.match(injectPod(SHAPES['job-restart-never'], classic).warnings.join('\n'), /restartPolicy Never.*native/);
    assert.deepEqual(injectPod(SHAPES['job-restart-never'], native).warnings, []);
  });
});

describe('cinch-init', () => {
  test('root with NET_ADMIN and NET_RAW only, even in a runAsNonRoot pod', () => {
    const { pod } = injectPod(SHAPES['non-root-pod'], native);
    assert.deepEqual(initOf(pod).securityContext, {
      runAsUser: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    });
    assert.deepEqual(pod.spec!.securityContext, SHAPES['non-root-pod'].spec!.securityContext, 'pod securityContext untouched');
  });

  test('default capture arguments', () => {
    assert.deepEqual(initOf(injectPod(SHAPES.minimal, native).pod).args, [
      'init',
      '--inbound-ports=*',
      '--exclude-inbound-ports=15020,15021',
      '--include-outbound-cidrs=*',
      '--proxy-uid=1337',
      '--inbound-port=15006',
      '--outbound-port=15001',
    ]);
  });

  test('traffic annotations become flags; 15020/15021 stay excluded exactly once', () => {
    assert.deepEqual(initOf(injectPod(SHAPES['traffic-annotations'], native).pod).args, [
      'init',
      '--inbound-ports=8080,9090',
      '--exclude-inbound-ports=15020,15021,22',
      '--exclude-outbound-ports=5432,6379',
      '--include-outbound-cidrs=10.0.0.0/8,fd00::/8',
      '--exclude-outbound-cidrs=10.96.0.0/12,169.254.169.254/32',
      '--proxy-uid=1337',
      '--inbound-port=15006',
      '--outbound-port=15001',
    ]);
  });

  test('empty include lists mean no capture and stay one argument each', () => {
    const args = initOf(injectPod(SHAPES['no-capture'], native).pod).args!;
    assert.ok(args.includes('--inbound-ports='));
    assert.ok(args.includes('--include-outbound-cidrs='));
  });
});

describe('cinch-proxy', () => {
  test('uid/gid 1337, non-root, read-only root, nothing added', () => {
    assert.deepEqual(proxyOf(injectPod(SHAPES['non-root-pod'], classic).pod).securityContext, {
      runAsUser: 1337,
      runAsGroup: 1337,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      privileged: false,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
  });

  test('environment: downward API, CA, trust domain, log level, app containers', () => {
    const proxy = proxyOf(injectPod(SHAPES['multi-container-every-probe'], native).pod);
    const fieldPath = (name: string) => env(proxy, name)?.valueFrom?.fieldRef?.fieldPath;
    assert.equal(fieldPath('POD_NAME'), 'metadata.name');
    assert.equal(fieldPath('POD_NAMESPACE'), 'metadata.namespace');
    assert.equal(fieldPath('INSTANCE_IP'), 'status.podIP');
    assert.equal(fieldPath('SERVICE_ACCOUNT'), 'spec.serviceAccountName');
    assert.equal(env(proxy, 'CINCH_CA_ADDRESS')?.value, 'cinch.cinch-system.svc:15012');
    assert.equal(env(proxy, 'CINCH_TRUST_DOMAIN')?.value, 'cluster.local');
    assert.equal(env(proxy, 'CINCH_LOG_LEVEL')?.value, 'info');
    assert.equal(env(proxy, 'CINCH_APP_CONTAINERS')?.value, 'web,grpc,worker');
  });

  test('ports, probes on 15021 (startup 1 s x 600), mounts at the exported paths', () => {
    const proxy = proxyOf(injectPod(SHAPES.minimal, native).pod);
    assert.deepEqual(proxy.ports?.map((p) => [p.name, p.containerPort]), [
      ['http-stats', 15020],
      ['http-health', 15021],
    ]);
    assert.deepEqual(proxy.startupProbe?.httpGet, { path: '/healthz/ready', port: 15021, scheme: 'HTTP' });
    assert.equal(proxy.startupProbe?.periodSeconds, 1);
    assert.equal(proxy.startupProbe?.failureThreshold, 600);
    assert.deepEqual(proxy.readinessProbe?.httpGet, { path: '/healthz/ready', port: 15021, scheme: 'HTTP' });
    assert.deepEqual(
      proxy.volumeMounts?.map((m) => [m.name, m.mountPath, m.readOnly ?? false]),
      [
        ['cinch-token', MOUNT_PATH.token, true],
        ['cinch-ca-root', MOUNT_PATH.caRoot, true],
        ['cinch-credentials', MOUNT_PATH.credentials, false],
        ['cinch-podinfo', MOUNT_PATH.podinfo, true],
      ],
    );
    assert.equal(TOKEN_FILE, '/var/run/cinch/token/token');
    assert.equal(CA_ROOT_FILE, '/var/run/cinch/ca-root/root-cert.pem');
  });

  test('resources from config, overridden by annotations; image and log level too', () => {
    assert.deepEqual(proxyOf(injectPod(SHAPES.minimal, native).pod).resources, { limits: { cpu: '2', memory: '1Gi' }, requests: { cpu: '100m', memory: '128Mi' } });
    const { pod } = injectPod(SHAPES['proxy-overrides'], native);
    const proxy = proxyOf(pod);
    assert.deepEqual(proxy.resources, { limits: { cpu: '500m', memory: '0.5Gi' }, requests: { cpu: '250m', memory: '256Mi' } });
    assert.equal(proxy.image, 'registry.example.com/cinch:dev');
    assert.equal(initOf(pod).image, 'registry.example.com/cinch:dev');
    assert.equal(env(proxy, 'CINCH_LOG_LEVEL')?.value, 'debug');
  });

  test('a request above its limit is refused, naming the annotation that caused it', () => {
    assert.throws(() => injectPod(withAnnotations({ 'cinch.dev/proxy-cpu': '3' }), native), {
      name: 'InjectionError',
      code: 'invalid_annotation',
      annotation: 'cinch.dev/proxy-cpu',
      message: /cinch\.dev\/proxy-cpu="3".*cpu request 3 is above the limit 2/,
    });
    assert.throws(() => injectPod(withAnnotations({ 'cinch.dev/proxy-memory-limit': '64Mi' }), native), {
      annotation: 'cinch.dev/proxy-memory-limit',
      message: /memory request 128Mi is above the limit 64Mi/,
    });
  });

  test('only a limit configured: requests default to it, as the API server would', () => {
    const ctx: InjectionContext = { config: { ...config, resources: { requests: {}, limits: { cpu: '1' } } }, nativeSidecarSupported: true };
    assert.deepEqual(proxyOf(injectPod(SHAPES.minimal, ctx).pod).resources, { limits: { cpu: '1' }, requests: { cpu: '1' } });
    const none: InjectionContext = { config: { ...config, resources: { requests: {}, limits: {} } }, nativeSidecarSupported: true };
    assert.deepEqual(proxyOf(injectPod(SHAPES.minimal, none).pod).resources, {});
  });
});

describe('volumes', () => {
  test('projected token (audience cinch-ca, expiry from config), CA root ConfigMap, in-memory credentials, pod info', () => {
    const ctx: InjectionContext = { config: { ...config, tokenExpirationSeconds: 7200 }, nativeSidecarSupported: true };
    const volumes = injectPod(SHAPES['existing-init-and-volumes'], ctx).pod.spec!.volumes!;
    assert.deepEqual(names(volumes), ['data', 'config', 'cinch-token', 'cinch-ca-root', 'cinch-credentials', 'cinch-podinfo']);
    const v = (name: string) => volumes.find((x) => x.name === name)!;
    assert.deepEqual(v('cinch-token').projected!.sources, [{ serviceAccountToken: { audience: 'cinch-ca', expirationSeconds: 7200, path: 'token' } }]);
    assert.equal(v('cinch-ca-root').configMap!.name, 'cinch-ca-root-cert');
    assert.deepEqual(v('cinch-credentials').emptyDir, { medium: 'Memory' });
    assert.deepEqual(
      v('cinch-podinfo').downwardAPI!.items!.map((i) => [i.path, i.fieldRef!.fieldPath]),
      [
        ['labels', 'metadata.labels'],
        ['annotations', 'metadata.annotations'],
      ],
    );
  });
});

describe('probe rewriting', () => {
  test('HTTP (named and numeric), TCP (named) and gRPC probes go to 15020; timing kept; exec untouched', () => {
    const { pod } = injectPod(SHAPES['multi-container-every-probe'], native);
    const [web, grpc, worker] = pod.spec!.containers;
    assert.deepEqual(web.livenessProbe, {
      httpGet: { path: '/app-health/web/livez', port: 15020, scheme: 'HTTP' },
      initialDelaySeconds: 5,
      periodSeconds: 7,
      timeoutSeconds: 2,
      failureThreshold: 5,
    });
    assert.deepEqual(web.readinessProbe, { httpGet: { path: '/app-health/web/readyz', port: 15020, scheme: 'HTTP' } });
    assert.deepEqual(web.startupProbe, { httpGet: { path: '/app-health/web/startupz', port: 15020, scheme: 'HTTP' }, periodSeconds: 1, failureThreshold: 30 });
    assert.deepEqual(grpc.readinessProbe, { httpGet: { path: '/app-health/grpc/readyz', port: 15020, scheme: 'HTTP' }, terminationGracePeriodSeconds: 3 });
    assert.deepEqual(worker.livenessProbe, SHAPES['multi-container-every-probe'].spec!.containers[2].livenessProbe, 'exec probe untouched');
    assert.equal(worker.readinessProbe!.httpGet!.path, '/app-health/worker/readyz');

    assert.deepEqual(appProbes(pod), {
      '/app-health/web/livez': { httpGet: { port: 8080, path: '/live', scheme: 'HTTP' }, timeoutSeconds: 2 },
      '/app-health/web/readyz': { httpGet: { port: 9090, path: '/ready', scheme: 'HTTPS', host: 'localhost', httpHeaders: [{ name: 'X-Probe', value: 'kubelet' }] } },
      '/app-health/web/startupz': { tcpSocket: { port: 9090 } },
      '/app-health/grpc/livez': { grpc: { port: 50051 } },
      '/app-health/grpc/readyz': { grpc: { port: 50051, service: 'health.v1' } },
      '/app-health/worker/readyz': { tcpSocket: { port: 7000, host: '127.0.0.1' } },
    });
  });

  test('rewrite-probes "false" leaves probes alone and sends none to the proxy', () => {
    const { pod, status } = injectPod(SHAPES['rewrite-probes-false'], native);
    assert.deepEqual(pod.spec!.containers[0].livenessProbe, SHAPES['rewrite-probes-false'].spec!.containers[0].livenessProbe);
    assert.deepEqual(appProbes(pod), {});
    assert.deepEqual(status.probes, {});
  });

  test('config rewriteProbes false, overridden by the annotation "true"', () => {
    const ctx: InjectionContext = { config: { ...config, rewriteProbes: false }, nativeSidecarSupported: true };
    assert.deepEqual(appProbes(injectPod(SHAPES['native-annotation-false'], ctx).pod), {});
    const pod = withAnnotations({ 'cinch.dev/rewrite-probes': 'true' });
    pod.spec!.containers[0].readinessProbe = { tcpSocket: { port: 80 } };
    assert.deepEqual(appProbes(injectPod(pod, ctx).pod), { '/app-health/app/readyz': { tcpSocket: { port: 80 } } });
  });

  test('an unresolvable named port is left as it is, with a warning', () => {
    const { pod, warnings } = injectPod(SHAPES['unresolvable-named-port'], native);
    assert.deepEqual(pod.spec!.containers[0].readinessProbe, { httpGet: { port: 'nope', path: '/' } });
    assert.equal(pod.spec!.containers[0].livenessProbe!.httpGet!.path, '/app-health/app/livez');
    assert.match(warnings.join('\n'), /readinessProbe port "nope"/);
  });

  test("the app's own native sidecars are rewritten in native mode only (in classic mode they start before the proxy)", () => {
    const nativePod = injectPod(SHAPES['user-native-sidecar'], native).pod;
    assert.equal(byName(nativePod.spec!.initContainers, 'shipper')!.readinessProbe!.httpGet!.path, '/app-health/shipper/readyz');
    assert.deepEqual(appProbes(nativePod)['/app-health/shipper/readyz'], { httpGet: { port: 9100, path: '/health', scheme: 'HTTP' } });
    const classicPod = injectPod(SHAPES['user-native-sidecar'], classic).pod;
    assert.deepEqual(byName(classicPod.spec!.initContainers, 'shipper')!.readinessProbe, SHAPES['user-native-sidecar'].spec!.initContainers![0].readinessProbe);
  });

  test('re-injection with rewriting switched off restores the original probes', () => {
    const first = injectPod(SHAPES['multi-container-every-probe'], native);
    const off = json(first.pod);
    off.metadata!.annotations!['cinch.dev/rewrite-probes'] = 'false';
    const result = injectPod(off, native);
    assert.deepEqual(result.pod.spec!.containers, SHAPES['multi-container-every-probe'].spec!.containers);
  });
});

describe('annotations and labels', () => {
  test('Prometheus annotations added when the app has none, left alone otherwise', () => {
    assert.deepEqual(
      Object.fromEntries(Object.entries(injectPod(SHAPES.minimal, native).pod.metadata!.annotations!).filter(([k]) => k.startsWith('prometheus.io/'))),
      { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/stats/prometheus' },
    );
    for (const shape of ['own-prometheus-scrape-false', 'own-prometheus-port']) {
      const { pod, status } = injectPod(SHAPES[shape], native);
      const prom = Object.fromEntries(Object.entries(pod.metadata!.annotations!).filter(([k]) => k.startsWith('prometheus.io/')));
      assert.deepEqual(prom, SHAPES[shape].metadata!.annotations);
      assert.ok(!status.annotations.some((k) => k.startsWith('prometheus.io/')));
    }
  });

  test('tls-mode label added; app labels kept', () => {
    const { pod, status } = injectPod(SHAPES['multi-container-every-probe'], native);
    assert.deepEqual(pod.metadata!.labels, { app: 'shop', 'security.cinch.dev/tls-mode': 'cinch' });
    assert.deepEqual(status.labels, ['security.cinch.dev/tls-mode']);
  });

  test('unknown cinch.dev annotations are warned about, not refused', () => {
    const { warnings } = injectPod(withAnnotations({ 'cinch.dev/proxy-cpus': '1', 'traffic.cinch.dev/oops': 'x' }), native);
    assert.deepEqual(warnings, ['unknown annotation cinch.dev/proxy-cpus ignored', 'unknown annotation traffic.cinch.dev/oops ignored']);
  });

  test('a container port the proxy owns is warned about', () => {
    assert.match(injectPod(SHAPES['app-on-proxy-port'], native).warnings.join('\n'), /port 15020 is used by the Cinch proxy/);
  });
});

describe('escaping (RFC 6901)', () => {
  test('escapePointer: ~ before /', () => {
    assert.equal(escapePointer('cinch.dev/status'), 'cinch.dev~1status');
    assert.equal(escapePointer('a~b/c'), 'a~0b~1c');
    assert.equal(escapePointer('~1'), '~01');
    assert.equal(escapePointer('/~'), '~1~0');
  });

  test('keys with / and ~ in existing maps are addressed correctly', () => {
    const pod = SHAPES['keys-with-slash-and-tilde'];
    const { patch } = injectPod(pod, native);
    assert.ok(patch.some((op) => op.path === '/metadata/labels/security.cinch.dev~1tls-mode'));
    assert.ok(patch.some((op) => op.path === '/metadata/annotations/cinch.dev~1status'));
    assert.ok(patch.some((op) => op.path === '/metadata/annotations/kubectl.kubernetes.io~1default-container'));
    // Re-inject after the app changed an annotation whose key needs escaping: only that key's op, escaped.
    const first = injectPod(pod, native).pod;
    const edited = json(first);
    delete edited.metadata!.annotations!['prometheus.io/port'];
    edited.metadata!.annotations!['cinch.dev/status'] = edited.metadata!.annotations!['cinch.dev/status'].replace('"prometheus.io/port",', '');
    const again = injectPod(edited, native);
    assert.deepEqual(
      again.patch.map((op) => `${op.op} ${op.path}`),
      ['add /metadata/annotations/prometheus.io~1port', 'replace /metadata/annotations/cinch.dev~1status'],
    );
    const applied = jsonpatch.applyPatch(json(edited), again.patch, true).newDocument;
    assert.equal(applied.metadata!.annotations!['a~b/c'], undefined);
    assert.equal(applied.metadata!.labels!['a~b/c'], 'x');
  });
});

describe('collisions and status', () => {
  const collision = (spec: Partial<V1Pod['spec']>): V1Pod => ({ metadata: { name: 'c' }, spec: { containers: [{ name: 'app', image: 'a' }], ...spec } });

  test('a user container, init container or volume with a Cinch name is refused, never overwritten', () => {
    const cases: [string, V1Pod, RegExp][] = [
      ['container', collision({ containers: [{ name: 'app', image: 'a' }, { name: 'cinch-proxy', image: 'mine' }] }), /a container named cinch-proxy/],
      ['init container', collision({ initContainers: [{ name: 'cinch-init', image: 'mine' }] }), /an init container named cinch-init/],
      ['proxy name as init', collision({ initContainers: [{ name: 'cinch-proxy', image: 'mine' }] }), /an init container named cinch-proxy/],
      ['volume', collision({ volumes: [{ name: 'cinch-token', emptyDir: {} }] }), /a volume named cinch-token/],
    ];
    for (const [what, pod, message] of cases) {
      assert.throws(() => injectPod(pod, native), (err: unknown) => err instanceof InjectionError && err.code === 'name_collision' && message.test(err.message), what);
    }
  });

  test('Cinch names added by a previous injection (listed in the status) are replaced, not refused', () => {
    const first = injectPod(SHAPES.minimal, native).pod;
    assert.deepEqual(injectPod(first, native).patch, []);
  });

  test('a status that lists a user container is refused instead of deleting it', () => {
    const pod = withAnnotations({ 'cinch.dev/status': JSON.stringify({ version: 1, containers: ['app'] }) });
    assert.throws(() => injectPod(pod, native), { code: 'invalid_status', message: /"app" in containers, which injection never adds/ });
    const annotation = withAnnotations({ 'cinch.dev/status': JSON.stringify({ version: 1, annotations: ['example.com/mine'] }) });
    assert.throws(() => injectPod(annotation, native), { code: 'invalid_status' });
  });

  test('a status that is not JSON is refused', () => {
    assert.throws(() => injectPod(withAnnotations({ 'cinch.dev/status': '{nope' }), native), { code: 'invalid_status', message: /not valid JSON/ });
    assert.throws(() => injectPod(withAnnotations({ 'cinch.dev/status': '[]' }), native), { code: 'invalid_status' });
    const badProbes = withAnnotations({ 'cinch.dev/status': JSON.stringify({ probes: { app: { execProbe: {} } } }) });
    assert.throws(() => injectPod(badProbes, native), { code: 'invalid_status' });
  });

  test('a status whose containers are already gone still strips cleanly', () => {
    const first = json(injectPod(SHAPES.minimal, native).pod);
    first.spec!.initContainers = [];
    const again = injectPod(first, native);
    assert.deepEqual(json(again.pod), json(injectPod(SHAPES.minimal, native).pod));
  });

  test('a pod with only Cinch containers is refused', () => {
    const pod: V1Pod = {
      metadata: { name: 'x', annotations: { 'cinch.dev/status': JSON.stringify({ version: 1, containers: ['cinch-proxy'] }) } },
      spec: { containers: [{ name: 'cinch-proxy', image: 'x' }] },
    };
    assert.throws(() => injectPod(pod, native), { code: 'invalid_pod' });
    assert.throws(() => injectPod({ metadata: {}, spec: { containers: [] } }, native), { code: 'invalid_pod' });
    assert.throws(() => injectPod({ metadata: {} }, native), { code: 'invalid_pod' });
  });
});

describe('managedFields', () => {
  test('never copied, compared or patched: the result shares it by reference', () => {
    const pod = SHAPES['managed-fields'];
    const { pod: injected, patch } = injectPod(pod, native);
    assert.equal(injected.metadata!.managedFields, pod.metadata!.managedFields);
    assert.ok(patch.every((op) => !op.path.includes('managedFields')));
  });
});
