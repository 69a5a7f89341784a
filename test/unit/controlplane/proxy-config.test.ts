// The pure half of the config stream: which policies and destinations a pod's proxy gets, and a
// version that changes exactly when that content does. Also compiled by the proxy's own compiler,
// so the two sides agree on what a pushed config means.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { configLine } from '../../../src/controlplane/config-stream.ts';
import { policyEvent } from '../../../src/controlplane/policy-status.ts';
import {
  buildMeshedDestinations,
  buildProxyConfig,
  buildSnapshot,
  canonicalJson,
  indexPolicies,
  meshPodFromObject,
  meshServiceFromObject,
  workloadName,
  type MeshPod,
  type MeshService,
  type MeshSnapshot,
  type ProxyWorkload,
} from '../../../src/controlplane/proxy-config.ts';
import { compileProxyConfig } from '../../../src/proxy/policy-config.ts';
import type { AuthzRequest } from '../../../src/proxy/types.ts';

const TD = 'cluster.local';
const ROOT = 'cinch-system';
const MESHED = { 'security.cinch.dev/tls-mode': 'cinch' };

function k8sPod(ns: string, name: string, o: { sa?: string; labels?: Record<string, string>; ip?: string; ips?: string[]; phase?: string; hostNetwork?: boolean; owner?: { kind: string; name: string } } = {}): V1Pod {
  return {
    metadata: {
      namespace: ns,
      name,
      uid: `uid-${ns}-${name}`,
      labels: o.labels ?? {},
      ownerReferences: o.owner ? [{ apiVersion: 'apps/v1', kind: o.owner.kind, name: o.owner.name, uid: 'x', controller: true }] : undefined,
    },
    spec: { serviceAccountName: o.sa, hostNetwork: o.hostNetwork, containers: [{ name: 'app' }] },
    status: { phase: o.phase ?? 'Running', podIP: o.ip, podIPs: o.ips?.map((ip) => ({ ip })) },
  };
}

function pod(ns: string, name: string, o: Parameters<typeof k8sPod>[2] = {}): MeshPod {
  const { pod: p } = meshPodFromObject(k8sPod(ns, name, o), TD);
  assert.ok(p);
  return p;
}

function svc(ns: string, name: string, selector: Record<string, string> | undefined, clusterIP = '10.96.0.10'): MeshService {
  const s = meshServiceFromObject({ metadata: { namespace: ns, name }, spec: { selector, clusterIP, clusterIPs: clusterIP === 'None' ? ['None'] : [clusterIP] } });
  assert.ok(s);
  return s;
}

function ap(ns: string, name: string, spec: Record<string, unknown>, extraMeta: Record<string, unknown> = {}) {
  return { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { namespace: ns, name, creationTimestamp: '2026-01-01T00:00:00Z', ...extraMeta }, spec };
}

function pa(ns: string, name: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z') {
  return { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { namespace: ns, name, creationTimestamp: created }, spec };
}

function snapshot(o: { policies?: unknown[]; pods?: MeshPod[]; services?: MeshService[]; bundle?: string[] } = {}): MeshSnapshot {
  return buildSnapshot({
    trustDomain: TD,
    rootNamespace: ROOT,
    trustBundle: o.bundle ?? ['-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n'],
    pods: o.pods ?? [],
    services: o.services ?? [],
    policies: indexPolicies(o.policies ?? [], ROOT).policies,
  });
}

const httpbin: ProxyWorkload = { namespace: 'foo', name: 'httpbin-1', serviceAccount: 'httpbin', labels: { app: 'httpbin', ...MESHED } };
const names = (list: { metadata: { namespace: string; name: string } }[]) => list.map((p) => `${p.metadata.namespace}/${p.metadata.name}`);

test('a pod gets the policies of the root namespace and its own namespace that select it, and no others', () => {
  const s = snapshot({
    policies: [
      ap(ROOT, 'mesh-deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] }),
      ap('foo', 'ns-wide', { rules: [{}] }),
      ap('foo', 'for-httpbin', { selector: { matchLabels: { app: 'httpbin' } }, rules: [{}] }),
      ap('foo', 'for-other', { selector: { matchLabels: { app: 'other' } }, rules: [{}] }),
      ap('bar', 'elsewhere', { rules: [{}] }),
      pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }),
      pa(ROOT, 'root-scoped', { selector: { matchLabels: { app: 'httpbin' } }, mtls: { mode: 'DISABLE' } }), // ignored in the root namespace, as in Istio
      pa('foo', 'ns', { mtls: { mode: 'PERMISSIVE' } }),
      pa('foo', 'workload', { selector: { matchLabels: { app: 'httpbin' } }, portLevelMtls: { '9090': { mode: 'DISABLE' } } }),
      pa('foo', 'other-workload', { selector: { matchLabels: { app: 'other' } }, mtls: { mode: 'DISABLE' } }),
      pa('bar', 'elsewhere', { mtls: { mode: 'DISABLE' } }),
    ],
  });
  const config = buildProxyConfig(s, httpbin);
  assert.deepEqual(names(config.authorizationPolicies).sort(), ['cinch-system/mesh-deny', 'foo/for-httpbin', 'foo/ns-wide']);
  assert.deepEqual(names(config.peerAuthentications).sort(), ['cinch-system/mesh', 'foo/ns', 'foo/workload']);
  assert.equal(config.rootNamespace, ROOT);
  assert.equal(config.trustDomain, TD);
  assert.deepEqual(config.workload, { namespace: 'foo', name: 'httpbin-1', serviceAccount: 'httpbin', labels: httpbin.labels });

  // What the proxy compiles from it is what the full set would give.
  const compiled = compileProxyConfig(config);
  assert.equal(compiled.inbound.modeForPort(8000), 'PERMISSIVE');
  assert.equal(compiled.inbound.modeForPort(9090), 'DISABLE');
  const req = (path: string): AuthzRequest => ({
    destination: { namespace: 'foo', labels: httpbin.labels, port: 8000 },
    source: { ip: '10.0.0.9', principal: 'cluster.local/ns/bar/sa/sleep' },
    request: { protocol: 'http', method: 'GET', path, host: 'httpbin', headers: {} },
  });
  assert.equal(compiled.inbound.authorize(req('/admin/x')).allow, false);
  assert.equal(compiled.inbound.authorize(req('/admin/x')).policy, 'cinch-system/mesh-deny');
  assert.equal(compiled.inbound.authorize(req('/headers')).allow, true);
});

test('a pod in the root namespace gets its policies once', () => {
  const s = snapshot({ policies: [ap(ROOT, 'mesh', { rules: [{}] })] });
  const config = buildProxyConfig(s, { namespace: ROOT, name: 'x', serviceAccount: 'x', labels: {} });
  assert.deepEqual(names(config.authorizationPolicies), ['cinch-system/mesh']);
});

test('invalid policies are left out and reported, the valid ones of the same namespace stay', () => {
  const objects = [
    ap('foo', 'bad-action', { action: 'PERMIT', rules: [{}] }),
    ap('foo', 'jwt', { rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }] }),
    ap('foo', 'custom', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{ to: [{ operation: { paths: ['/x'] } }] }] }),
    ap('foo', 'good', { rules: [{ from: [{ source: { namespaces: ['bar'] } }] }] }),
  ];
  const index = indexPolicies(objects, ROOT);
  const problems = new Map(index.problems.map((p) => [p.ref, p]));
  assert.equal(problems.get('foo/bad-action')?.enforced, false);
  // JWT claims: no request has them in Cinch (no RequestAuthentication), so the rule never matches: a warning, and the
  // policy is delivered as written (the proxy's evaluator reads JWT attributes as absent), never skipped.
  assert.equal(problems.get('foo/jwt')?.enforced, true);
  assert.deepEqual(problems.get('foo/jwt')!.errors, []);
  assert.match(problems.get('foo/jwt')!.warnings.join(), /RequestAuthentication/);
  // CUSTOM is an error that is still enforced: it fails closed.
  assert.equal(problems.get('foo/custom')?.enforced, true);
  assert.equal(problems.has('foo/good'), false);
  const config = buildProxyConfig(snapshot({ policies: objects }), httpbin);
  assert.deepEqual(names(config.authorizationPolicies).sort(), ['foo/custom', 'foo/good', 'foo/jwt']);
  assert.deepEqual(config.authorizationPolicies.find((p) => p.metadata.name === 'jwt')?.spec.rules, [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }]);
});

test('pushed policies carry only what the core reads: no managedFields, no last-applied copy', () => {
  const object = ap(
    'foo',
    'shadow',
    { action: 'DENY', rules: [{}] },
    {
      uid: 'u1',
      resourceVersion: '42',
      generation: 3,
      labels: { team: 'a' },
      annotations: { 'istio.io/dry-run': 'true', 'kubectl.kubernetes.io/last-applied-configuration': '{"huge": true}' },
      managedFields: [{ manager: 'kubectl' }],
    },
  );
  const [pushed] = buildProxyConfig(snapshot({ policies: [object] }), httpbin).authorizationPolicies;
  assert.deepEqual(pushed.metadata, { name: 'shadow', namespace: 'foo', creationTimestamp: '2026-01-01T00:00:00Z', annotations: { 'istio.io/dry-run': 'true' } });
});

test('meshed pods: the tls-mode label, an IP, not finished, not on the host network; identity from the ServiceAccount', () => {
  const running = pod('foo', 'httpbin-6d8f7c9b5-abcde', { sa: 'httpbin', labels: { ...MESHED, 'pod-template-hash': '6d8f7c9b5' }, ip: '10.0.0.5', owner: { kind: 'ReplicaSet', name: 'httpbin-6d8f7c9b5' } });
  assert.equal(running.meshed, true);
  assert.equal(running.spiffeId, 'spiffe://cluster.local/ns/foo/sa/httpbin');
  assert.equal(running.workload, 'httpbin');
  assert.equal(pod('foo', 'plain', { ip: '10.0.0.6' }).meshed, false);
  assert.equal(pod('foo', 'pending', { labels: MESHED }).meshed, false);
  assert.equal(pod('foo', 'done', { labels: MESHED, ip: '10.0.0.7', phase: 'Succeeded' }).meshed, false);
  assert.deepEqual(pod('foo', 'done', { labels: MESHED, ip: '10.0.0.7', phase: 'Failed' }).ips, []);
  assert.equal(pod('foo', 'hostnet', { labels: MESHED, ip: '192.168.1.2', hostNetwork: true }).meshed, false);
  // No serviceAccountName: the pod runs as default.
  assert.equal(pod('foo', 'nosa', { labels: MESHED, ip: '10.0.0.8' }).spiffeId, 'spiffe://cluster.local/ns/foo/sa/default');
  assert.equal(workloadName(k8sPod('foo', 'db-0', { owner: { kind: 'StatefulSet', name: 'db' } })), 'db');
  assert.equal(workloadName(k8sPod('foo', 'bare')), 'bare');
});

test('meshed destinations: pod IPs (dual stack too) and the ClusterIPs of services whose pods are all meshed', () => {
  const pods = [
    pod('foo', 'httpbin-1', { sa: 'httpbin', labels: { app: 'httpbin', ...MESHED }, ips: ['10.0.0.5', 'fd00::5'] }),
    pod('foo', 'httpbin-2', { sa: 'httpbin-v2', labels: { app: 'httpbin', ...MESHED }, ip: '10.0.0.6' }),
    pod('foo', 'web-1', { sa: 'web', labels: { app: 'web', ...MESHED }, ip: '10.0.0.7' }),
    pod('foo', 'web-legacy', { sa: 'web', labels: { app: 'web' }, ip: '10.0.0.8' }),
    pod('bar', 'sleep', { sa: 'sleep', labels: { app: 'sleep' }, ip: '10.0.1.2' }),
  ];
  const services = [
    svc('foo', 'httpbin', { app: 'httpbin' }, '10.96.0.10'),
    svc('foo', 'web', { app: 'web' }, '10.96.0.11'), // mixed: one backend without the proxy
    svc('foo', 'headless', { app: 'httpbin' }, 'None'),
    svc('foo', 'manual', undefined, '10.96.0.12'),
    svc('bar', 'httpbin', { app: 'httpbin' }, '10.96.0.13'), // other namespace: selects nothing
  ];
  const dest = buildMeshedDestinations(pods, services);
  assert.deepEqual(Object.keys(dest), ['10.0.0.5', '10.0.0.6', '10.0.0.7', '10.96.0.10', 'fd00::5']);
  assert.deepEqual(dest['10.0.0.5'], { identities: ['spiffe://cluster.local/ns/foo/sa/httpbin'], workload: { name: 'httpbin-1', namespace: 'foo' } });
  assert.deepEqual(dest['fd00::5'].identities, ['spiffe://cluster.local/ns/foo/sa/httpbin']);
  assert.deepEqual(dest['10.96.0.10'], {
    identities: ['spiffe://cluster.local/ns/foo/sa/httpbin', 'spiffe://cluster.local/ns/foo/sa/httpbin-v2'],
    workload: { namespace: 'foo' },
    service: 'httpbin.foo.svc.cluster.local',
  });
  // Every proxy gets the same map.
  const s = snapshot({ pods, services });
  assert.equal(buildProxyConfig(s, httpbin).meshedDestinations, s.meshedDestinations);
});

test('two pods on one IP (one replacing the other): either identity is accepted there', () => {
  const dest = buildMeshedDestinations(
    [pod('foo', 'old', { sa: 'b', labels: MESHED, ip: '10.0.0.5' }), pod('foo', 'new', { sa: 'a', labels: MESHED, ip: '10.0.0.5' })],
    [],
  );
  assert.deepEqual(dest['10.0.0.5'].identities, ['spiffe://cluster.local/ns/foo/sa/a', 'spiffe://cluster.local/ns/foo/sa/b']);
});

test('the version is stable for equal content, whatever the key order or object identity', () => {
  const policies = [ap('foo', 'a', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/x'], methods: ['GET'] } }] }] })];
  const reordered = [{ spec: { rules: [{ to: [{ operation: { methods: ['GET'], paths: ['/x'] } }] }], action: 'DENY' }, metadata: { creationTimestamp: '2026-01-01T00:00:00Z', name: 'a', namespace: 'foo' }, kind: 'AuthorizationPolicy', apiVersion: 'security.istio.io/v1' }];
  const pods = [pod('foo', 'httpbin-1', { sa: 'httpbin', labels: { app: 'httpbin', ...MESHED }, ip: '10.0.0.5' })];
  const v1 = buildProxyConfig(snapshot({ policies, pods }), httpbin).version;
  const v2 = buildProxyConfig(snapshot({ policies: reordered, pods: [...pods] }), { ...httpbin, labels: { ...MESHED, app: 'httpbin' } }).version;
  assert.equal(v1, v2);
  assert.match(v1, /^[0-9a-f]{16}$/);
  // Metadata the proxy never sees does not make a new version either.
  const touched = [ap('foo', 'a', policies[0].spec, { resourceVersion: '99', annotations: { note: 'edited' } })];
  assert.equal(buildProxyConfig(snapshot({ policies: touched, pods }), httpbin).version, v1);
});

test('the version changes with the pod\'s policies, labels, trust bundle and meshed destinations, and not with other namespaces', () => {
  const policies = [ap('foo', 'a', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/x'] } }] }] })];
  const pods = [pod('foo', 'httpbin-1', { sa: 'httpbin', labels: { app: 'httpbin', ...MESHED }, ip: '10.0.0.5' })];
  const base = buildProxyConfig(snapshot({ policies, pods }), httpbin).version;
  const changed = (o: Parameters<typeof snapshot>[0], workload = httpbin) => buildProxyConfig(snapshot({ policies, pods, ...o }), workload).version;

  assert.notEqual(changed({ policies: [ap('foo', 'a', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/y'] } }] }] })] }), base);
  assert.notEqual(changed({ policies: [...policies, ap(ROOT, 'mesh', { rules: [{}] })] }), base);
  assert.notEqual(changed({ policies: [...policies, pa('foo', 'strict', { mtls: { mode: 'STRICT' } })] }), base);
  assert.notEqual(changed({ bundle: ['another root'] }), base);
  assert.notEqual(changed({ pods: [...pods, pod('bar', 'sleep', { sa: 'sleep', labels: MESHED, ip: '10.0.1.2' })] }), base);
  assert.notEqual(changed({}, { ...httpbin, labels: { ...httpbin.labels, version: 'v2' } }), base);

  // Not this pod's business: another namespace, or a workload the selector does not pick.
  assert.equal(changed({ policies: [...policies, ap('bar', 'b', { rules: [{}] })] }), base);
  assert.equal(changed({ policies: [...policies, ap('foo', 'other', { selector: { matchLabels: { app: 'other' } }, rules: [{}] })] }), base);
  // Unmeshed pods are not destinations.
  assert.equal(changed({ pods: [...pods, pod('bar', 'plain', { ip: '10.0.1.3' })] }), base);
});

test('a config line is one NDJSON message equal to the config, with the shared destinations serialized once', () => {
  const pods = [pod('foo', 'httpbin-1', { sa: 'httpbin', labels: { app: 'httpbin', ...MESHED }, ip: '10.0.0.5' })];
  const s = snapshot({ pods, policies: [ap('foo', 'a', { rules: [{}] })] });
  const config = buildProxyConfig(s, httpbin);
  const line = configLine(config);
  assert.ok(line.endsWith('}\n'));
  assert.equal(line.indexOf('\n'), line.length - 1);
  assert.deepEqual(JSON.parse(line), { type: 'config', config: JSON.parse(JSON.stringify(config)) });
  const other = configLine(buildProxyConfig(s, { ...httpbin, name: 'httpbin-2' }));
  assert.deepEqual(JSON.parse(other).config.meshedDestinations, config.meshedDestinations);
});

test('canonical JSON sorts keys at every level and drops undefined ones', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: undefined }], c: null } }), '{"a":{"c":null,"d":[2,{"f":1}]},"b":1}');
});

test('policy Events: one deterministic name per object, generation and messages; reason InvalidPolicy for errors', () => {
  const object = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', namespace: 'foo', name: 'custom', uid: 'u1', resourceVersion: '5', generation: 1 };
  const [problem] = indexPolicies([ap('foo', 'custom', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] })], ROOT).problems;
  const a = policyEvent(problem, object, 'replica-a');
  const b = policyEvent(problem, object, 'replica-b');
  assert.equal(a.metadata.name, b.metadata.name, 'every replica creates the same Event, so only one lands');
  assert.match(a.metadata.name!, /^custom\.[0-9a-f]{16}$/);
  assert.equal(a.reason, 'InvalidPolicy');
  assert.equal(a.type, 'Warning');
  assert.deepEqual(a.involvedObject, { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', namespace: 'foo', name: 'custom', uid: 'u1', resourceVersion: '5' });
  assert.match(a.message!, /CUSTOM/);
  assert.match(a.message!, /denies what the policy matches/);
  assert.notEqual(policyEvent(problem, { ...object, generation: 2 }, 'replica-a').metadata.name, a.metadata.name);

  const [warning] = indexPolicies([pa(ROOT, 'scoped', { selector: { matchLabels: { app: 'x' } }, mtls: { mode: 'STRICT' } })], ROOT).problems;
  assert.equal(policyEvent(warning, { ...object, kind: 'PeerAuthentication', name: 'scoped' }, 'r').reason, 'PolicyWarning');
});

test('a destination whose PeerAuthentication is DISABLE is marked plaintext, per workload and per port', () => {
  const server = pod('foo', 'httpbin-1', { sa: 'httpbin', labels: { app: 'httpbin', ...MESHED }, ip: '10.0.0.5' });
  const other = pod('bar', 'sleep-1', { sa: 'sleep', labels: { app: 'sleep', ...MESHED }, ip: '10.0.0.6' });
  const disabled = snapshot({ pods: [server, other], policies: [pa('foo', 'off', { mtls: { mode: 'DISABLE' } })] });
  assert.deepEqual(disabled.meshedDestinations['10.0.0.5'].mtls, { disabled: true });
  assert.equal(disabled.meshedDestinations['10.0.0.6'].mtls, undefined, 'other namespaces keep mTLS');

  const portOpen = snapshot({
    pods: [server],
    policies: [pa('foo', 'metrics', { selector: { matchLabels: { app: 'httpbin' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '9090': { mode: 'DISABLE' } } })],
  });
  assert.deepEqual(portOpen.meshedDestinations['10.0.0.5'].mtls, { disabled: false, exceptPorts: [9090] });

  const meshWide = snapshot({ pods: [server], policies: [pa(ROOT, 'default', { mtls: { mode: 'DISABLE' } }), pa('foo', 'strict', { mtls: { mode: 'STRICT' } })] });
  assert.equal(meshWide.meshedDestinations['10.0.0.5'].mtls, undefined, 'a namespace STRICT overrides a mesh-wide DISABLE');

  // The client's compiled view: plaintext to the disabled port only.
  const client = buildProxyConfig(portOpen, { namespace: 'bar', name: 'sleep-1', serviceAccount: 'sleep', labels: { app: 'sleep', ...MESHED } });
  const outbound = compileProxyConfig(client).outbound;
  assert.equal(outbound.destinationFor('10.0.0.5', 9090).meshed, false);
  assert.equal(outbound.destinationFor('10.0.0.5', 8000).meshed, true);
});
