import assert from 'node:assert/strict';
import { test } from 'node:test';
import { expiryStatus, formatResults, rootFingerprints } from '../../../src/controlplane/check.ts';
import { makeServingCert } from '../../support/tls.ts';

const now = new Date('2030-01-01T00:00:00Z');
const days = (n: number) => new Date(now.getTime() + n * 86_400_000);

test('CA expiry: ok beyond 30 days, warn within, fail once expired, each with a fix', () => {
  assert.equal(expiryStatus('CA root', days(400), now).status, 'ok');
  const soon = expiryStatus('CA root', days(10), now);
  assert.equal(soon.status, 'warn');
  assert.match(soon.detail, /expires in 10 days/);
  assert.ok(soon.fix);
  const gone = expiryStatus('CA root', days(-1), now);
  assert.equal(gone.status, 'fail');
  assert.match(gone.fix!, /rotate/);
});

test('root fingerprints compare bundles regardless of order and whitespace', () => {
  const a = makeServingCert().ca;
  const b = makeServingCert().ca;
  assert.deepEqual(rootFingerprints(`${a}\n\n${b}`), rootFingerprints(`${b}${a}`));
  assert.equal(rootFingerprints(a + b).size, 2);
  assert.equal(rootFingerprints('').size, 0);
});

test('the report ends with a count of failures and warnings', () => {
  const text = formatResults([
    { name: 'a', status: 'ok', detail: 'fine' },
    { name: 'b', status: 'fail', detail: 'broken', fix: 'do x' },
    { name: 'c', status: 'warn', detail: 'hmm' },
  ]);
  assert.match(text, /^✔ a: fine$/m);
  assert.match(text, /^✖ b: broken\n {4}fix: do x$/m);
  assert.match(text, /1 check\(s\) failed, 1 warning\(s\)$/);
});
