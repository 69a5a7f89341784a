import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MIN_RENEWAL_DELAY_MS, renewalDelayMs, retryDelayMs } from '../../../src/proxy/rotation.ts';

const t0 = new Date('2026-01-01T00:00:00Z');
const hour = 3_600_000;

test('renewal happens at half the lifetime, within ±10% of the lifetime', () => {
  const notAfter = new Date(t0.getTime() + hour);
  assert.equal(renewalDelayMs(t0, notAfter, t0, () => 0.5), hour / 2);
  assert.equal(renewalDelayMs(t0, notAfter, t0, () => 0), hour / 2 - hour / 10);
  assert.equal(renewalDelayMs(t0, notAfter, t0, () => 1), hour / 2 + hour / 10);
  for (let i = 0; i < 1000; i++) {
    const d = renewalDelayMs(t0, notAfter, t0);
    assert.ok(d >= 0.4 * hour && d <= 0.6 * hour, String(d));
  }
});

test('a backdated notBefore does not pull renewal into the past: a 30-s certificate renews after ~15 s', () => {
  const notBefore = new Date(t0.getTime() - 60_000); // the CA backdates for clock skew
  const notAfter = new Date(t0.getTime() + 30_000);
  assert.equal(renewalDelayMs(notBefore, notAfter, t0, () => 0.5), 15_000);
  for (let i = 0; i < 200; i++) {
    const d = renewalDelayMs(notBefore, notAfter, t0);
    assert.ok(d >= 12_000 && d <= 18_000, String(d));
  }
});

test('an expired or nearly expired certificate is retried after a floor, never in a tight loop', () => {
  const later = new Date(t0.getTime() + hour);
  assert.equal(renewalDelayMs(t0, new Date(t0.getTime() + hour), later, () => 0.5), MIN_RENEWAL_DELAY_MS);
  assert.equal(renewalDelayMs(t0, new Date(t0.getTime() + 500), t0, () => 0.5), MIN_RENEWAL_DELAY_MS);
});

test('retries back off exponentially with jitter, capped', () => {
  const mid = () => 0.5;
  assert.equal(retryDelayMs(0, {}, mid), 750);
  assert.equal(retryDelayMs(1, {}, mid), 1500);
  assert.equal(retryDelayMs(3, {}, mid), 6000);
  assert.equal(retryDelayMs(30, {}, mid), 45_000);
  for (let i = 0; i < 200; i++) {
    const d = retryDelayMs(4);
    assert.ok(d >= 8000 && d <= 16_000, String(d));
  }
});

test('retries speed up as the certificate nears expiry', () => {
  const expiresAt = new Date(t0.getTime() + 20_000);
  assert.equal(retryDelayMs(10, { expiresAt, now: t0 }, () => 1), 5000);
  assert.ok(retryDelayMs(10, { expiresAt, now: new Date(t0.getTime() + 19_000) }, () => 1) <= 500);
});
