// The building blocks: string forms, IP addresses and ranges, path normalization and templates,
// identities, selectors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIdentity } from '../../../src/policy/authorization.ts';
import { ipInRange, parseIp, parseIpRange, type IpAddress, type IpRange } from '../../../src/policy/ip.ts';
import { anyOf, compileStringMatcher } from '../../../src/policy/match.ts';
import { compilePathMatcher, normalizePath, pathTemplateProblem } from '../../../src/policy/path.ts';
import { authorizationPolicyApplies, selectorMatches } from '../../../src/policy/select.ts';
import type { AuthorizationPolicy } from '../../../src/policy/types.ts';

const stringRows: [pattern: string, value: string | undefined, match: boolean, ignoreCase?: boolean][] = [
  ['abc', 'abc', true],
  ['abc', 'abcd', false],
  ['abc', 'ABC', false],
  ['abc', 'ABC', true, true],
  ['abc*', 'abc', true],
  ['abc*', 'abcdef', true],
  ['abc*', 'xabc', false],
  ['*abc', 'abc', true],
  ['*abc', 'xyzabc', true],
  ['*abc', 'abcx', false],
  ['*', 'x', true],
  ['*', '', false],
  ['*', undefined, false],
  ['abc', undefined, false],
  ['*abc*', 'xabc*', true],
  ['*abc*', 'xabcx', false],
  ['a*c', 'a*c', true],
  ['a*c', 'abc', false],
  ['*.Example.COM', 'www.example.com', true, true],
];

for (const [pattern, value, match, ignoreCase] of stringRows) {
  test(`string match: "${pattern}" ${match ? 'matches' : 'does not match'} ${JSON.stringify(value)}${ignoreCase ? ' (ignoring case)' : ''}`, () => {
    assert.equal(compileStringMatcher(pattern, ignoreCase)(value), match);
    assert.equal(anyOf([pattern], ignoreCase)(value), match);
    assert.equal(anyOf(['zzz-never', pattern, 'never-zzz'], ignoreCase)(value), match);
  });
}

const addresses: [string, boolean][] = [
  ['10.0.0.7', true],
  ['0.0.0.0', true],
  ['255.255.255.255', true],
  ['256.0.0.1', false],
  ['10.0.0', false],
  ['10.0.0.0.1', false],
  ['010.0.0.1', false],
  ['a.b.c.d', false],
  ['::', true],
  ['::1', true],
  ['fd00::7', true],
  ['2001:db8:0:0:0:0:0:1', true],
  ['2001:db8::0:1', true],
  ['::ffff:10.0.0.7', true],
  ['64:ff9b::192.0.2.1', true],
  ['1:2:3:4:5:6:7:8:9', false],
  ['1:2:3:4:5:6:7', false],
  ['1::2::3', false],
  ['12345::', false],
  ['fe80::1%eth0', false],
  ['', false],
  ['localhost', false],
];

for (const [text, ok] of addresses) {
  test(`IP ${ok ? 'accepts' : 'refuses'} ${JSON.stringify(text)}`, () => {
    assert.equal(typeof parseIp(text) !== 'string', ok);
  });
}

function ip(text: string): IpAddress {
  const a = parseIp(text);
  assert.ok(typeof a !== 'string', a as string);
  return a;
}
function range(text: string): IpRange {
  const r = parseIpRange(text);
  assert.ok(typeof r !== 'string', r as string);
  return r;
}

const rangeRows: [rangeText: string, address: string, inside: boolean][] = [
  ['10.0.0.0/8', '10.255.1.2', true],
  ['10.0.0.0/8', '11.0.0.1', false],
  ['10.0.0.7', '10.0.0.7', true],
  ['10.0.0.7', '10.0.0.8', false],
  ['10.0.0.1/24', '10.0.0.200', true],
  ['192.168.1.128/25', '192.168.1.129', true],
  ['192.168.1.128/25', '192.168.1.127', false],
  ['0.0.0.0/0', '203.0.113.1', true],
  ['0.0.0.0/0', '::1', false],
  ['::/0', '10.0.0.1', false],
  ['::/0', 'fd00::1', true],
  ['fd00::/8', 'fdff::1', true],
  ['fd00::/9', 'fd80::1', false],
  ['2001:db8::/32', '2001:db8:ffff::1', true],
  ['2001:db8::/33', '2001:db8:8000::1', false],
  ['::1', '::1', true],
  ['::ffff:10.0.0.0/104', '10.1.2.3', true],
  ['::ffff:10.0.0.0/104', '11.1.2.3', false],
  ['10.0.0.0/8', '::ffff:10.1.2.3', true],
  ['::ffff:10.0.0.7', '10.0.0.7', true],
];

for (const [rangeText, address, inside] of rangeRows) {
  test(`IP range ${rangeText} ${inside ? 'contains' : 'does not contain'} ${address}`, () => {
    assert.equal(ipInRange(ip(address), range(rangeText)), inside);
  });
}

const badRanges: [string, RegExp][] = [
  ['10.0.0.0/33', /bad prefix length "\/33": expected 0-32/],
  ['fd00::/129', /expected 0-128/],
  ['10.0.0.0/', /bad prefix length/],
  ['10.0.0.0/8/8', /bad prefix length/],
  ['10.0.0.0/-1', /bad prefix length/],
  ['x/8', /bad IP address "x"/],
];
for (const [text, message] of badRanges) {
  test(`IP range refuses ${text}`, () => {
    const r = parseIpRange(text);
    assert.equal(typeof r, 'string');
    assert.match(r as string, message);
  });
}

const normalizeRows: [raw: string, normalized: string][] = [
  ['/headers', '/headers'],
  ['/headers?x=1&y=2', '/headers'],
  ['/a#frag', '/a'],
  ['/a/./b', '/a/b'],
  ['/a/../b', '/b'],
  ['/a/b/..', '/a/'],
  ['/../../etc/passwd', '/etc/passwd'],
  ['/a/.', '/a/'],
  ['/%61dmin', '/admin'],
  ['/%7euser', '/~user'],
  ['/a%2fb', '/a%2Fb'],
  ['/a%2Fb', '/a%2Fb'],
  ['/%2e%2e/admin', '/admin'],
  ['/x/%2E/y', '/x/y'],
  ['\\admin\\x', '/admin/x'],
  ['/a//b', '/a//b'],
  ['http://httpbin.foo:8000/ip?x', '/ip'],
  ['http://httpbin.foo', '/'],
  ['*', '*'],
  ['/', '/'],
];

for (const [raw, normalized] of normalizeRows) {
  test(`normalizePath ${JSON.stringify(raw)} → ${JSON.stringify(normalized)}`, () => {
    assert.equal(normalizePath(raw), normalized);
  });
}

const templateRows: [pattern: string, path: string, match: boolean][] = [
  ['/a/{*}/c', '/a/b/c', true],
  ['/a/{*}/c', '/a//c', false],
  ['/a/{*}/c', '/a/b/x/c', false],
  ['/a/{*}', '/a/b', true],
  ['/a/{*}', '/a/b/', false],
  ['/{*}/{*}', '/x/y', true],
  ['/a/{**}', '/a/', true],
  ['/a/{**}', '/a/b/c/d', true],
  ['/a/{**}', '/a', false],
  ['/a/{*}/{**}', '/a/b/c/d', true],
  ['/a/{**}/z', '/a/b/c/z', true],
  ['/a/{**}/z', '/a/b/c/y', false],
  ['/a.b/{*}', '/axb/c', false],
  ['/a.b/{*}', '/a.b/c', true],
];

for (const [pattern, path, match] of templateRows) {
  test(`path template ${pattern} ${match ? 'matches' : 'does not match'} ${path}`, () => {
    assert.equal(pathTemplateProblem(pattern), undefined);
    assert.equal(compilePathMatcher(pattern)(path), match);
  });
}

const badTemplates: [string, RegExp][] = [
  ['/a/{**}/{*}', /"\{\*\*\}" must be the last operator/],
  ['/a/{**}/{**}', /"\{\*\*\}" must be the last operator/],
  ['/a{*}', /must be a whole path segment/],
  ['/a/{*}b', /"\{\*\}" must be a whole path segment/],
  ['/a/{*}/{name}', /only "\{\*\}" and "\{\*\*\}" are supported/],
  ['/a/{*}/*', /only "\{\*\}" and "\{\*\*\}" are supported/],
  ['/a/{*}/b/**', /only/],
  ['{*}/a', /must start with "\/"/],
];
for (const [pattern, message] of badTemplates) {
  test(`path template refused: ${pattern}`, () => {
    assert.match(pathTemplateProblem(pattern) ?? '(accepted)', message);
  });
}

test('paths without template operators keep the plain string forms', () => {
  assert.equal(pathTemplateProblem('/a/*'), undefined);
  assert.equal(compilePathMatcher('/a/*')('/a/b/c'), true);
  assert.equal(compilePathMatcher('/users/{id}')('/users/{id}'), true);
});

const identityRows: [string | undefined, ReturnType<typeof parseIdentity>][] = [
  ['cluster.local/ns/bar/sa/sleep', { principal: 'cluster.local/ns/bar/sa/sleep', namespace: 'bar', serviceAccount: 'bar/sleep' }],
  ['spiffe://cluster.local/ns/bar/sa/sleep', { principal: 'cluster.local/ns/bar/sa/sleep', namespace: 'bar', serviceAccount: 'bar/sleep' }],
  ['td/ns/ns/sa/sa', { principal: 'td/ns/ns/sa/sa', namespace: 'ns', serviceAccount: 'ns/sa' }],
  ['cluster.local/ns/bar', { principal: 'cluster.local/ns/bar', namespace: 'bar', serviceAccount: undefined }],
  ['example.org/workload/x', { principal: 'example.org/workload/x', namespace: undefined, serviceAccount: undefined }],
  [undefined, {}],
  ['', {}],
];
for (const [raw, expected] of identityRows) {
  test(`identity from ${JSON.stringify(raw)}`, () => {
    assert.deepEqual(parseIdentity(raw), expected);
  });
}

test('selectors: subset of labels; absent or empty selects all', () => {
  const labels = { app: 'httpbin', version: 'v1' };
  assert.equal(selectorMatches(undefined, labels), true);
  assert.equal(selectorMatches({}, labels), true);
  assert.equal(selectorMatches({ matchLabels: {} }, labels), true);
  assert.equal(selectorMatches({ matchLabels: { app: 'httpbin' } }, labels), true);
  assert.equal(selectorMatches({ matchLabels: { app: 'httpbin', version: 'v2' } }, labels), false);
  assert.equal(selectorMatches({ matchLabels: { tier: 'web' } }, labels), false);
  assert.equal(selectorMatches({ matchLabels: { app: '' } }, {}), false);
});

test('authorizationPolicyApplies: namespace, root namespace, selector, targetRefs', () => {
  const policy = (ns: string, spec: AuthorizationPolicy['spec']): AuthorizationPolicy => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: ns }, spec });
  const w = { namespace: 'foo', labels: { app: 'httpbin' } };
  assert.equal(authorizationPolicyApplies(policy('foo', {}), w), true);
  assert.equal(authorizationPolicyApplies(policy('bar', {}), w), false);
  assert.equal(authorizationPolicyApplies(policy('cinch-system', {}), w), true);
  assert.equal(authorizationPolicyApplies(policy('istio-system', {}), w), false);
  assert.equal(authorizationPolicyApplies(policy('istio-system', {}), w, { rootNamespace: 'istio-system' }), true);
  assert.equal(authorizationPolicyApplies(policy('foo', { selector: { matchLabels: { app: 'x' } } }), w), false);
  assert.equal(authorizationPolicyApplies(policy('cinch-system', { selector: { matchLabels: { app: 'httpbin' } } }), w), true);
  assert.equal(authorizationPolicyApplies(policy('foo', { targetRefs: [{ kind: 'Gateway', name: 'g' }] }), w), false);
  assert.equal(authorizationPolicyApplies(policy('foo', { targetRefs: [] }), w), true);
});
