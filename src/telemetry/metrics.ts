// Each component owns a registry (control plane, proxy), so two in one process never collide.
import { Registry, collectDefaultMetrics } from 'prom-client';

export function createRegistry(defaultLabels?: Record<string, string>): Registry {
  const registry = new Registry();
  if (defaultLabels) registry.setDefaultLabels(defaultLabels);
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Millisecond-scale latency buckets (seconds), for admission, signing and proxying. */
export const FAST_LATENCY_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Istio's histogram for istio_request_duration_milliseconds (milliseconds). */
export const ISTIO_DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];
