// The CA's Prometheus metrics. TokenReview latency and cache hits live with the authenticator
// (src/identity/token-review.ts); these cover what the CA itself does with a request.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { FAST_LATENCY_BUCKETS_SECONDS } from '../telemetry/metrics.ts';
import type { CaMaterial } from './material.ts';

// A check and a signature take ~0.1-0.2 ms: two finer buckets below the shared ones keep that visible.
export const SIGNING_BUCKETS_SECONDS = [0.0001, 0.00025, ...FAST_LATENCY_BUCKETS_SECONDS];

export interface CaMetrics {
  readonly issued: Counter;
  /** `reason` is a fixed code (the API's error code, or `rate_limited`, `not_ready`…), never client text. */
  readonly refused: Counter<'reason'>;
  /** The CSR check and the signature: the CPU the CA spends per certificate. */
  readonly signingDuration: Histogram;
  readonly rootExpiry: Gauge;
  readonly signingCertExpiry: Gauge;
  /** Sets the expiry gauges from the material in use (at start and after every reload). */
  observeMaterial(material: Pick<CaMaterial, 'rootNotAfter' | 'signingCertNotAfter'>): void;
}

export function createCaMetrics(registry: Registry): CaMetrics {
  const registers = [registry];
  const rootExpiry = new Gauge({
    name: 'cinch_ca_root_expiry_timestamp_seconds',
    help: 'When the root of the signing chain expires (Unix seconds).',
    registers,
  });
  const signingCertExpiry = new Gauge({
    name: 'cinch_ca_signing_cert_expiry_timestamp_seconds',
    help: 'When the certificate the CA signs with (root or intermediate) expires (Unix seconds).',
    registers,
  });
  return {
    issued: new Counter({
      name: 'cinch_ca_certificates_issued_total',
      help: 'Workload certificates issued over the CA API.',
      registers,
    }),
    refused: new Counter({
      name: 'cinch_ca_certificate_requests_refused_total',
      help: 'Certificate requests refused, by reason (bad_csr, identity_mismatch, invalid_token, rate_limited, not_ready, …).',
      labelNames: ['reason'],
      registers,
    }),
    signingDuration: new Histogram({
      name: 'cinch_ca_signing_duration_seconds',
      help: 'Time to check a CSR and sign its certificate (token review excluded).',
      buckets: SIGNING_BUCKETS_SECONDS,
      registers,
    }),
    rootExpiry,
    signingCertExpiry,
    observeMaterial(material) {
      rootExpiry.set(material.rootNotAfter.getTime() / 1000);
      signingCertExpiry.set(material.signingCertNotAfter.getTime() / 1000);
    },
  };
}
