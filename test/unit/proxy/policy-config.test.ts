// The pushed config, compiled: the listeners' questions answered by the real policy core.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ProxyConfig } from '../../../src/proxy/config.ts';
import { compileProxyConfig, LiveProxyConfig } from '../../../src/proxy/policy-config.ts';
import type { AuthzRequest } from '../../../src/proxy/types.ts';

const base: ProxyConfig = {
  version: 'v1',
  workload: { namespace: 'foo', name: 'httpbin-1', serviceAccount: 'httpbin', labels: { app: 'httpbin' } },
  trustDomain: 'cluster.local',
  rootNamespace: 'cinch-system',
  trustBundle: [],
  peerAuthentications: [
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'foo', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { mtls: { mode: 'STRICT' } } },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'metrics-open', namespace: 'foo', creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: { selector: { matchLabels: { app: 'httpbin' } }, portLevelMtls: { '9090': { mode: 'DISABLE' } } },
    },
  ],
  authorizationPolicies: [
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-admin', namespace: 'foo' },
      spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] },
    },
  ],
  meshedDestinations: { '10.0.0.7': { identities: ['spiffe://cluster.local/ns/bar/sa/sleep'] } },
};

const request = (path: string, principal?: string): AuthzRequest => ({
  destination: { namespace: 'foo', labels: { app: 'httpbin' }, port: 8000 },
  source: { ip: '10.0.0.7', principal },
  request: { protocol: 'http', method: 'GET', path, host: 'httpbin.foo', headers: {} },
});

test('port modes come from the resolved PeerAuthentication, port-level overrides included', () => {
  const compiled = compileProxyConfig(base);
  assert.equal(compiled.inbound.modeForPort(8000), 'STRICT');
  assert.equal(compiled.inbound.modeForPort(9090), 'DISABLE');
});

test('authorization uses Istio semantics through the policy core and names the policy', () => {
  const compiled = compileProxyConfig(base);
  assert.deepEqual(compiled.inbound.authorize(request('/headers', 'cluster.local/ns/bar/sa/sleep')).allow, true);
  const denied = compiled.inbound.authorize(request('/admin/users', 'cluster.local/ns/bar/sa/sleep'));
  assert.equal(denied.allow, false);
  assert.equal(denied.policy, 'foo/deny-admin');
  const plaintext = compiled.inbound.authorize(request('/headers'));
  assert.equal(plaintext.allow, false, 'plaintext on a STRICT port is refused before any AuthorizationPolicy');
});

test('meshed destinations carry their identities; others pass through', () => {
  const compiled = compileProxyConfig(base);
  assert.deepEqual(compiled.outbound.destinationFor('10.0.0.7', 80), { meshed: true, allowedSpiffeIds: ['spiffe://cluster.local/ns/bar/sa/sleep'], workload: undefined, service: undefined });
  assert.deepEqual(compiled.outbound.destinationFor('93.184.216.34', 443), { meshed: false });
});

test('before the first config the live view fails closed', () => {
  const live = new LiveProxyConfig();
  assert.equal(live.ready, false);
  assert.equal(live.inbound.modeForPort(8000), 'STRICT');
  assert.equal(live.inbound.authorize(request('/headers', 'cluster.local/ns/bar/sa/sleep')).allow, false);
  live.set(compileProxyConfig(base));
  assert.equal(live.ready, true);
  assert.equal(live.inbound.workload.namespace, 'foo');
  assert.equal(live.inbound.authorize(request('/headers', 'cluster.local/ns/bar/sa/sleep')).allow, true);
  live.set(compileProxyConfig({ ...base, version: 'v2', authorizationPolicies: [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'nothing', namespace: 'foo' }, spec: {} }] }));
  assert.equal(live.inbound.authorize(request('/headers', 'cluster.local/ns/bar/sa/sleep')).allow, false, 'spec: {} allows nothing, from the next request on');
});
