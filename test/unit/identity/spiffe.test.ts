import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_TRUST_DOMAIN,
  SpiffeIdError,
  formatWorkloadId,
  isDns1123Label,
  isDns1123Subdomain,
  isSpiffeId,
  parseSpiffeId,
  parseWorkloadId,
  principalToSpiffeId,
  toPrincipal,
  trustDomainProblem,
} from '../../../src/identity/spiffe.ts';

test('formats and parses the workload form', () => {
  const id = formatWorkloadId({ trustDomain: DEFAULT_TRUST_DOMAIN, namespace: 'foo', serviceAccount: 'httpbin' });
  assert.equal(id, 'spiffe://cluster.local/ns/foo/sa/httpbin');
  assert.deepEqual(parseWorkloadId(id), { trustDomain: 'cluster.local', namespace: 'foo', serviceAccount: 'httpbin' });
});

test('accepts Kubernetes names at their maximum lengths, dots in service accounts included', () => {
  const namespace = 'a'.repeat(62) + '9';
  const serviceAccount = Array.from({ length: 4 }, () => 'b'.repeat(62)).join('.') + '.c';
  assert.equal(serviceAccount.length, 253);
  const trustDomain = 'x'.repeat(255);
  const id = formatWorkloadId({ trustDomain, namespace, serviceAccount });
  assert.deepEqual(parseWorkloadId(id), { trustDomain, namespace, serviceAccount });
});

test('refuses names Kubernetes would refuse', () => {
  for (const namespace of ['', 'Foo', '-a', 'a-', 'a.b', 'a'.repeat(64), 'a_b']) {
    assert.throws(() => formatWorkloadId({ trustDomain: 'td', namespace, serviceAccount: 'sa' }), /namespace .* not a valid Kubernetes namespace/, namespace);
  }
  for (const serviceAccount of ['', 'A', 'a..b', '.a', 'a.', 'a'.repeat(254), 'a_b']) {
    assert.throws(() => formatWorkloadId({ trustDomain: 'td', namespace: 'ns', serviceAccount }), /service account .* not a valid Kubernetes name/, serviceAccount);
  }
  assert.ok(isDns1123Label('a-1') && !isDns1123Label('a.b'));
  assert.ok(isDns1123Subdomain('a.b-c.d') && !isDns1123Subdomain('a..b'));
});

test('trust domain rules: lowercase, digits, . - _, at most 255 bytes', () => {
  assert.equal(trustDomainProblem('example.org'), undefined);
  assert.equal(trustDomainProblem('my_td-1.local'), undefined);
  assert.match(trustDomainProblem('') ?? '', /empty/);
  assert.match(trustDomainProblem('Example.org') ?? '', /lowercase/);
  assert.match(trustDomainProblem('x'.repeat(256)) ?? '', /255 bytes/);
  assert.match(trustDomainProblem('td:8443') ?? '', /may contain only/);
});

test('parseSpiffeId enforces every rule of the standard with a precise reason', () => {
  const refused: Array<[string, RegExp]> = [
    ['http://cluster.local/ns/a/sa/b', /must start with "spiffe:\/\/"/],
    ['SPIFFE://cluster.local/ns/a', /must start with/],
    ['spiffe://', /trust domain is empty/],
    ['spiffe:///ns/a', /trust domain is empty/],
    ['spiffe://Cluster.local/ns/a', /lowercase/],
    ['spiffe://user@cluster.local/ns/a', /may contain only/],
    ['spiffe://cluster.local:8080/ns/a', /may contain only/],
    ['spiffe://cluster.local/ns/a?x=1', /path segment/],
    ['spiffe://cluster.local/ns/a#frag', /path segment/],
    ['spiffe://cluster.local/ns//a', /empty segment/],
    ['spiffe://cluster.local/ns/a/', /trailing/],
    ['spiffe://cluster.local/', /trailing/],
    ['spiffe://cluster.local/ns/./a', /'\.' or '\.\.'/],
    ['spiffe://cluster.local/ns/../a', /'\.' or '\.\.'/],
    ['spiffe://cluster.local/ns/a%20b', /path segment/],
    [`spiffe://cluster.local/${'a'.repeat(2040)}`, /longer than 2048 bytes/],
  ];
  for (const [id, reason] of refused) {
    assert.throws(() => parseSpiffeId(id), (err: unknown) => err instanceof SpiffeIdError && reason.test(err.message), id);
    assert.equal(isSpiffeId(id), false, id);
  }
  assert.deepEqual(parseSpiffeId('spiffe://cluster.local'), { trustDomain: 'cluster.local', path: '' });
  assert.deepEqual(parseSpiffeId('spiffe://td/A.b-c_d/e'), { trustDomain: 'td', path: '/A.b-c_d/e' });
});

test('parseWorkloadId accepts only ns/<ns>/sa/<sa>', () => {
  for (const id of ['spiffe://td', 'spiffe://td/ns/a', 'spiffe://td/ns/a/sa', 'spiffe://td/ns/a/sa/b/c', 'spiffe://td/sa/a/ns/b']) {
    assert.throws(() => parseWorkloadId(id), /not a workload ID/, id);
  }
});

test('principals drop the spiffe:// prefix and come back', () => {
  assert.equal(toPrincipal('spiffe://cluster.local/ns/bar/sa/sleep'), 'cluster.local/ns/bar/sa/sleep');
  assert.equal(principalToSpiffeId('cluster.local/ns/bar/sa/sleep'), 'spiffe://cluster.local/ns/bar/sa/sleep');
  assert.throws(() => toPrincipal('cluster.local/ns/bar/sa/sleep'), SpiffeIdError);
  assert.throws(() => principalToSpiffeId('Bad/ns/x'), SpiffeIdError);
});
