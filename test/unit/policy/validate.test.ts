// Validation: each refusal names the field, invalid objects are skipped without affecting valid
// ones, and warnings never stop a policy from being enforced.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildPolicySet, validateAuthorizationPolicy, validatePeerAuthentication } from '../../../src/policy/validate.ts';
import { compileWorkloadPolicy } from '../../../src/policy/workload.ts';
import { ap, HTTPBIN, http, pa } from './support.ts';

interface Row {
  name: string;
  object: Record<string, unknown>;
  /** Every expected message must appear among the errors (exact string, or a pattern). */
  errors: (string | RegExp)[];
  /** Still enforced as a whole despite errors (CUSTOM only; rules with errors are left out of an enforced policy). */
  enforced?: boolean;
}

const rule = (r: Record<string, unknown>): Record<string, unknown> => ({ rules: [r] });
const source = (s: Record<string, unknown>): Record<string, unknown> => rule({ from: [{ source: s }] });
const operation = (o: Record<string, unknown>): Record<string, unknown> => rule({ to: [{ operation: o }] });
const cond = (c: Record<string, unknown>): Record<string, unknown> => rule({ when: [c] });

const authorizationRows: Row[] = [
  { name: 'unknown action', object: ap('x', { action: 'PERMIT' }), errors: ['spec.action: unknown action string "PERMIT": expected one of ALLOW, DENY, AUDIT (CUSTOM is not supported)'] },
  { name: 'lowercase action', object: ap('x', { action: 'allow' }), errors: [/^spec\.action: unknown action/] },
  { name: 'CUSTOM is refused with a clear message, and fails closed', object: ap('x', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] }), errors: ['spec.action: CUSTOM requires an extension provider; Cinch has none; requests it matches are denied (fail closed)'], enforced: true },
  { name: 'provider without CUSTOM', object: ap('x', { action: 'DENY', provider: { name: 'opa' }, rules: [{}] }), errors: ['spec.provider: must not be set with a non-CUSTOM action (DENY)'] },
  { name: 'selector and targetRefs', object: ap('x', { selector: { matchLabels: { app: 'a' } }, targetRefs: [{ kind: 'Gateway', name: 'gw' }] }), errors: ['spec: selector and targetRefs are mutually exclusive: set only one of selector, targetRef, targetRefs'] },
  { name: 'targetRef and targetRefs', object: ap('x', { targetRef: { kind: 'Gateway', name: 'gw' }, targetRefs: [{ kind: 'Gateway', name: 'gw' }] }), errors: [/^spec: targetRef and targetRefs are mutually exclusive/] },
  { name: 'targetRefs item without kind', object: ap('x', { targetRefs: [{ name: 'gw' }] }), errors: ['spec.targetRefs[0].kind: is required'] },
  { name: 'targetRefs across namespaces', object: ap('x', { targetRefs: [{ kind: 'Gateway', name: 'gw', namespace: 'other' }] }), errors: ['spec.targetRefs[0].namespace: cross-namespace references are not supported'] },
  { name: 'port 0', object: ap('x', operation({ ports: ['0'] })), errors: ['spec.rules[0].to[0].operation.ports[0]: bad port "0": expected a number 1-65535'] },
  { name: 'port 65536', object: ap('x', operation({ ports: ['80', '65536'] })), errors: ['spec.rules[0].to[0].operation.ports[1]: bad port "65536": expected a number 1-65535'] },
  { name: 'port not a number', object: ap('x', operation({ ports: ['http'] })), errors: [/operation\.ports\[0\]: bad port "http"/] },
  { name: 'port as a YAML number', object: ap('x', operation({ ports: [8000] })), errors: ['spec.rules[0].to[0].operation.ports[0]: must be a string, got number 8000 (quote it)'] },
  { name: 'notPorts bad', object: ap('x', operation({ notPorts: ['-1'] })), errors: [/operation\.notPorts\[0\]: bad port "-1"/] },
  { name: 'ports as a single string', object: ap('x', operation({ ports: '8000' })), errors: ['spec.rules[0].to[0].operation.ports: must be a list of strings'] },
  { name: 'bad CIDR in ipBlocks', object: ap('x', source({ ipBlocks: ['10.0.0.0/33'] })), errors: ['spec.rules[0].from[0].source.ipBlocks[0]: bad prefix length "/33": expected 0-32'] },
  { name: 'bad address in ipBlocks', object: ap('x', source({ ipBlocks: ['10.0.0.256'] })), errors: [/source\.ipBlocks\[0\]: bad IP address "10\.0\.0\.256": 256 is larger than 255/] },
  { name: 'hostname in ipBlocks', object: ap('x', source({ ipBlocks: ['example.com'] })), errors: [/source\.ipBlocks\[0\]: bad IP address "example\.com"/] },
  { name: 'leading zero in ipBlocks', object: ap('x', source({ ipBlocks: ['10.0.0.07'] })), errors: [/source\.ipBlocks\[0\]: .*leading zero/] },
  { name: 'bad CIDR in notIpBlocks', object: ap('x', source({ notIpBlocks: ['10.0.0/8'] })), errors: [/source\.notIpBlocks\[0\]: bad IP address "10\.0\.0"/] },
  { name: 'bad CIDR in remoteIpBlocks', object: ap('x', source({ remoteIpBlocks: ['fd00::/129'] })), errors: ['spec.rules[0].from[0].source.remoteIpBlocks[0]: bad prefix length "/129": expected 0-128'] },
  { name: 'bad IPv6 in notRemoteIpBlocks', object: ap('x', source({ notRemoteIpBlocks: ['fd00:::1'] })), errors: [/source\.notRemoteIpBlocks\[0\]: bad IP address "fd00:::1"/] },
  { name: 'bad source.ip value', object: ap('x', cond({ key: 'source.ip', values: ['10.0.0.1/40'] })), errors: ['spec.rules[0].when[0].values[0]: bad prefix length "/40": expected 0-32'] },
  { name: 'bad remote.ip notValue', object: ap('x', cond({ key: 'remote.ip', notValues: ['nope'] })), errors: [/when\[0\]\.notValues\[0\]: bad IP address "nope"/] },
  { name: 'bad destination.ip value', object: ap('x', cond({ key: 'destination.ip', values: ['1.2.3'] })), errors: [/when\[0\]\.values\[0\]: bad IP address "1\.2\.3"/] },
  { name: 'bad destination.port value', object: ap('x', cond({ key: 'destination.port', values: ['70000'] })), errors: ['spec.rules[0].when[0].values[0]: bad port "70000": expected a number 0-65535'] },
  { name: 'unknown when key', object: ap('x', cond({ key: 'source.user', values: ['x'] })), errors: [/^spec\.rules\[0\]\.when\[0\]\.key: unknown attribute "source\.user"/] },
  { name: 'destination.labels is replaced by the selector', object: ap('x', cond({ key: 'destination.labels[app]', values: ['x'] })), errors: ['spec.rules[0].when[0].key: attribute destination.labels[app] is replaced by the workload selector'] },
  { name: 'destination.namespace is replaced by metadata.namespace', object: ap('x', cond({ key: 'destination.namespace', values: ['x'] })), errors: ['spec.rules[0].when[0].key: attribute destination.namespace is replaced by metadata.namespace'] },
  { name: 'destination.user is v1alpha1 only', object: ap('x', cond({ key: 'destination.user', values: ['x'] })), errors: [/deprecated attribute destination\.user/] },
  { name: 'experimental keys are not supported', object: ap('x', cond({ key: 'experimental.envoy.filters.a.b[c]', values: ['x'] })), errors: [/experimental Envoy attributes are not supported/] },
  { name: 'request.headers without a name', object: ap('x', cond({ key: 'request.headers', values: ['x'] })), errors: [/when\[0\]\.key: bad key "request\.headers": expected request\.headers\[<header-name>\]/] },
  { name: 'request.headers with empty brackets', object: ap('x', cond({ key: 'request.headers[]', values: ['x'] })), errors: [/bad key "request\.headers\[\]"/] },
  { name: 'when without key', object: ap('x', cond({ values: ['x'] })), errors: ['spec.rules[0].when[0].key: must not be empty'] },
  { name: 'when without values or notValues', object: ap('x', cond({ key: 'source.ip' })), errors: ['spec.rules[0].when[0]: at least one of values or notValues must be set for key source.ip'] },
  { name: 'when with empty values and notValues', object: ap('x', cond({ key: 'source.ip', values: [], notValues: [] })), errors: ['spec.rules[0].when[0]: at least one of values or notValues must be set for key source.ip'] },
  { name: 'empty string in values', object: ap('x', cond({ key: 'source.namespace', values: ['a', ''] })), errors: ['spec.rules[0].when[0].values[1]: empty value not allowed'] },
  { name: 'empty string in principals', object: ap('x', source({ principals: ['a', ''] })), errors: ['spec.rules[0].from[0].source.principals[1]: empty value not allowed'] },
  { name: 'empty string in methods', object: ap('x', operation({ methods: [''] })), errors: ['spec.rules[0].to[0].operation.methods[0]: empty value not allowed'] },
  { name: 'non-string in namespaces', object: ap('x', source({ namespaces: [true] })), errors: ['spec.rules[0].from[0].source.namespaces[0]: must be a string, got boolean true'] },
  { name: 'serviceAccounts with principals', object: ap('x', source({ serviceAccounts: ['bar/sleep'], principals: ['x'] })), errors: ['spec.rules[0].from[0].source: serviceAccounts and notServiceAccounts cannot be combined with principals or namespaces'] },
  { name: 'notServiceAccounts with namespaces', object: ap('x', source({ notServiceAccounts: ['bar/sleep'], namespaces: ['bar'] })), errors: [/source: serviceAccounts and notServiceAccounts cannot be combined/] },
  { name: 'serviceAccounts wildcard', object: ap('x', source({ serviceAccounts: ['bar/*'] })), errors: ['spec.rules[0].from[0].source.serviceAccounts[0]: wildcards are not allowed in service accounts'] },
  { name: 'serviceAccounts with two slashes', object: ap('x', source({ serviceAccounts: ['a/b/c'] })), errors: [/serviceAccounts\[0\]: "a\/b\/c" must be "<namespace>\/<serviceaccount>"/] },
  { name: 'source.serviceAccount bad value', object: ap('x', cond({ key: 'source.serviceAccount', values: ['/sa'] })), errors: [/when\[0\]\.values\[0\]: "\/sa" must be/] },
  { name: 'empty from', object: ap('x', rule({ from: [] })), errors: ['spec.rules[0].from: must not be empty when set (omit it to match any)'] },
  { name: 'empty to', object: ap('x', rule({ to: [] })), errors: ['spec.rules[0].to: must not be empty when set (omit it to match any)'] },
  { name: 'from without source', object: ap('x', rule({ from: [{}] })), errors: ['spec.rules[0].from[0].source: must be set (an object)'] },
  { name: 'empty source', object: ap('x', source({})), errors: [/^spec\.rules\[0\]\.from\[0\]\.source: must not be empty/] },
  { name: 'empty operation', object: ap('x', operation({})), errors: [/^spec\.rules\[0\]\.to\[0\]\.operation: must not be empty/] },
  { name: 'unknown field in source (a typo)', object: ap('x', source({ principal: ['x'] })), errors: [/^spec\.rules\[0\]\.from\[0\]\.source\.principal: unknown field/] },
  { name: 'unknown field in operation', object: ap('x', operation({ method: ['GET'] })), errors: [/^spec\.rules\[0\]\.to\[0\]\.operation\.method: unknown field/] },
  { name: 'unknown field in a rule', object: ap('x', rule({ form: [] })), errors: [/^spec\.rules\[0\]\.form: unknown field/] },
  { name: 'unknown field in spec', object: ap('x', { rule: [] }), errors: [/^spec\.rule: unknown field \(expected one of: selector, targetRef, targetRefs, action, provider, rules\)/] },
  { name: 'unknown field in when', object: ap('x', cond({ key: 'source.ip', value: ['1.1.1.1'] })), errors: [/when\[0\]\.value: unknown field/] },
  { name: 'rules not a list', object: ap('x', { rules: {} }), errors: ['spec.rules: must be a list of rules'] },
  { name: 'rule not an object', object: ap('x', { rules: ['x'] }), errors: ['spec.rules[0]: must be an object ({} matches every request)'] },
  { name: 'unsupported path template: named variable', object: ap('x', operation({ paths: ['/users/{id}/{*}'] })), errors: [/operation\.paths\[0\]: only "\{\*\}" and "\{\*\*\}" are supported/] },
  { name: 'unsupported path template: {**} not last', object: ap('x', operation({ paths: ['/{**}/x/{*}'] })), errors: ['spec.rules[0].to[0].operation.paths[0]: "{**}" must be the last operator of a path template'] },
  { name: 'unsupported path template: partial segment', object: ap('x', operation({ notPaths: ['/a{*}'] })), errors: [/operation\.notPaths\[0\]: "\{\*\}" must be a whole path segment/] },
  { name: 'unsupported path template: mixed with *', object: ap('x', operation({ paths: ['/{*}/x*'] })), errors: [/only "\{\*\}" and "\{\*\*\}" are supported/] },
  { name: 'selector with a wildcard value', object: ap('x', { selector: { matchLabels: { app: 'http*' } } }), errors: ['spec.selector.matchLabels.app: wildcards are not allowed in label values'] },
  { name: 'selector with a wildcard key', object: ap('x', { selector: { matchLabels: { 'a*': 'b' } } }), errors: ['spec.selector.matchLabels: wildcards are not allowed in label keys'] },
  { name: 'selector with a number value', object: ap('x', { selector: { matchLabels: { version: 1 } } }), errors: ['spec.selector.matchLabels.version: must be a string, got number 1 (quote it)'] },
  { name: 'selector with a bad key', object: ap('x', { selector: { matchLabels: { 'bad key': 'x' } } }), errors: [/spec\.selector\.matchLabels: "bad key" is not a valid label key/] },
  { name: 'selector with an unknown field', object: ap('x', { selector: { labels: { a: 'b' } } }), errors: [/^spec\.selector\.labels: unknown field/] },
  { name: 'missing name', object: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { namespace: 'foo' }, spec: {} }, errors: ['metadata.name: is required'] },
  { name: 'missing metadata', object: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', spec: {} }, errors: ['metadata: is required (with name and namespace)'] },
  { name: 'unsupported apiVersion', object: { ...ap('x', {}), apiVersion: 'security.istio.io/v1alpha1' }, errors: [/^apiVersion: must be one of security\.istio\.io\/v1, security\.istio\.io\/v1beta1/] },
  { name: 'spec not an object', object: ap('x', ['x'] as unknown as Record<string, unknown>), errors: ['spec: must be an object'] },
  { name: 'bad creationTimestamp', object: ap('x', {}, { created: 'yesterday' }), errors: ['metadata.creationTimestamp: must be an RFC 3339 timestamp'] },
];

for (const row of authorizationRows) {
  test(`AuthorizationPolicy validation: ${row.name}`, () => {
    const result = validateAuthorizationPolicy(row.object);
    for (const expected of row.errors) {
      const found = result.errors.some((e) => (typeof expected === 'string' ? e === expected : expected.test(e)));
      assert.ok(found, `expected ${String(expected)} among:\n${result.errors.join('\n')}`);
    }
    // Errors only inside rules: the policy is enforced without those rules; anywhere else: skipped.
    const onlyInRules = result.errors.every((e) => e.startsWith('spec.rules['));
    assert.equal(result.policy !== undefined, row.enforced === true || onlyInRules, 'enforced?');
    if (result.policy && !row.enforced) {
      const rules = (row.object.spec as { rules?: unknown[] } | undefined)?.rules ?? [];
      const bad = new Set(result.errors.map((e) => Number(/^spec\.rules\[(\d+)\]/.exec(e)![1])));
      assert.deepEqual(result.policy.spec.rules, rules.filter((_, i) => !bad.has(i)), 'exactly the rules with errors are left out');
      assert.deepEqual(validateAuthorizationPolicy(result.policy).errors, [], 'what is enforced is valid');
    }
  });
}

const peerRows: Row[] = [
  { name: 'invalid mode', object: pa('x', { mtls: { mode: 'STRICTEST' } }), errors: ['spec.mtls.mode: invalid mode string "STRICTEST": expected one of UNSET, DISABLE, PERMISSIVE, STRICT'] },
  { name: 'lowercase mode', object: pa('x', { mtls: { mode: 'strict' } }), errors: [/^spec\.mtls\.mode: invalid mode/] },
  { name: 'portLevelMtls without selector', object: pa('x', { mtls: { mode: 'STRICT' }, portLevelMtls: { 80: { mode: 'DISABLE' } } }), errors: ['spec.portLevelMtls: portLevelMtls requires selector (only workload-level policies may set per-port modes)'] },
  { name: 'portLevelMtls with an empty selector', object: pa('x', { selector: { matchLabels: {} }, portLevelMtls: { 80: { mode: 'DISABLE' } } }), errors: [/portLevelMtls requires selector/] },
  { name: 'portLevelMtls port 0', object: pa('x', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { 0: { mode: 'DISABLE' } } }), errors: ['spec.portLevelMtls.0: port must be in range 1..65535'] },
  { name: 'portLevelMtls port 65536', object: pa('x', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { 65536: { mode: 'DISABLE' } } }), errors: ['spec.portLevelMtls.65536: port must be in range 1..65535'] },
  { name: 'portLevelMtls named port', object: pa('x', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { http: { mode: 'DISABLE' } } }), errors: ['spec.portLevelMtls.http: port must be in range 1..65535'] },
  { name: 'portLevelMtls empty', object: pa('x', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: {} }), errors: ['spec.portLevelMtls: must have at least one port when set'] },
  { name: 'portLevelMtls invalid mode', object: pa('x', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { 80: { mode: 'OFF' } } }), errors: [/^spec\.portLevelMtls\.80\.mode: invalid mode string "OFF"/] },
  { name: 'portLevelMtls value not an object', object: pa('x', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { 80: 'STRICT' } }), errors: ['spec.portLevelMtls.80: must be an object with a mode'] },
  { name: 'mtls not an object', object: pa('x', { mtls: 'STRICT' }), errors: ['spec.mtls: must be an object with a mode'] },
  { name: 'unknown field in spec', object: pa('x', { mode: 'STRICT' }), errors: [/^spec\.mode: unknown field \(expected one of: selector, mtls, portLevelMtls\)/] },
  { name: 'unknown field in mtls', object: pa('x', { mtls: { mod: 'STRICT' } }), errors: [/^spec\.mtls\.mod: unknown field/] },
  { name: 'wrong kind', object: { ...pa('x', {}), kind: 'AuthorizationPolicy' }, errors: ['kind: must be PeerAuthentication'] },
  { name: 'missing namespace', object: { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'x' } }, errors: ['metadata.namespace: is required'] },
];

for (const row of peerRows) {
  test(`PeerAuthentication validation: ${row.name}`, () => {
    const result = validatePeerAuthentication(row.object);
    for (const expected of row.errors) {
      const found = result.errors.some((e) => (typeof expected === 'string' ? e === expected : expected.test(e)));
      assert.ok(found, `expected ${String(expected)} among:\n${result.errors.join('\n')}`);
    }
    assert.equal(result.policy, undefined);
  });
}

const validObjects: [string, Record<string, unknown>][] = [
  ['spec: {}', ap('x', {})],
  ['no spec at all (reads as {})', { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'x', namespace: 'foo' } }],
  ['rules: [{}]', ap('x', { rules: [{}] })],
  ['every source and operation field', ap('x', { rules: [{ from: [{ source: { principals: ['a'], notPrincipals: ['b'], namespaces: ['c'], notNamespaces: ['d'], ipBlocks: ['1.2.3.4', 'fd00::/8'], notIpBlocks: ['10.0.0.0/8'], remoteIpBlocks: ['::ffff:10.0.0.1'], notRemoteIpBlocks: ['0.0.0.0/0'] } }, { source: { serviceAccounts: ['ns/sa', 'sa'], notServiceAccounts: ['x/y'] } }], to: [{ operation: { hosts: ['a'], notHosts: ['b'], ports: ['1', '65535'], notPorts: ['80'], methods: ['GET'], notMethods: ['POST'], paths: ['/a', '/b/{*}/c', '/d/{**}'], notPaths: ['*.png'] } }] }] })],
  [
    'every supported when key',
    ap('x', {
      rules: [
        {
          when: [
            { key: 'source.ip', values: ['10.0.0.0/8'] },
            { key: 'remote.ip', values: ['10.0.0.0/8'] },
            { key: 'destination.ip', values: ['10.0.0.0/8'] },
            { key: 'source.namespace', values: ['a'] },
            { key: 'source.principal', notValues: ['*'] },
            { key: 'source.serviceAccount', values: ['a/b'] },
            { key: 'destination.port', values: ['0', '8080'] },
            { key: 'connection.sni', values: ['*.example.com'] },
            { key: 'request.headers[x-token]', values: ['a'] },
          ],
        },
      ],
    }),
  ],
  ['null fields read as absent, as Kubernetes drops them', ap('x', { selector: null, rules: [{ from: null, to: [{ operation: { ports: ['80'], methods: null } }] }] })],
  ['DENY/AUDIT/ALLOW with v1beta1', { ...ap('x', { action: 'AUDIT', rules: [{}] }), apiVersion: 'security.istio.io/v1beta1' }],
  ['targetRefs alone', ap('x', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' }] })],
  ['PeerAuthentication with every field', pa('x', { selector: { matchLabels: { app: 'a', 'example.com/tier': 'web' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { 80: { mode: 'DISABLE' }, 8080: { mode: 'UNSET' }, 9090: {} } })],
  ['PeerAuthentication with spec: {}', pa('x', {})],
  ['PeerAuthentication UNSET', pa('x', { mtls: { mode: 'UNSET' } })],
];

for (const [name, object] of validObjects) {
  test(`valid: ${name}`, () => {
    const result = object.kind === 'PeerAuthentication' ? validatePeerAuthentication(object) : validateAuthorizationPolicy(object);
    assert.deepEqual(result.errors, []);
    assert.ok(result.policy);
  });
}

const warningRows: [string, Record<string, unknown>, RegExp][] = [
  ['DENY without rules never matches', ap('x', { action: 'DENY' }), /^spec\.rules: a DENY policy without rules never matches/],
  ['AUDIT without rules never matches', ap('x', { action: 'AUDIT', rules: [] }), /^spec\.rules: a AUDIT policy without rules never matches/],
  ['DENY with only HTTP fields denies all TCP', ap('x', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] }), /^spec\.rules\[0\]: on TCP traffic this DENY rule ignores its HTTP-only conditions/],
  ['DENY with a header condition denies all TCP', ap('x', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x]', values: ['1'] }] }] }), /denies all TCP traffic/],
  ['targetRefs have no effect on sidecars', ap('x', { targetRefs: [{ kind: 'Gateway', name: 'gw' }] }), /^spec\.targetRefs: .*never to sidecar workloads/],
  ['dry-run annotation that is not a boolean', ap('x', {}, { annotations: { 'istio.io/dry-run': 'yes' } }), /^metadata\.annotations\.istio\.io\/dry-run: "yes" is not a boolean; the policy is enforced/],
  ['PeerAuthentication selector in the root namespace is ignored', pa('x', { selector: { matchLabels: { app: 'a' } } }, { ns: 'cinch-system' }), /^spec\.selector: a PeerAuthentication with a selector in the root namespace cinch-system is ignored/],
];

for (const [name, object, pattern] of warningRows) {
  test(`warning, still enforced: ${name}`, () => {
    const result = object.kind === 'PeerAuthentication' ? validatePeerAuthentication(object) : validateAuthorizationPolicy(object);
    assert.deepEqual(result.errors, []);
    assert.ok(result.policy, 'a warning never stops enforcement');
    assert.ok(result.warnings.some((w) => pattern.test(w)), result.warnings.join('\n'));
  });
}

test('DENY with ports and HTTP fields gets no TCP warning', () => {
  const result = validateAuthorizationPolicy(ap('x', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], ports: ['8000'] } }] }] }));
  assert.deepEqual(result.warnings, []);
});

test('several errors are all reported, each with its path', () => {
  const result = validateAuthorizationPolicy(ap('x', { action: 'NOPE', rules: [{ from: [{ source: { ipBlocks: ['x'] } }], to: [{ operation: { ports: ['0'] } }], when: [{ key: 'k', values: ['v'] }] }] }));
  assert.equal(result.errors.length, 4, result.errors.join('\n'));
  assert.deepEqual(
    result.errors.map((e) => e.split(':')[0]),
    ['spec.action', 'spec.rules[0].from[0].source.ipBlocks[0]', 'spec.rules[0].to[0].operation.ports[0]', 'spec.rules[0].when[0].key'],
  );
});

test('buildPolicySet: invalid objects are reported and skipped, valid ones kept, other kinds ignored', () => {
  const set = buildPolicySet([
    ap('good', { rules: [{}] }),
    ap('bad', { action: 'NOPE' }),
    pa('strict', { mtls: { mode: 'STRICT' } }),
    pa('broken', { mtls: { mode: 'NOPE' } }),
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm', namespace: 'foo' } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'vs', namespace: 'foo' } },
    'not an object',
    null,
    { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'jwt', namespace: 'foo' }, spec: {} },
  ]);
  assert.deepEqual(set.authorizationPolicies.map((p) => p.metadata.name), ['good']);
  assert.deepEqual(set.peerAuthentications.map((p) => p.metadata.name), ['strict']);
  assert.deepEqual(
    set.problems.map((p) => [p.kind, p.ref, p.enforced]),
    [
      ['AuthorizationPolicy', 'foo/bad', false],
      ['PeerAuthentication', 'foo/broken', false],
      ['RequestAuthentication', 'foo/jwt', false],
    ],
  );
  assert.match(set.problems[2].errors[0], /RequestAuthentication is not supported by Cinch/);
});

test('buildPolicySet: a CUSTOM policy is reported and still enforced (fail closed)', () => {
  const set = buildPolicySet([ap('ext', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] })]);
  assert.equal(set.authorizationPolicies.length, 1);
  assert.equal(set.problems.length, 1);
  assert.equal(set.problems[0].enforced, true);
  assert.match(set.problems[0].errors[0], /CUSTOM requires an extension provider; Cinch has none/);
});

test('buildPolicySet: a CUSTOM policy keeps its valid rules (denied, fail closed); its rules with errors are left out', () => {
  const set = buildPolicySet([ap('ext', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { ports: ['x'] } }] }, { to: [{ operation: { paths: ['/ext'] } }] }] })]);
  assert.deepEqual(set.authorizationPolicies[0].spec.rules, [{ to: [{ operation: { paths: ['/ext'] } }] }]);
  assert.equal(set.problems[0].enforced, true);
});

// Rules with errors, and JWT attributes, never make a policy weaker than its author meant.
const decide = (objects: Record<string, unknown>[], request = http()) =>
  compileWorkloadPolicy(buildPolicySet(objects), HTTPBIN).evaluate(request);

test('an ALLOW policy whose only rule has an error allows nothing (skipping it would have allowed everything)', () => {
  const objects = [ap('allow-office', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }] })];
  const set = buildPolicySet(objects);
  assert.equal(set.problems[0].enforced, true);
  assert.match(set.problems[0].warnings.join(), /spec\.rules\[0\]: left out because of its errors .*allows nothing/);
  assert.equal(decide(objects).decision, 'DENY');
});

test('a DENY policy keeps denying with its valid rules when another of its rules has an error', () => {
  const objects = [ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['0'] } }] }, { to: [{ operation: { paths: ['/admin*'] } }] }] })];
  assert.equal(decide(objects, http({ path: '/admin/users' })).decision, 'DENY');
  assert.equal(decide(objects, http({ path: '/headers' })).decision, 'ALLOW');
});

test('JWT attributes are evaluated as Istio does without a RequestAuthentication: no request has a request principal or claims', () => {
  // Istio's "require a JWT" DENY rule: every request lacks a principal, so every request is denied.
  const requireJwt = ap('require-jwt', { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] });
  assert.equal(decide([requireJwt]).decision, 'DENY');
  const set = buildPolicySet([requireJwt]);
  assert.deepEqual(set.problems[0].errors, []);
  assert.match(set.problems[0].warnings.join(), /no request has a request principal/);
  // An ALLOW rule on requestPrincipals allows no one; the same policy's other rules still do.
  const allowJwt = ap('allow-jwt', { rules: [{ from: [{ source: { requestPrincipals: ['https://issuer.example/*'] } }] }, { to: [{ operation: { paths: ['/public*'] } }] }] });
  assert.equal(decide([allowJwt]).decision, 'DENY');
  assert.equal(decide([allowJwt], http({ path: '/public/x' })).decision, 'ALLOW');
  // Claims: values never hold (the rule never matches), only notValues always hold (the condition drops out).
  const claims = (when: Record<string, unknown>) => ap('claims', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/a*'] } }], when: [when] }] });
  assert.equal(decide([claims({ key: 'request.auth.claims[groups]', values: ['admin'] })], http({ path: '/a' })).decision, 'ALLOW');
  assert.equal(decide([claims({ key: 'request.auth.claims[groups]', notValues: ['admin'] })], http({ path: '/a' })).decision, 'DENY');
  assert.equal(decide([claims({ key: 'request.auth.claims[groups]', notValues: ['admin'] })], http({ path: '/b' })).decision, 'ALLOW');
  // A from entry with requestPrincipals never matches; another entry of the same rule still can.
  const either = ap('either', { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }, { source: { namespaces: ['bar'] } }] }] });
  assert.equal(decide([either]).decision, 'ALLOW');
  assert.equal(decide([either], http({ principal: 'cluster.local/ns/qux/sa/y' })).decision, 'DENY');
  // notRequestPrincipals always holds, so only the entry's other fields decide.
  const notJwtFromBar = ap('not-jwt', { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'], namespaces: ['bar'] } }] }] });
  assert.equal(decide([notJwtFromBar]).decision, 'DENY');
  assert.equal(decide([notJwtFromBar], http({ principal: 'cluster.local/ns/qux/sa/y' })).decision, 'ALLOW');
});

test('an unknown request.auth attribute is an error', () => {
  assert.match(validateAuthorizationPolicy(ap('x', { rules: [{ when: [{ key: 'request.auth.nope', values: ['x'] }] }] })).errors.join(), /unknown attribute "request\.auth\.nope"/);
});

test('the root namespace used for warnings is configurable', () => {
  const object = pa('x', { selector: { matchLabels: { app: 'a' } } }, { ns: 'istio-system' });
  assert.deepEqual(validatePeerAuthentication(object).warnings, []);
  assert.equal(validatePeerAuthentication(object, { rootNamespace: 'istio-system' }).warnings.length, 1);
});
