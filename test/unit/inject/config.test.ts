// The injection ConfigMap parser: defaults, a full config, and a precise error for each bad field.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_INJECTION_CONFIG, InjectionConfigError, parseInjectionConfig } from '../../../src/inject/index.ts';

const parse = (yaml: string) => parseInjectionConfig({ 'config.yaml': yaml });

test('an empty config.yaml gives the defaults', () => {
  assert.deepEqual(parse(''), DEFAULT_INJECTION_CONFIG);
  assert.equal(DEFAULT_INJECTION_CONFIG.caAddress, 'cinch.cinch-system.svc:15012');
  assert.equal(DEFAULT_INJECTION_CONFIG.trustDomain, 'cluster.local');
  assert.equal(DEFAULT_INJECTION_CONFIG.nativeSidecar, 'auto');
});

test('the parsed defaults are a fresh object (the caller may keep and compare it)', () => {
  const a = parse('');
  a.resources.requests.cpu = '1';
  assert.equal(DEFAULT_INJECTION_CONFIG.resources.requests.cpu, '100m');
});

test('every field', () => {
  const config = parse(`
proxyImage: registry.example.com/cinch@sha256:0123
imagePullPolicy: Always
resources:
  requests: { cpu: 50m, memory: 64Mi }
  limits: { cpu: 1, memory: 512Mi }
caAddress: cinch.mesh.svc:15012
trustDomain: example.org
nativeSidecar: true
tokenExpirationSeconds: 600
logLevel: debug
rewriteProbes: false
`);
  assert.deepEqual(config, {
    proxyImage: 'registry.example.com/cinch@sha256:0123',
    imagePullPolicy: 'Always',
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '512Mi' } },
    caAddress: 'cinch.mesh.svc:15012',
    trustDomain: 'example.org',
    nativeSidecar: 'true',
    tokenExpirationSeconds: 600,
    logLevel: 'debug',
    rewriteProbes: false,
  });
});

test('partial resources replace the default resources whole', () => {
  assert.deepEqual(parse('resources: { limits: { memory: 256Mi } }').resources, { requests: {}, limits: { memory: '256Mi' } });
});

test('IPv6 CA address and nativeSidecar as a string', () => {
  const config = parse('caAddress: "[fd00::1]:15012"\nnativeSidecar: "false"');
  assert.equal(config.caAddress, '[fd00::1]:15012');
  assert.equal(config.nativeSidecar, 'false');
});

const INVALID: [string, string | undefined, string, RegExp][] = [
  ['missing key', undefined, 'config.yaml', /missing key/],
  ['invalid YAML', 'proxyImage: [', 'config.yaml', /invalid YAML/],
  ['not a mapping', '- a', 'config.yaml', /expected a mapping/],
  ['unknown field', 'proxyimage: x', 'proxyimage', /unknown field/],
  ['image with a space', 'proxyImage: "a b"', 'proxyImage', /image/],
  ['image not a string', 'proxyImage: 3', 'proxyImage', /expected a string/],
  ['pull policy', 'imagePullPolicy: Sometimes', 'imagePullPolicy', /"Sometimes" is not one of Always, IfNotPresent, Never/],
  ['bad quantity', 'resources: { requests: { cpu: lots } }', 'resources.requests.cpu', /not a Kubernetes quantity/],
  ['negative quantity', 'resources: { limits: { memory: -1Gi } }', 'resources.limits.memory', /quantity/],
  ['unknown resource', 'resources: { limits: { gpu: 1 } }', 'resources.limits.gpu', /unknown resource/],
  ['unknown resources key', 'resources: { maximum: {} }', 'resources.maximum', /unknown field/],
  ['request above limit', 'resources: { requests: { memory: 2Gi }, limits: { memory: 1Gi } }', 'resources.requests.memory', /above the limit/],
  ['CA address without port', 'caAddress: cinch.cinch-system.svc', 'caAddress', /host:port/],
  ['CA address port 0', 'caAddress: cinch:0', 'caAddress', /host:port/],
  ['trust domain with uppercase', 'trustDomain: Cluster.Local', 'trustDomain', /SPIFFE trust domain/],
  ['trust domain with a path', 'trustDomain: a/b', 'trustDomain', /SPIFFE trust domain/],
  ['native sidecar mode', 'nativeSidecar: maybe', 'nativeSidecar', /one of auto, true, false/],
  ['token expiry too short', 'tokenExpirationSeconds: 599', 'tokenExpirationSeconds', /at least 600/],
  ['token expiry not whole', 'tokenExpirationSeconds: 700.5', 'tokenExpirationSeconds', /whole number/],
  ['token expiry as a string', 'tokenExpirationSeconds: "3600"', 'tokenExpirationSeconds', /whole number/],
  ['log level', 'logLevel: verbose', 'logLevel', /error, warn, info, debug/],
  ['rewriteProbes as a string', 'rewriteProbes: "yes"', 'rewriteProbes', /true or false/],
];

for (const [name, yaml, field, message] of INVALID) {
  test(`invalid config: ${name} → error on ${field}`, () => {
    assert.throws(
      () => parseInjectionConfig(yaml === undefined ? {} : { 'config.yaml': yaml }),
      (err: unknown) => err instanceof InjectionConfigError && err.field === field && message.test(err.message) && err.message.startsWith(`injection config: ${field}: `),
    );
  });
}
