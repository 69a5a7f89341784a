// Caller authentication for the CA: a ServiceAccount token, checked by the API server's TokenReview
// (the authority: it knows about deleted pods and ServiceAccounts, which a local JWT check does not).
// Positive answers are cached for a few seconds, keyed by a hash of the token, never the token itself.
import { hash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { Counter, Histogram, type Registry } from 'prom-client';
import { FAST_LATENCY_BUCKETS_SECONDS } from '../telemetry/metrics.ts';

export interface Caller {
  namespace: string;
  serviceAccount: string;
  serviceAccountUid?: string;
  podName?: string;
  podUid?: string;
}

export class AuthenticationError extends Error {
  readonly status = 401;
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export interface TokenAuthenticatorOptions {
  audience: string;
  /** At most 10 s: a deleted pod or ServiceAccount must stop authenticating quickly. */
  cacheTtlMs?: number;
  maxCacheEntries?: number;
  registry?: Registry;
}

const MAX_TOKEN_BYTES = 16 * 1024;
/** Short: a token refused because its pod was not cached yet by the API server must not stay refused for long. */
const NEGATIVE_CACHE_MS = 2000;
const SA_PREFIX = 'system:serviceaccount:';
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Pure: the caller a successful TokenReview status describes, or why it does not describe one. */
export function callerFromReview(
  status: { authenticated?: boolean; error?: string; audiences?: string[]; user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> } },
  audience: string,
): Caller {
  if (!status.authenticated) throw new AuthenticationError('invalid_token', `token rejected by the API server${status.error ? `: ${status.error}` : ''}`);
  if (status.audiences && !status.audiences.includes(audience)) throw new AuthenticationError('wrong_audience', `token is not for audience ${audience}`);
  const username = status.user?.username ?? '';
  const groups = status.user?.groups ?? [];
  if (!username.startsWith(SA_PREFIX) || !groups.includes('system:serviceaccounts')) {
    throw new AuthenticationError('not_service_account', `token belongs to "${username}", not to a ServiceAccount`);
  }
  const [namespace, serviceAccount, ...rest] = username.slice(SA_PREFIX.length).split(':');
  if (!namespace || !serviceAccount || rest.length) throw new AuthenticationError('not_service_account', `malformed ServiceAccount username "${username}"`);
  const extra = status.user?.extra ?? {};
  return {
    namespace,
    serviceAccount,
    serviceAccountUid: status.user?.uid,
    podName: extra['authentication.kubernetes.io/pod-name']?.[0],
    podUid: extra['authentication.kubernetes.io/pod-uid']?.[0],
  };
}

export class TokenAuthenticator {
  private readonly authn: AuthenticationV1Api;
  private readonly core: CoreV1Api;
  private readonly cache = new Map<string, { caller: Caller; expires: number }>();
  /** Refused tokens, briefly: a client retrying a bad token in a loop costs one TokenReview per window, not one per request. */
  private readonly refused = new Map<string, { error: AuthenticationError; expires: number }>();
  private readonly inflight = new Map<string, Promise<Caller>>();
  private readonly opts: Required<Omit<TokenAuthenticatorOptions, 'registry'>>;
  private readonly metrics?: { duration: Histogram<'result'>; cache: Counter<'result'> };

  constructor(kc: KubeConfig, options: TokenAuthenticatorOptions) {
    this.authn = kc.makeApiClient(AuthenticationV1Api);
    this.core = kc.makeApiClient(CoreV1Api);
    this.opts = { cacheTtlMs: 10_000, maxCacheEntries: 10_000, ...options };
    if (this.opts.cacheTtlMs > 10_000) throw new Error('token review cache TTL must be at most 10 s');
    if (options.registry) {
      this.metrics = {
        duration: new Histogram({
          name: 'cinch_ca_token_review_duration_seconds',
          help: 'TokenReview round trips (including the pod check for pod-bound tokens).',
          labelNames: ['result'],
          buckets: FAST_LATENCY_BUCKETS_SECONDS,
          registers: [options.registry],
        }),
        cache: new Counter({
          name: 'cinch_ca_token_review_cache_total',
          help: 'Token authentications answered from the short positive cache (hit) or by the API server (miss).',
          labelNames: ['result'],
          registers: [options.registry],
        }),
      };
    }
  }

  /** The authenticated caller of a bearer token; AuthenticationError (401) otherwise. */
  async authenticate(token: string | undefined): Promise<Caller> {
    if (!token) throw new AuthenticationError('missing_token', 'no bearer token: send Authorization: Bearer <ServiceAccount token with audience cinch-ca>');
    if (token.length > MAX_TOKEN_BYTES) throw new AuthenticationError('invalid_token', 'token is too large');
    // One-shot hash(): ~0.6 µs cheaper than createHash().update().digest() for a ~1 KiB token.
    const key = hash('sha256', token, 'base64url');
    const now = Date.now();
    const hit = this.cache.get(key);
    // Only tokens that passed the JWT shape check below are ever cached, so a hit (same hash, so the
    // same token) has passed it already: the scan of the whole token is for tokens not seen recently.
    if (hit && hit.expires > now) {
      this.metrics?.cache.inc({ result: 'hit' });
      return hit.caller;
    }
    if (!JWT_SHAPE.test(token)) throw new AuthenticationError('invalid_token', 'token is not a JWT');
    const no = this.refused.get(key);
    if (no && no.expires > now) {
      this.metrics?.cache.inc({ result: 'refused_hit' });
      throw no.error;
    }
    this.metrics?.cache.inc({ result: 'miss' });
    // Concurrent requests with one token (a restarting Deployment) share one review.
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.review(token).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    let caller: Caller;
    try {
      caller = await pending;
    } catch (err) {
      if (err instanceof AuthenticationError) {
        if (this.refused.size >= this.opts.maxCacheEntries) this.refused.clear();
        this.refused.set(key, { error: err, expires: now + NEGATIVE_CACHE_MS });
      }
      throw err;
    }
    if (this.cache.size >= this.opts.maxCacheEntries) this.evictExpired(now);
    if (this.cache.size < this.opts.maxCacheEntries) this.cache.set(key, { caller, expires: now + this.opts.cacheTtlMs });
    return caller;
  }

  private evictExpired(now: number): void {
    for (const [k, v] of this.cache) if (v.expires <= now) this.cache.delete(k);
  }

  private async review(token: string): Promise<Caller> {
    const started = performance.now();
    let result = 'ok';
    try {
      const res = await this.authn.createTokenReview({ body: { spec: { token, audiences: [this.opts.audience] } } });
      const caller = callerFromReview(res.status ?? {}, this.opts.audience);
      if (caller.podName && caller.podUid) await this.checkPod(caller);
      return caller;
    } catch (err) {
      result = err instanceof AuthenticationError ? err.code : 'error';
      throw err;
    } finally {
      this.metrics?.duration.observe({ result }, (performance.now() - started) / 1000);
    }
  }

  /** A pod-bound token is only good while its pod exists with the same uid. */
  private async checkPod(caller: Caller): Promise<void> {
    try {
      const pod = await this.core.readNamespacedPod({ name: caller.podName!, namespace: caller.namespace });
      if (pod.metadata?.uid !== caller.podUid) throw new AuthenticationError('pod_gone', `pod ${caller.namespace}/${caller.podName} was replaced (uid differs)`);
      if (pod.metadata?.deletionTimestamp) throw new AuthenticationError('pod_gone', `pod ${caller.namespace}/${caller.podName} is being deleted`);
    } catch (err) {
      if ((err as { code?: number }).code === 404) throw new AuthenticationError('pod_gone', `pod ${caller.namespace}/${caller.podName} no longer exists`);
      throw err;
    }
  }
}
