// The per-identity token bucket, on a fake clock: burst, refill, the wait it reports, isolation
// between identities, and bounded memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_RATE_LIMIT, TokenBucketLimiter, retryAfterSeconds } from '../../../src/ca/rate-limit.ts';

function clock(start = 1_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test('a fresh identity gets its whole burst, then waits for the refill', () => {
  const c = clock();
  const limiter = new TokenBucketLimiter({ burst: 3, refillPerSecond: 1, now: c.now });
  assert.deepEqual(limiter.take('a'), { allowed: true, remaining: 2 });
  assert.deepEqual(limiter.take('a'), { allowed: true, remaining: 1 });
  assert.deepEqual(limiter.take('a'), { allowed: true, remaining: 0 });
  assert.deepEqual(limiter.take('a'), { allowed: false, retryAfterMs: 1000 });
  c.advance(400);
  assert.deepEqual(limiter.take('a'), { allowed: false, retryAfterMs: 600 });
  c.advance(600);
  assert.equal(limiter.take('a').allowed, true);
  assert.equal(limiter.take('a').allowed, false);
});

test('refused requests take nothing: waiting exactly the reported time is enough', () => {
  const c = clock();
  const limiter = new TokenBucketLimiter({ burst: 1, refillPerSecond: 4, now: c.now });
  assert.equal(limiter.take('a').allowed, true);
  for (let i = 0; i < 10; i++) assert.equal(limiter.take('a').allowed, false);
  const decision = limiter.take('a');
  assert.equal(decision.allowed, false);
  c.advance(decision.retryAfterMs);
  assert.equal(limiter.take('a').allowed, true);
});

test('the bucket never holds more than its burst, however long the identity was idle', () => {
  const c = clock();
  const limiter = new TokenBucketLimiter({ burst: 2, refillPerSecond: 10, now: c.now });
  limiter.take('a');
  c.advance(3_600_000);
  assert.equal(limiter.take('a').allowed, true);
  assert.equal(limiter.take('a').allowed, true);
  assert.equal(limiter.take('a').allowed, false);
});

test('sustained rate equals the refill rate', () => {
  const c = clock();
  const limiter = new TokenBucketLimiter({ burst: 5, refillPerSecond: 2, now: c.now });
  let allowed = 0;
  for (let ms = 0; ms < 60_000; ms += 10) {
    if (limiter.take('a').allowed) allowed++;
    c.advance(10);
  }
  // 5 at once, then 2 per second for 60 s.
  assert.ok(allowed >= 124 && allowed <= 126, `allowed ${allowed}`);
});

test('identities are independent', () => {
  const c = clock();
  const limiter = new TokenBucketLimiter({ burst: 1, refillPerSecond: 1, now: c.now });
  assert.equal(limiter.take('spiffe://cluster.local/ns/a/sa/x').allowed, true);
  assert.equal(limiter.take('spiffe://cluster.local/ns/a/sa/x').allowed, false);
  assert.equal(limiter.take('spiffe://cluster.local/ns/b/sa/x').allowed, true);
});

test('a clock that steps back mints no tokens', () => {
  const c = clock(10_000);
  const limiter = new TokenBucketLimiter({ burst: 1, refillPerSecond: 1, now: c.now });
  limiter.take('a');
  c.advance(-5_000);
  assert.equal(limiter.take('a').allowed, false);
  c.advance(5_000);
  assert.equal(limiter.take('a').allowed, false, 'the time spent going back is not counted twice');
  c.advance(1_000);
  assert.equal(limiter.take('a').allowed, true);
});

test('memory is bounded: refilled buckets are swept, else the least recently used is dropped', () => {
  const c = clock();
  const limiter = new TokenBucketLimiter({ burst: 2, refillPerSecond: 1, maxIdentities: 3, now: c.now });
  limiter.take('a');
  limiter.take('b');
  limiter.take('c');
  assert.equal(limiter.size, 3);
  // Nothing has refilled: the least recently used (a) goes.
  limiter.take('d');
  assert.equal(limiter.size, 3);
  limiter.take('b'); // b is now the most recent
  c.advance(1_000);
  limiter.take('e'); // c is the oldest
  assert.equal(limiter.size, 3);
  // After a full refill period everyone is idle: all of them are swept at once.
  c.advance(2_000);
  limiter.take('f');
  assert.equal(limiter.size, 1);
  // A swept identity comes back with a full bucket, which is what it had anyway.
  assert.deepEqual(limiter.take('b'), { allowed: true, remaining: 1 });
});

test('many identities never grow the map past the bound', () => {
  const c = clock();
  const limiter = new TokenBucketLimiter({ burst: 10, refillPerSecond: 1, maxIdentities: 100, now: c.now });
  for (let i = 0; i < 10_000; i++) {
    limiter.take(`id-${i}`);
    c.advance(1);
  }
  assert.ok(limiter.size <= 100);
});

test('defaults let a rollout through and hold a loop to the refill rate', () => {
  const limiter = new TokenBucketLimiter();
  assert.equal(limiter.burst, DEFAULT_RATE_LIMIT.burst);
  assert.equal(limiter.refillPerSecond, DEFAULT_RATE_LIMIT.refillPerSecond);
  for (let i = 0; i < DEFAULT_RATE_LIMIT.burst; i++) assert.equal(limiter.take('rollout').allowed, true);
  assert.equal(limiter.take('rollout').allowed, false);
});

test('options are checked', () => {
  assert.throws(() => new TokenBucketLimiter({ burst: 0 }), /burst/);
  assert.throws(() => new TokenBucketLimiter({ refillPerSecond: 0 }), /refillPerSecond/);
  assert.throws(() => new TokenBucketLimiter({ refillPerSecond: Number.NaN }), /refillPerSecond/);
  assert.throws(() => new TokenBucketLimiter({ maxIdentities: 0.5 }), /maxIdentities/);
});

test('Retry-After is whole seconds, rounded up, at least 1', () => {
  assert.equal(retryAfterSeconds(0), 1);
  assert.equal(retryAfterSeconds(1), 1);
  assert.equal(retryAfterSeconds(1000), 1);
  assert.equal(retryAfterSeconds(1001), 2);
  assert.equal(retryAfterSeconds(59_500), 60);
});
