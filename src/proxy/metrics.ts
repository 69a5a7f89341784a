// Istio's standard proxy metrics (names and labels as istio.io/docs/reference/config/metrics), so
// existing dashboards work. Label values are principals, workloads and codes only (never paths or
// IPs), so cardinality stays bounded by the mesh's identities. Missing values are `unknown`.
import type net from 'node:net';
import { Counter, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import { ISTIO_DURATION_BUCKETS_MS } from '../telemetry/metrics.ts';

const PEER_LABELS = [
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
] as const;
const HTTP_LABELS = [...PEER_LABELS, 'response_code'] as const;

type PeerLabelName = (typeof PEER_LABELS)[number];
type HttpLabelName = (typeof HTTP_LABELS)[number];
type PeerLabelValues = Record<PeerLabelName, string>;

export const UNKNOWN = 'unknown';

/** Who talks to whom on one connection. Principals are full SPIFFE IDs, as Istio labels them. */
export interface ConnectionPeers {
  reporter: 'source' | 'destination';
  sourcePrincipal?: string;
  sourceWorkload?: string;
  sourceNamespace?: string;
  destinationPrincipal?: string;
  destinationWorkload?: string;
  destinationNamespace?: string;
  destinationService?: string;
  mtls: boolean;
}

export interface HttpSeries {
  /** One finished (or refused) request. */
  record(statusCode: number, grpc: boolean, durationMs: number): void;
}

export interface TcpTracker {
  /** The connection is over: count its last bytes and the close. Idempotent. */
  close(): void;
}

/** Namespace from `spiffe://td/ns/<ns>/sa/<sa>` (or the principal form), for source/destination namespace labels. */
export function namespaceOfPrincipal(principal: string | undefined): string | undefined {
  if (!principal) return undefined;
  const at = principal.indexOf('/ns/');
  if (at < 0) return undefined;
  const end = principal.indexOf('/', at + 4);
  return end < 0 ? undefined : principal.slice(at + 4, end);
}

interface OpenTcp {
  values: PeerLabelValues;
  socket: net.Socket;
  /** Which counter of `socket` counts request bytes (client to server). */
  requestBytesRead: boolean;
  received: number;
  sent: number;
}

/** Distinct request label sets kept resolved at once; beyond it the cache starts over. */
const MAX_CACHED_SERIES = 4096;

// prom-client keeps each series as one entry object in `hashMap`, under a key made of the label names
// (sorted) and values, and updates that object in place on inc()/observe() (lib/counter.js,
// lib/histogram.js, lib/util.js fastHashObject). Only the per-request path below relies on that, and
// it checks the entry is still the one under its key before each update.
interface CounterEntry {
  value: number;
}
interface HistogramEntry {
  sum: number;
  count: number;
  bucketValues: Record<number, number>;
}
interface PromInternals<E> {
  hashMap?: Record<string, E | undefined>;
  sortedLabelNames?: readonly string[];
}

function promHash(metric: PromInternals<unknown>, labels: Readonly<Record<string, string>>): string {
  let hash = '';
  for (const name of metric.sortedLabelNames ?? []) hash += `${name}:${labels[name]},`;
  return hash;
}

/** One request label set and the prom-client entries it resolved to (undefined until the first record). */
class RequestSeries {
  hash = '';
  counted: CounterEntry | undefined = undefined;
  observed: HistogramEntry | undefined = undefined;
  readonly labels: Readonly<Record<HttpLabelName, string>>;
  constructor(labels: Readonly<Record<HttpLabelName, string>>) {
    this.labels = labels;
  }
}

export class ProxyMetrics {
  readonly requests: Counter<HttpLabelName>;
  readonly duration: Histogram<HttpLabelName>;
  readonly tcpOpened: Counter<PeerLabelName>;
  readonly tcpClosed: Counter<PeerLabelName>;
  readonly tcpSent: Counter<PeerLabelName>;
  readonly tcpReceived: Counter<PeerLabelName>;
  private readonly open = new Set<OpenTcp>();
  /** Request series by label values; bounded by MAX_CACHED_SERIES. */
  private readonly series = new Map<string, RequestSeries>();
  private readonly bounds: readonly number[] = ISTIO_DURATION_BUCKETS_MS;

  constructor(registry: Registry) {
    const registers = [registry];
    // Bytes of long-lived connections are counted at each scrape, not only when they close.
    const flush = (): void => {
      for (const entry of this.open) this.flushBytes(entry);
    };
    this.requests = new Counter({ name: 'istio_requests_total', help: 'Requests handled by the proxy (HTTP and gRPC).', labelNames: HTTP_LABELS, registers });
    this.duration = new Histogram({
      name: 'istio_request_duration_milliseconds',
      help: 'Request duration, from the request reaching the proxy to the response finishing.',
      labelNames: HTTP_LABELS,
      buckets: ISTIO_DURATION_BUCKETS_MS,
      registers,
    });
    this.tcpOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened.', labelNames: PEER_LABELS, registers });
    this.tcpClosed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed.', labelNames: PEER_LABELS, registers });
    this.tcpSent = new Counter({
      name: 'istio_tcp_sent_bytes_total',
      help: 'Bytes sent in responses (server to client) on TCP connections.',
      labelNames: PEER_LABELS,
      registers,
      collect: flush,
    });
    this.tcpReceived = new Counter({
      name: 'istio_tcp_received_bytes_total',
      help: 'Bytes received in requests (client to server) on TCP connections.',
      labelNames: PEER_LABELS,
      registers,
      collect: flush,
    });
  }

  /**
   * The series of one connection's requests. Each (labels, response code, protocol) combination is
   * resolved once — per connection, and across connections through a bounded cache — to prom-client's
   * own series entries, which a request then updates in place: no label object, no label hash string,
   * no label validation per request (prom-client's `labels()` children redo all three on every call).
   */
  httpSeries(peers: ConnectionPeers): HttpSeries {
    const base = peerValues(peers, 'http');
    const baseKey = labelKey(base);
    const cache = new Map<number, RequestSeries>();
    return {
      record: (statusCode, grpc, durationMs) => {
        const key = statusCode * 2 + (grpc ? 1 : 0);
        let series = cache.get(key);
        if (!series) {
          series = this.requestSeries(base, baseKey, statusCode, grpc);
          cache.set(key, series);
        }
        this.recordRequest(series, durationMs);
      },
    };
  }

  private requestSeries(base: PeerLabelValues, baseKey: string, statusCode: number, grpc: boolean): RequestSeries {
    const code = String(statusCode);
    const key = `${baseKey}${grpc ? 'grpc' : 'http'} ${code}`;
    let series = this.series.get(key);
    if (!series) {
      // Label values come from peers (principals): past the bound, start over rather than grow.
      if (this.series.size >= MAX_CACHED_SERIES) this.series.clear();
      series = new RequestSeries({ ...base, request_protocol: grpc ? 'grpc' : base.request_protocol, response_code: code });
      this.series.set(key, series);
    }
    return series;
  }

  private recordRequest(series: RequestSeries, durationMs: number): void {
    const counter = this.requests as unknown as PromInternals<CounterEntry>;
    const histogram = this.duration as unknown as PromInternals<HistogramEntry>;
    const counted = series.counted;
    // The cached entries hold while prom-client still has them under their key (reset() replaces the
    // map, remove() deletes the key); otherwise the public calls below record and re-resolve them.
    if (counted !== undefined && counter.hashMap?.[series.hash] === counted) counted.value += 1;
    else {
      this.requests.inc(series.labels);
      series.counted = counter.hashMap?.[(series.hash ||= promHash(counter, series.labels))];
    }
    const observed = series.observed;
    if (observed !== undefined && Number.isFinite(durationMs) && histogram.hashMap?.[series.hash] === observed) {
      observed.sum += durationMs;
      observed.count += 1;
      // As prom-client's observe(): the first bucket whose upper bound holds the value, none past the last.
      const bounds = this.bounds;
      for (let i = 0; i < bounds.length; i++) {
        if (durationMs <= bounds[i]) {
          observed.bucketValues[bounds[i]] += 1;
          break;
        }
      }
    } else {
      this.duration.observe(series.labels, durationMs);
      series.observed = histogram.hashMap?.[(series.hash ||= promHash(histogram, series.labels))];
    }
  }

  /**
   * Counts a proxied TCP connection: opened now, bytes read from `socket`'s counters (the plaintext
   * side), closed when `close()` is called. `requestBytesRead`: the socket reads what the client sends.
   */
  tcpConnection(peers: ConnectionPeers, socket: net.Socket, requestBytesRead: boolean): TcpTracker {
    const values = peerValues(peers, 'tcp');
    this.tcpOpened.inc(values);
    const entry: OpenTcp = { values, socket, requestBytesRead, received: 0, sent: 0 };
    this.open.add(entry);
    return {
      close: () => {
        if (!this.open.delete(entry)) return;
        this.flushBytes(entry);
        this.tcpClosed.inc(values);
      },
    };
  }

  private flushBytes(entry: OpenTcp): void {
    const read = entry.socket.bytesRead;
    const written = entry.socket.bytesWritten;
    const received = entry.requestBytesRead ? read : written;
    const sent = entry.requestBytesRead ? written : read;
    if (received > entry.received) this.tcpReceived.inc(entry.values, received - entry.received);
    if (sent > entry.sent) this.tcpSent.inc(entry.values, sent - entry.sent);
    entry.received = received;
    entry.sent = sent;
  }
}

/** The label values as one unambiguous string (values may hold any character a peer put in them). */
function labelKey(values: PeerLabelValues): string {
  return JSON.stringify(PEER_LABELS.map((name) => values[name]));
}

function peerValues(peers: ConnectionPeers, protocol: string): PeerLabelValues {
  return {
    reporter: peers.reporter,
    source_workload: peers.sourceWorkload || UNKNOWN,
    source_workload_namespace: peers.sourceNamespace || namespaceOfPrincipal(peers.sourcePrincipal) || UNKNOWN,
    source_principal: peers.sourcePrincipal || UNKNOWN,
    destination_workload: peers.destinationWorkload || UNKNOWN,
    destination_workload_namespace: peers.destinationNamespace || namespaceOfPrincipal(peers.destinationPrincipal) || UNKNOWN,
    destination_principal: peers.destinationPrincipal || UNKNOWN,
    destination_service: peers.destinationService || UNKNOWN,
    request_protocol: protocol,
    connection_security_policy: peers.mtls ? 'mutual_tls' : 'none',
  };
}
