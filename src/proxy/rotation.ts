// When to renew a workload certificate, and how to back off when the CA does not answer. Pure.

/** Never renew sooner than this after receiving a certificate: a CA handing out nearly-expired ones must not cause a tight loop. */
export const MIN_RENEWAL_DELAY_MS = 1000;

/**
 * Renew at half the lifetime, ±10% of the lifetime as jitter, so a fleet started together spreads out.
 * The lifetime counts from when the certificate was received (`now`), not from notBefore: CAs backdate
 * notBefore for clock skew (Cinch by 60 s), which for a 30-second certificate would put half-life in the past.
 */
export function renewalDelayMs(notBefore: Date, notAfter: Date, now: Date, random: () => number = Math.random): number {
  const start = Math.max(notBefore.getTime(), now.getTime());
  const lifetime = Math.max(0, notAfter.getTime() - start);
  const jitter = (random() * 2 - 1) * 0.1 * lifetime;
  return Math.max(MIN_RENEWAL_DELAY_MS, start + lifetime / 2 + jitter - now.getTime());
}

/**
 * Exponential backoff with full jitter for failed renewals: base·2^attempt capped at `maxMs`, then a
 * uniform draw in [½, 1] of that, so retries never synchronise. Never waits past the certificate's expiry
 * minus a safety margin (there is no point retrying after it is gone, and a last try just before matters).
 */
export function retryDelayMs(attempt: number, options: { baseMs?: number; maxMs?: number; expiresAt?: Date; now?: Date } = {}, random: () => number = Math.random): number {
  const base = options.baseMs ?? 1000;
  const max = options.maxMs ?? 60_000;
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  let delay = ceiling / 2 + random() * (ceiling / 2);
  if (options.expiresAt && options.now) {
    const left = options.expiresAt.getTime() - options.now.getTime();
    if (left > 0) delay = Math.min(delay, Math.max(base / 2, left / 4));
  }
  return Math.round(delay);
}
