// PeerAuthentication resolution: levels, inheritance, oldest-wins ties, port-level modes, and the
// root namespace (where a selector makes a policy ignored).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { modeAndPolicyForPort, modeForPort, resolvePeerAuthentication, selectPeerAuthentications } from '../../../src/policy/peer-authentication.ts';
import type { PeerAuthentication, PolicyOptions, Workload } from '../../../src/policy/types.ts';
import { validatePeerAuthentication } from '../../../src/policy/validate.ts';
import { HTTPBIN, pa } from './support.ts';

const T1 = '2024-01-01T00:00:00Z';
const T2 = '2024-02-01T00:00:00Z';
const T3 = '2024-03-01T00:00:00Z';
const workloadSelector = { matchLabels: { app: 'httpbin' } };

function parse(objects: Record<string, unknown>[]): PeerAuthentication[] {
  return objects.map((o) => {
    const r = validatePeerAuthentication(o);
    assert.ok(r.policy, r.errors.join('\n'));
    return r.policy;
  });
}

interface Row {
  name: string;
  policies: Record<string, unknown>[];
  workload?: Workload;
  options?: PolicyOptions;
  mode: string;
  policy: string | null;
  /** port → expected mode from modeForPort */
  ports?: Record<number, string>;
  ignored?: string[];
}

const mesh = (mode: string, meta: { created?: string; name?: string } = {}): Record<string, unknown> =>
  pa(meta.name ?? 'mesh', { mtls: { mode } }, { ns: 'cinch-system', created: meta.created });
const namespace = (mode: string, meta: { created?: string; name?: string; ns?: string } = {}): Record<string, unknown> =>
  pa(meta.name ?? 'ns', { mtls: { mode } }, { ns: meta.ns ?? 'foo', created: meta.created });
const workload = (spec: Record<string, unknown>, meta: { created?: string; name?: string } = {}): Record<string, unknown> =>
  pa(meta.name ?? 'wl', { selector: workloadSelector, ...spec }, { created: meta.created });

const rows: Row[] = [
  { name: 'nothing: PERMISSIVE by default', policies: [], mode: 'PERMISSIVE', policy: null },
  { name: 'mesh STRICT', policies: [mesh('STRICT')], mode: 'STRICT', policy: 'cinch-system/mesh' },
  { name: 'mesh DISABLE', policies: [mesh('DISABLE')], mode: 'DISABLE', policy: 'cinch-system/mesh' },
  { name: 'mesh UNSET: PERMISSIVE', policies: [mesh('UNSET')], mode: 'PERMISSIVE', policy: null },
  { name: 'mesh without mtls: PERMISSIVE', policies: [pa('mesh', {}, { ns: 'cinch-system' })], mode: 'PERMISSIVE', policy: null },
  { name: 'namespace overrides mesh', policies: [mesh('STRICT'), namespace('PERMISSIVE')], mode: 'PERMISSIVE', policy: 'foo/ns' },
  { name: 'namespace UNSET inherits mesh', policies: [mesh('STRICT'), namespace('UNSET')], mode: 'STRICT', policy: 'cinch-system/mesh' },
  { name: 'namespace without mtls inherits mesh', policies: [mesh('STRICT'), pa('ns', {})], mode: 'STRICT', policy: 'cinch-system/mesh' },
  { name: 'namespace STRICT alone', policies: [namespace('STRICT')], mode: 'STRICT', policy: 'foo/ns' },
  { name: 'workload overrides namespace', policies: [namespace('STRICT'), workload({ mtls: { mode: 'DISABLE' } })], mode: 'DISABLE', policy: 'foo/wl' },
  { name: 'workload overrides mesh', policies: [mesh('DISABLE'), workload({ mtls: { mode: 'STRICT' } })], mode: 'STRICT', policy: 'foo/wl' },
  { name: 'workload UNSET inherits namespace', policies: [namespace('STRICT'), workload({ mtls: { mode: 'UNSET' } })], mode: 'STRICT', policy: 'foo/ns' },
  { name: 'workload UNSET inherits mesh through an UNSET namespace', policies: [mesh('STRICT'), namespace('UNSET'), workload({ mtls: { mode: 'UNSET' } })], mode: 'STRICT', policy: 'cinch-system/mesh' },
  { name: 'workload selector not matching', policies: [namespace('PERMISSIVE'), pa('other', { selector: { matchLabels: { app: 'other' } }, mtls: { mode: 'STRICT' } })], mode: 'PERMISSIVE', policy: 'foo/ns' },
  { name: 'workload selector needs every label', policies: [pa('w', { selector: { matchLabels: { app: 'httpbin', version: 'v2' } }, mtls: { mode: 'STRICT' } })], mode: 'PERMISSIVE', policy: null },
  { name: 'empty matchLabels is namespace-wide', policies: [pa('ns', { selector: { matchLabels: {} }, mtls: { mode: 'STRICT' } })], mode: 'STRICT', policy: 'foo/ns' },
  { name: 'another namespace does not apply', policies: [namespace('STRICT', { ns: 'bar' })], mode: 'PERMISSIVE', policy: null },
  { name: 'root namespace policy with a selector is ignored', policies: [pa('sel', { selector: workloadSelector, mtls: { mode: 'STRICT' } }, { ns: 'cinch-system' })], mode: 'PERMISSIVE', policy: null },
  {
    name: 'root namespace policy with a selector is ignored even for root-namespace workloads',
    policies: [pa('sel', { selector: workloadSelector, mtls: { mode: 'STRICT' } }, { ns: 'cinch-system' })],
    workload: { namespace: 'cinch-system', labels: { app: 'httpbin' } },
    mode: 'PERMISSIVE',
    policy: null,
  },
  {
    name: 'a root-namespace workload gets the mesh policy',
    policies: [mesh('STRICT')],
    workload: { namespace: 'cinch-system', labels: { app: 'cinch' } },
    mode: 'STRICT',
    policy: 'cinch-system/mesh',
  },
  { name: 'root namespace is configurable', policies: [pa('mesh', { mtls: { mode: 'STRICT' } }, { ns: 'istio-system' })], options: { rootNamespace: 'istio-system' }, mode: 'STRICT', policy: 'istio-system/mesh' },
  { name: 'with another root namespace, cinch-system is an ordinary namespace', policies: [mesh('STRICT')], options: { rootNamespace: 'istio-system' }, mode: 'PERMISSIVE', policy: null },
  // ties at one level: the oldest wins, then the name
  { name: 'mesh tie: oldest wins', policies: [mesh('PERMISSIVE', { name: 'b', created: T2 }), mesh('STRICT', { name: 'a', created: T3 }), mesh('DISABLE', { name: 'c', created: T1 })], mode: 'DISABLE', policy: 'cinch-system/c', ignored: ['cinch-system/b', 'cinch-system/a'] },
  { name: 'namespace tie: oldest wins', policies: [namespace('STRICT', { name: 'new', created: T2 }), namespace('DISABLE', { name: 'old', created: T1 })], mode: 'DISABLE', policy: 'foo/old', ignored: ['foo/new'] },
  { name: 'namespace tie: same time, name order', policies: [namespace('STRICT', { name: 'zz', created: T1 }), namespace('DISABLE', { name: 'aa', created: T1 })], mode: 'DISABLE', policy: 'foo/aa', ignored: ['foo/zz'] },
  { name: 'namespace tie: no timestamps, name order', policies: [namespace('STRICT', { name: 'b' }), namespace('PERMISSIVE', { name: 'a' })], mode: 'PERMISSIVE', policy: 'foo/a' },
  { name: 'namespace tie: a stored policy is older than an unsaved one', policies: [namespace('STRICT', { name: 'a' }), namespace('DISABLE', { name: 'b', created: T3 })], mode: 'DISABLE', policy: 'foo/b' },
  { name: 'workload tie: oldest wins', policies: [workload({ mtls: { mode: 'STRICT' } }, { name: 'w2', created: T2 }), workload({ mtls: { mode: 'PERMISSIVE' } }, { name: 'w1', created: T1 })], mode: 'PERMISSIVE', policy: 'foo/w1', ignored: ['foo/w2'] },
  { name: 'workload tie: the older UNSET still wins (and inherits)', policies: [namespace('DISABLE'), workload({ mtls: { mode: 'UNSET' } }, { name: 'w1', created: T1 }), workload({ mtls: { mode: 'STRICT' } }, { name: 'w2', created: T2 })], mode: 'DISABLE', policy: 'foo/ns' },
  // port level
  {
    name: 'port-level overrides the workload mode on that port only',
    policies: [workload({ mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'DISABLE' } } })],
    mode: 'STRICT',
    policy: 'foo/wl',
    ports: { 8080: 'DISABLE', 8000: 'STRICT', 9090: 'STRICT' },
  },
  {
    name: 'port-level UNSET inherits the workload mode',
    policies: [namespace('DISABLE'), workload({ mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'UNSET' }, 9090: { mode: 'PERMISSIVE' } } })],
    mode: 'STRICT',
    policy: 'foo/wl',
    ports: { 8080: 'STRICT', 9090: 'PERMISSIVE' },
  },
  {
    name: 'port-level without a workload mode: the rest inherits the namespace',
    policies: [namespace('STRICT'), workload({ portLevelMtls: { 8080: { mode: 'PERMISSIVE' } } })],
    mode: 'STRICT',
    policy: 'foo/ns',
    ports: { 8080: 'PERMISSIVE', 8000: 'STRICT' },
  },
  {
    name: 'port-level of a losing workload policy is ignored',
    policies: [workload({ mtls: { mode: 'STRICT' } }, { name: 'old', created: T1 }), workload({ portLevelMtls: { 8080: { mode: 'DISABLE' } } }, { name: 'new', created: T2 })],
    mode: 'STRICT',
    policy: 'foo/old',
    ports: { 8080: 'STRICT' },
  },
  {
    name: 'port-level of a workload policy for another workload is ignored',
    policies: [pa('other', { selector: { matchLabels: { app: 'other' } }, portLevelMtls: { 8080: { mode: 'STRICT' } } })],
    mode: 'PERMISSIVE',
    policy: null,
    ports: { 8080: 'PERMISSIVE' },
  },
];

for (const row of rows) {
  test(`PeerAuthentication: ${row.name}`, () => {
    const resolved = resolvePeerAuthentication(parse(row.policies), row.workload ?? HTTPBIN, row.options);
    assert.equal(resolved.mode, row.mode);
    assert.equal(resolved.policy, row.policy);
    for (const [port, mode] of Object.entries(row.ports ?? {})) assert.equal(modeForPort(resolved, Number(port)), mode, `port ${port}`);
    if (row.ignored) assert.deepEqual(resolved.ignored.sort(), [...row.ignored].sort());
  });
}

test('the resolved shape: mode and per-port modes, with the policies behind them', () => {
  const resolved = resolvePeerAuthentication(parse([namespace('STRICT'), workload({ portLevelMtls: { 8080: { mode: 'PERMISSIVE' }, 9090: { mode: 'UNSET' } } })]), HTTPBIN);
  assert.deepEqual(resolved, { mode: 'STRICT', portModes: { 8080: 'PERMISSIVE' }, policy: 'foo/ns', portPolicies: { 8080: 'foo/wl' }, ignored: [] });
  assert.deepEqual(modeAndPolicyForPort(resolved, 8080), { mode: 'PERMISSIVE', policy: 'foo/wl' });
  assert.deepEqual(modeAndPolicyForPort(resolved, 8000), { mode: 'STRICT', policy: 'foo/ns' });
});

test('selectPeerAuthentications keeps what can affect the workload', () => {
  const all = parse([
    mesh('STRICT'),
    pa('mesh-sel', { selector: workloadSelector, mtls: { mode: 'STRICT' } }, { ns: 'cinch-system' }),
    namespace('PERMISSIVE'),
    namespace('PERMISSIVE', { ns: 'bar', name: 'bar-ns' }),
    workload({ mtls: { mode: 'DISABLE' } }),
    pa('other', { selector: { matchLabels: { app: 'other' } } }),
  ]);
  assert.deepEqual(
    selectPeerAuthentications(all, HTTPBIN).map((p) => `${p.metadata.namespace}/${p.metadata.name}`),
    ['cinch-system/mesh', 'foo/ns', 'foo/wl'],
  );
});
