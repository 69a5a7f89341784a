// Per-identity token buckets for the CA API (pure: the clock is injected, nothing is scheduled).
// A bucket holds up to `burst` tokens and refills continuously at `refillPerSecond`; each request
// takes one. A full bucket carries no information, so it can be dropped and re-created on demand:
// that is how memory stays bounded without timers.

export interface RateLimitOptions {
  /** Requests an identity may make at once after being idle. */
  readonly burst?: number;
  /** Sustained requests per second per identity. */
  readonly refillPerSecond?: number;
  /** Most identities tracked at once; beyond it full buckets are swept, then the least recently used dropped. */
  readonly maxIdentities?: number;
  /** Milliseconds on a monotonic clock; performance.now by default. */
  readonly now?: () => number;
}

export type RateDecision = { readonly allowed: true; readonly remaining: number } | { readonly allowed: false; readonly retryAfterMs: number };

/**
 * Defaults: identity is a ServiceAccount, shared by every replica of a Deployment (and `default` by
 * most of a namespace), so a rollout of dozens of pods must pass without 429s, while one workload in a
 * loop is held to a rate that costs the CA nothing (signing runs at thousands per second). A healthy
 * pod renews about every 30 minutes.
 */
export const DEFAULT_RATE_LIMIT = { burst: 50, refillPerSecond: 5, maxIdentities: 100_000 } as const;

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
}

export class TokenBucketLimiter {
  readonly burst: number;
  readonly refillPerSecond: number;
  readonly maxIdentities: number;
  readonly #now: () => number;
  /** Insertion order is recency order: a bucket is re-inserted on every take. */
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: RateLimitOptions = {}) {
    this.burst = options.burst ?? DEFAULT_RATE_LIMIT.burst;
    this.refillPerSecond = options.refillPerSecond ?? DEFAULT_RATE_LIMIT.refillPerSecond;
    this.maxIdentities = options.maxIdentities ?? DEFAULT_RATE_LIMIT.maxIdentities;
    if (!Number.isFinite(this.burst) || this.burst < 1) throw new RangeError(`burst must be at least 1, got ${this.burst}`);
    if (!Number.isFinite(this.refillPerSecond) || this.refillPerSecond <= 0) throw new RangeError(`refillPerSecond must be positive, got ${this.refillPerSecond}`);
    if (!Number.isSafeInteger(this.maxIdentities) || this.maxIdentities < 1) throw new RangeError(`maxIdentities must be a whole number of at least 1, got ${this.maxIdentities}`);
    this.#now = options.now ?? (() => performance.now());
  }

  /** Takes one token for `identity`: allowed, or how long until one is available. */
  take(identity: string): RateDecision {
    const now = this.#now();
    let bucket = this.#buckets.get(identity);
    if (bucket) {
      this.#buckets.delete(identity);
      this.#refill(bucket, now);
    } else {
      if (this.#buckets.size >= this.maxIdentities) this.#makeRoom(now);
      bucket = { tokens: this.burst, at: now };
    }
    this.#buckets.set(identity, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true, remaining: Math.floor(bucket.tokens) };
    }
    return { allowed: false, retryAfterMs: Math.ceil(((1 - bucket.tokens) / this.refillPerSecond) * 1000) };
  }

  /** Identities currently tracked (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  #refill(bucket: Bucket, now: number): void {
    // A clock that steps back (it should not: the default is monotonic) must not mint tokens.
    const elapsed = Math.max(0, now - bucket.at);
    bucket.tokens = Math.min(this.burst, bucket.tokens + (elapsed / 1000) * this.refillPerSecond);
    bucket.at = Math.max(bucket.at, now);
  }

  /** Drops every bucket that has refilled completely; if none has, the least recently used one. */
  #makeRoom(now: number): void {
    const fullAfterMs = (this.burst / this.refillPerSecond) * 1000;
    // Recency order is also `at` order, so the full buckets are a prefix: stop at the first that is not.
    for (const [identity, bucket] of this.#buckets) {
      if (now - bucket.at < fullAfterMs) break;
      this.#buckets.delete(identity);
    }
    // Only identities with valid tokens reach the limiter, so this cannot be driven by strangers.
    if (this.#buckets.size >= this.maxIdentities) {
      const oldest = this.#buckets.keys().next();
      if (!oldest.done) this.#buckets.delete(oldest.value);
    }
  }
}

/** The Retry-After header value (whole seconds, at least 1) for a wait in milliseconds. */
export function retryAfterSeconds(waitMs: number): number {
  return Math.max(1, Math.ceil(waitMs / 1000));
}
