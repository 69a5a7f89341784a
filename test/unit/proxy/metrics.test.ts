// The proxy's request metrics update prom-client's series in place; what /metrics exports must stay
// exactly what prom-client's own label API would have produced.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { ProxyMetrics, UNKNOWN, type ConnectionPeers } from '../../../src/proxy/metrics.ts';
import { ISTIO_DURATION_BUCKETS_MS } from '../../../src/telemetry/metrics.ts';

const HTTP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_service',
  'request_protocol',
  'connection_security_policy',
  'response_code',
] as const;

/** istio_requests_total and istio_request_duration_milliseconds through prom-client's public API, one label object per call. */
class Reference {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'istio_requests_total', help: 'Requests handled by the proxy (HTTP and gRPC).', labelNames: HTTP_LABELS, registers: [this.registry] });
  readonly duration = new Histogram({
    name: 'istio_request_duration_milliseconds',
    help: 'Request duration, from the request reaching the proxy to the response finishing.',
    labelNames: HTTP_LABELS,
    buckets: ISTIO_DURATION_BUCKETS_MS,
    registers: [this.registry],
  });
  record(peers: ConnectionPeers, statusCode: number, grpc: boolean, ms: number): void {
    const ns = (p?: string) => (p ? /\/ns\/([^/]+)\//.exec(p)?.[1] : undefined);
    const labels = {
      reporter: peers.reporter,
      source_workload: peers.sourceWorkload || UNKNOWN,
      source_workload_namespace: peers.sourceNamespace || ns(peers.sourcePrincipal) || UNKNOWN,
      source_principal: peers.sourcePrincipal || UNKNOWN,
      destination_workload: peers.destinationWorkload || UNKNOWN,
      destination_workload_namespace: peers.destinationNamespace || ns(peers.destinationPrincipal) || UNKNOWN,
      destination_principal: peers.destinationPrincipal || UNKNOWN,
      destination_service: peers.destinationService || UNKNOWN,
      request_protocol: grpc ? 'grpc' : 'http',
      connection_security_policy: peers.mtls ? 'mutual_tls' : 'none',
      response_code: String(statusCode),
    };
    this.requests.inc(labels);
    this.duration.observe(labels, ms);
  }
}

const requestMetrics = (registry: Registry) =>
  Promise.all(['istio_requests_total', 'istio_request_duration_milliseconds'].map((name) => registry.getSingleMetricAsString(name)));

const sleep: ConnectionPeers = {
  reporter: 'destination',
  sourcePrincipal: 'spiffe://cluster.local/ns/bar/sa/sleep',
  destinationPrincipal: 'spiffe://cluster.local/ns/foo/sa/httpbin',
  destinationWorkload: 'httpbin',
  destinationNamespace: 'foo',
  mtls: true,
};
const plain: ConnectionPeers = { reporter: 'destination', destinationWorkload: 'httpbin', destinationNamespace: 'foo', mtls: false };
// Label values a peer chose: quotes, separators, a NUL; two that would collide if joined naively.
const odd1: ConnectionPeers = { reporter: 'destination', sourcePrincipal: 'spiffe://td/ns/a"b/sa/c,d:e\u0000', mtls: true };
const odd2: ConnectionPeers = { reporter: 'destination', sourcePrincipal: 'spiffe://td/ns/a"b/sa/c', sourceWorkload: ',d:e\u0000', mtls: true };

// Every bucket edge, values just past them, zero, past the last bucket, fractions.
const DURATIONS = [0, 0.25, 0.5, 0.5000001, 1, 3, 5, 10, 24.9, 25, 99, 100, 250, 499, 500, 1000, 2500, 5000, 10000, 30000, 60000, 60000.5, 1e7];

test('exports exactly what prom-client label objects give: series, buckets, sums, across connections and codes', async () => {
  const registry = new Registry();
  const metrics = new ProxyMetrics(registry);
  const reference = new Reference();
  const connections = [sleep, sleep, plain, odd1, odd2].map((peers) => ({ peers, series: metrics.httpSeries(peers) }));
  let i = 0;
  for (const ms of DURATIONS) {
    for (const { peers, series } of connections) {
      const code = [200, 200, 403, 503, 200][i++ % 5];
      const grpc = i % 7 === 0;
      series.record(code, grpc, ms);
      reference.record(peers, code, grpc, ms);
    }
  }
  assert.deepEqual(await requestMetrics(registry), await requestMetrics(reference.registry));
  assert.match((await requestMetrics(registry))[0], /istio_requests_total\{[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/bar\/sa\/sleep"[^}]*response_code="200"\} \d+/);
});

test('after a reset or a removed series, requests are counted again from zero, as prom-client would', async () => {
  const registry = new Registry();
  const metrics = new ProxyMetrics(registry);
  const reference = new Reference();
  const series = metrics.httpSeries(sleep);
  const both = (code: number, ms: number) => {
    series.record(code, false, ms);
    reference.record(sleep, code, false, ms);
  };
  both(200, 3);
  both(200, 7);
  registry.resetMetrics();
  reference.registry.resetMetrics();
  both(200, 30);
  both(404, 1);
  assert.deepEqual(await requestMetrics(registry), await requestMetrics(reference.registry));
  const labels = { ...(await registry.getMetricsAsJSON()).find((m) => m.name === 'istio_requests_total')!.values[0].labels };
  metrics.requests.remove(labels);
  metrics.duration.remove(labels);
  reference.requests.remove(labels);
  reference.duration.remove(labels);
  both(200, 2);
  assert.deepEqual(await requestMetrics(registry), await requestMetrics(reference.registry));
  assert.match((await requestMetrics(registry))[0], /response_code="200"\} 1$/m);
});

test('a duration that is not a number is refused as prom-client refuses it, and the histogram takes nothing from it', async () => {
  const registry = new Registry();
  const metrics = new ProxyMetrics(registry);
  const series = metrics.httpSeries(sleep);
  series.record(200, false, 1);
  assert.throws(() => series.record(200, false, Number.NaN), TypeError);
  const text = (await requestMetrics(registry))[1];
  assert.match(text, /istio_request_duration_milliseconds_count\{[^}]*\} 1$/m);
  assert.match(text, /istio_request_duration_milliseconds_sum\{[^}]*\} 1$/m);
});
