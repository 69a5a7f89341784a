import { Counter, Histogram, type Registry } from 'prom-client';
import { FAST_LATENCY_BUCKETS_SECONDS } from '../telemetry/metrics.ts';

export interface WebhookMetrics {
  requests: Counter<'result' | 'reason'>;
  duration: Histogram<'result'>;
  policyReviews: Counter<'result' | 'reason'>;
}

export function createWebhookMetrics(registry: Registry): WebhookMetrics {
  return {
    requests: new Counter({
      name: 'cinch_injection_requests_total',
      help: 'Admission reviews by result (injected, skipped, refused, ignored, invalid) and reason.',
      labelNames: ['result', 'reason'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'cinch_injection_duration_seconds',
      help: 'Time to answer an admission review, from parsed body to response.',
      labelNames: ['result'],
      buckets: FAST_LATENCY_BUCKETS_SECONDS,
      registers: [registry],
    }),
    policyReviews: new Counter({
      name: 'cinch_policy_admission_total',
      help: 'PeerAuthentication and AuthorizationPolicy admission reviews by result (allowed, refused) and reason.',
      labelNames: ['result', 'reason'],
      registers: [registry],
    }),
  };
}
