// The CSR API signer's decision table: who is approved automatically, who waits for a human, what an
// approved request becomes (signed or Failed with which reason), and what is left alone.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { V1CertificateSigningRequest, V1CertificateSigningRequestCondition } from '@kubernetes/client-node';
import { AUTO_APPROVE_USAGES, CINCH_SIGNER_NAME, decideCsr, serviceAccountOf, type CsrDecision } from '../../../src/controlplane/csr-signer.ts';
import { generateTestKey, makeCsr } from '../ca/support.ts';

const TD = 'cluster.local';
const ME = 'spiffe://cluster.local/ns/shop/sa/cart';
const SA_USER = 'system:serviceaccount:shop:cart';
const SA_GROUPS = ['system:serviceaccounts', 'system:serviceaccounts:shop', 'system:authenticated'];

let own: string; // CSR naming exactly ME
let other: string; // CSR naming another ServiceAccount
let noSan: string;
let dnsToo: string;
let weak: string;
let p384: string;
before(async () => {
  const key = generateTestKey('ec-p256');
  own = await makeCsr(key, [{ type: 'url', value: ME }]);
  other = await makeCsr(key, [{ type: 'url', value: 'spiffe://cluster.local/ns/shop/sa/admin' }]);
  noSan = await makeCsr(key);
  dnsToo = await makeCsr(key, [{ type: 'url', value: ME }, { type: 'dns', value: 'cart.shop.svc' }]);
  weak = await makeCsr(generateTestKey('rsa-1024'), [{ type: 'url', value: ME }]);
  p384 = await makeCsr(generateTestKey('ec-p384'), [{ type: 'url', value: ME }]);
});

function cond(type: string, status = 'True'): V1CertificateSigningRequestCondition {
  return { type, status, reason: 'Test', message: '' };
}

function csr(pem: string, opts: { user?: string; groups?: string[]; usages?: string[]; signer?: string; conditions?: V1CertificateSigningRequestCondition[]; certificate?: string } = {}): V1CertificateSigningRequest {
  return {
    metadata: { name: 'csr-1' },
    spec: {
      request: Buffer.from(pem).toString('base64'),
      signerName: opts.signer ?? CINCH_SIGNER_NAME,
      username: opts.user ?? SA_USER,
      groups: opts.groups ?? SA_GROUPS,
      usages: opts.usages ?? ['digital signature', 'key encipherment', 'server auth', 'client auth'],
    },
    status: { conditions: opts.conditions, certificate: opts.certificate },
  };
}

const approved = [cond('Approved')];
function summary(d: CsrDecision): string {
  if (d.action === 'fail') return `fail:${d.reason}`;
  if (d.action === 'approve' || d.action === 'sign') return `${d.action}:${d.spiffeId}`;
  return d.action;
}

describe('requester', () => {
  test('only system:serviceaccount:<ns>:<sa> with the serviceaccounts group is a ServiceAccount', () => {
    assert.deepEqual(serviceAccountOf(SA_USER, SA_GROUPS), { namespace: 'shop', name: 'cart' });
    assert.equal(serviceAccountOf(SA_USER, ['system:authenticated']), undefined, 'group missing');
    assert.equal(serviceAccountOf('alice', SA_GROUPS), undefined);
    assert.equal(serviceAccountOf('system:serviceaccount:shop', SA_GROUPS), undefined);
    assert.equal(serviceAccountOf('system:serviceaccount:shop:cart:x', SA_GROUPS), undefined);
    assert.equal(serviceAccountOf('system:serviceaccount::cart', SA_GROUPS), undefined);
    assert.equal(serviceAccountOf(undefined, undefined), undefined);
  });
});

describe('decision table', () => {
  const rows: Array<[string, () => V1CertificateSigningRequest, string]> = [
    // Auto-approval.
    ['own SPIFFE ID, profile usages', () => csr(own), `approve:${ME}`],
    ['own ID, a subset of the usages', () => csr(own, { usages: ['digital signature', 'client auth'] }), `approve:${ME}`],
    ['own ID, P-384 key', () => csr(p384), `approve:${ME}`],
    // Pending for a human.
    ['another identity', () => csr(other), 'wait'],
    ['no SAN at all', () => csr(noSan), 'wait'],
    ['an extra DNS SAN', () => csr(dnsToo), 'wait'],
    ['a usage outside the profile', () => csr(own, { usages: ['digital signature', 'server auth', 'cert sign'] }), 'wait'],
    ['no usages', () => csr(own, { usages: [] }), 'wait'],
    ['a human user', () => csr(own, { user: 'alice', groups: ['system:authenticated'] }), 'wait'],
    ['a node', () => csr(own, { user: 'system:node:n1', groups: ['system:nodes'] }), 'wait'],
    ['a weak key', () => csr(weak), 'wait'],
    ['not a CSR', () => csr('hello'), 'wait'],
    // Approved (by a human): signed when possible, Failed with a reason otherwise.
    ['approved, own ID', () => csr(own, { conditions: approved }), `sign:${ME}`],
    ['approved, no SAN', () => csr(noSan, { conditions: approved }), `sign:${ME}`],
    ['approved, odd usages: the profile decides', () => csr(own, { conditions: approved, usages: ['code signing'] }), `sign:${ME}`],
    ['approved, another identity', () => csr(other, { conditions: approved }), 'fail:IdentityMismatch'],
    ['approved, extra DNS SAN', () => csr(dnsToo, { conditions: approved }), 'fail:IdentityMismatch'],
    ['approved, weak key', () => csr(weak, { conditions: approved }), 'fail:WeakKey'],
    ['approved, not a CSR', () => csr('hello', { conditions: approved }), 'fail:InvalidRequest'],
    ['approved, human requester', () => csr(own, { conditions: approved, user: 'alice', groups: [] }), 'fail:NotServiceAccount'],
    // Left alone.
    ['another signer', () => csr(own, { signer: 'kubernetes.io/kube-apiserver-client' }), 'skip'],
    ['already issued', () => csr(own, { conditions: approved, certificate: 'LS0t' }), 'skip'],
    ['denied', () => csr(own, { conditions: [cond('Denied')] }), 'skip'],
    ['failed before', () => csr(own, { conditions: [...approved, cond('Failed')] }), 'skip'],
    ['an Approved condition with status False is no approval', () => csr(other, { conditions: [cond('Approved', 'False')] }), 'wait'],
  ];
  for (const [name, make, expected] of rows) {
    test(`${name} → ${expected}`, () => assert.equal(summary(decideCsr(make(), TD)), expected));
  }

  test('the identity is the requester\'s in the configured trust domain, never the CSR\'s', () => {
    const d = decideCsr(csr(noSan, { conditions: approved, user: 'system:serviceaccount:pay:api', groups: SA_GROUPS }), 'example.org');
    assert.equal(summary(d), 'sign:spiffe://example.org/ns/pay/sa/api');
    const mine = decideCsr(csr(own), 'example.org');
    assert.equal(mine.action, 'wait', 'a CSR for cluster.local is another identity in example.org');
  });

  test('waiting and failing say why', () => {
    const wait = decideCsr(csr(own, { usages: ['cert sign'] }), TD);
    assert.ok(wait.action === 'wait' && /usages \["cert sign"\] are not within/.test(wait.why));
    const fail = decideCsr(csr(other, { conditions: approved }), TD);
    assert.ok(fail.action === 'fail' && fail.message.includes(ME), fail.action === 'fail' ? fail.message : '');
  });

  test('the auto-approvable usages are exactly the workload profile', () => {
    assert.deepEqual([...AUTO_APPROVE_USAGES].sort(), ['client auth', 'digital signature', 'key encipherment', 'server auth']);
  });
});
