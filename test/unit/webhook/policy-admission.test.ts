// admitPolicy: what POST /validate answers for each kind of request.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AdmissionRequest } from '../../../src/webhook/admission.ts';
import { admitPolicy } from '../../../src/webhook/policy-admission.ts';

const request = (kind: string, object: unknown, operation = 'CREATE', group = 'security.istio.io'): AdmissionRequest => ({
  uid: 'u1',
  kind: { group, version: 'v1', kind },
  operation,
  namespace: 'foo',
  name: 'p',
  object,
});
const ap = (spec: unknown) => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'foo' }, spec });
const pa = (spec: unknown) => ({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'p', namespace: 'foo' }, spec });

test('an invalid policy is refused with every error, field first', () => {
  const result = admitPolicy(request('AuthorizationPolicy', ap({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }], to: [{ operation: { ports: ['0'] } }] }] })));
  assert.equal(result.kind, 'refuse');
  assert.match(result.kind === 'refuse' ? result.message : '', /^AuthorizationPolicy foo\/p is invalid for Cinch: spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks\[0\]: .*; spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: bad port "0"/);
  assert.equal(admitPolicy(request('PeerAuthentication', pa({ mtls: { mode: 'STRICTEST' } })), { rootNamespace: 'cinch-system' }).kind, 'refuse');
});

test('a valid policy is allowed; warnings travel with it, cut to a length the API server keeps', () => {
  assert.deepEqual(admitPolicy(request('AuthorizationPolicy', ap({ rules: [{ from: [{ source: { namespaces: ['bar'] } }] }] }))), { kind: 'allow', reason: 'valid' });
  const jwt = admitPolicy(request('AuthorizationPolicy', ap({ action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] })));
  assert.equal(jwt.kind, 'allow');
  assert.equal(jwt.reason, 'valid_with_warnings');
  assert.ok(jwt.kind === 'allow' && jwt.warnings!.every((w) => w.length <= 250));
  assert.match(jwt.kind === 'allow' ? jwt.warnings![0] : '', /notRequestPrincipals/);
});

test('CUSTOM is accepted with a warning (Cinch denies what it matches), as Istio accepts it without a provider', () => {
  const result = admitPolicy(request('AuthorizationPolicy', ap({ action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] })));
  assert.equal(result.kind, 'allow');
  assert.match(result.kind === 'allow' ? result.warnings!.join() : '', /CUSTOM requires an extension provider/);
});

test('anything else passes untouched: other kinds and groups, DELETE', () => {
  assert.equal(admitPolicy(request('Pod', {}, 'CREATE', '')).reason, 'not_a_policy');
  assert.equal(admitPolicy(request('AuthorizationPolicy', {}, 'CREATE', 'example.com')).reason, 'not_a_policy');
  assert.equal(admitPolicy(request('AuthorizationPolicy', ap({ rules: 'x' }), 'DELETE')).reason, 'not_create_or_update');
  assert.equal(admitPolicy(request('AuthorizationPolicy', ap({ rules: 'x' }), 'UPDATE')).kind, 'refuse');
  // Removing a finalizer from an invalid policy being deleted must not be refused (it would never go away).
  const leaving = { ...ap({ rules: 'x' }), metadata: { name: 'p', namespace: 'foo', deletionTimestamp: '2026-12-04T00:00:00Z', finalizers: [] } };
  assert.equal(admitPolicy(request('AuthorizationPolicy', leaving, 'UPDATE')).reason, 'being_deleted');
});
