// GET /v1/config?pod=NAME on the mTLS port 15012: each proxy, authenticated by its workload
// certificate, gets its pod's ProxyConfig at once and again whenever its version changes, as NDJSON
// (src/proxy/config.ts has the protocol and the client). One listener on the mesh state serves
// every stream; a slow reader only ever gets the latest config, never a backlog.
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import express, { type Request, type Response, type Router } from 'express';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { readCertificateFields } from '../ca/cert-fields.ts';
import { TAG, childrenOf, contentOf, expectNode } from '../ca/der.ts';
import { OID } from '../ca/profile.ts';
import { isDns1123Subdomain, parseWorkloadId, type WorkloadIdentity } from '../identity/spiffe.ts';
import { CONFIG_PATH, type ConfigMessage, type ProxyConfig } from '../proxy/config.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { MeshState } from './mesh-state.ts';
import { buildProxyConfig, proxyWorkload, type MeshSnapshot } from './proxy-config.ts';

export const HEARTBEAT_MS = 15_000;
const URI_NAME_TAG = 0x86;

/** What the router needs of MeshState (a fake in tests). */
export type ConfigSource = Pick<MeshState, 'snapshot' | 'trustDomain' | 'rootNamespace' | 'on' | 'off'>;

export interface ConfigRouterOptions {
  state: ConfigSource;
  /** Trust domain client certificates must be in; the state's by default (they must agree). */
  trustDomain?: string;
  /** Accepted for symmetry with the state; must agree with it (the config carries the state's). */
  rootNamespace?: string;
  logger: Logger;
  registry: Registry;
  /**
   * Aborted when the server shuts down: every stream is ended, new ones refused. A per-request
   * signal in `res.locals.closing` (the mesh server sets one) ends that request's stream the same way.
   */
  closing?: AbortSignal;
  heartbeatMs?: number;
}

export class PeerIdentityError extends Error {}

/**
 * The workload identity of a client certificate: exactly one URI SAN, a SPIFFE workload ID in the
 * trust domain. Read from the DER, since Node's subjectAltName string quotes unusual values.
 */
export function workloadIdentityOf(cert: X509Certificate, trustDomain: string): WorkloadIdentity {
  const san = readCertificateFields(cert.raw).extensions.get(OID.subjectAltName);
  if (!san) throw new PeerIdentityError('the client certificate has no subjectAltName');
  const names = expectNode(san.value, 0, TAG.SEQUENCE, 'subjectAltName');
  const uris = childrenOf(san.value, names).filter((n) => n.tag === URI_NAME_TAG);
  if (uris.length !== 1) throw new PeerIdentityError(`the client certificate must have exactly one URI SAN, it has ${uris.length}`);
  const uri = contentOf(san.value, uris[0]).toString('latin1');
  const identity = parseWorkloadId(uri);
  if (identity.trustDomain !== trustDomain) throw new PeerIdentityError(`the client certificate is for trust domain ${JSON.stringify(identity.trustDomain)}, not ${JSON.stringify(trustDomain)}`);
  return identity;
}

function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

interface Stream {
  res: Response;
  namespace: string;
  pod: string;
  serviceAccount: string;
  version?: string;
  /** A newer config waits for 'drain'. */
  pending?: ProxyConfig;
  expiry?: NodeJS.Timeout;
  /** The server's own closing signal, when it provides one per request. */
  serverClosing?: AbortSignal;
}

/** The meshed destinations are the same object in every config of a snapshot: serialize them once, not once per proxy. */
const destinationsJson = new WeakMap<object, string>();

export function configLine(config: ProxyConfig): string {
  const { meshedDestinations, ...rest } = config;
  let destinations = destinationsJson.get(meshedDestinations);
  if (destinations === undefined) destinationsJson.set(meshedDestinations, (destinations = JSON.stringify(meshedDestinations)));
  const head = JSON.stringify(rest);
  return `{"type":"config","config":${head.slice(0, -1)},"meshedDestinations":${destinations}}}\n`;
}

function locallyClosing(res: Response): AbortSignal | undefined {
  const signal: unknown = res.locals.closing;
  return signal instanceof AbortSignal ? signal : undefined;
}

export function configRouter(opts: ConfigRouterOptions): Router {
  const { state, logger: log, closing } = opts;
  const trustDomain = opts.trustDomain ?? state.trustDomain;
  if (trustDomain !== state.trustDomain) throw new Error(`config router trust domain ${trustDomain} differs from the mesh state's ${state.trustDomain}`);
  if (opts.rootNamespace !== undefined && opts.rootNamespace !== state.rootNamespace) {
    throw new Error(`config router root namespace ${opts.rootNamespace} differs from the mesh state's ${state.rootNamespace}`);
  }

  const metrics = {
    streams: new Gauge({ name: 'cinch_config_streams', help: 'Open proxy config streams.', registers: [opts.registry] }),
    pushes: new Counter({
      name: 'cinch_config_pushes_total',
      help: 'Configs written to proxies: "initial" when a stream opens, "update" on a new version.',
      labelNames: ['reason'],
      registers: [opts.registry],
    }),
    latency: new Histogram({
      name: 'cinch_config_push_latency_seconds',
      help: 'From a change seen by the control plane to the new config written to a proxy stream.',
      buckets: [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5],
      registers: [opts.registry],
    }),
    refused: new Counter({ name: 'cinch_config_stream_refusals_total', help: 'Config stream requests refused, by error code.', labelNames: ['code'], registers: [opts.registry] }),
  };
  metrics.streams.set(0);

  const streams = new Set<Stream>();

  const write = (stream: Stream, message: ConfigMessage): boolean => stream.res.write(`${JSON.stringify(message)}\n`);

  const push = (stream: Stream, config: ProxyConfig, reason: 'initial' | 'update', changedAt?: number): void => {
    if (config.version === stream.version) return;
    // Never queue behind a slow reader: remember the newest and write it on 'drain'.
    if (stream.res.writableNeedDrain) {
      stream.pending = config;
      return;
    }
    stream.pending = undefined;
    stream.version = config.version;
    stream.res.write(configLine(config));
    metrics.pushes.inc({ reason });
    if (changedAt !== undefined) metrics.latency.observe((performance.now() - changedAt) / 1000);
    log.debug('config pushed', { pod: `${stream.namespace}/${stream.pod}`, version: config.version, reason });
  };

  const end = (stream: Stream, error?: { code: string; message: string }): void => {
    if (!streams.delete(stream)) return;
    clearTimeout(stream.expiry);
    metrics.streams.set(streams.size);
    if (error && !stream.res.writableEnded) write(stream, { type: 'error', error });
    stream.res.end();
  };

  /** The config for a stream's pod, or why the stream must end (pod gone, or now runs as someone else). */
  const configFor = (snapshot: MeshSnapshot, stream: Stream): ProxyConfig | { code: string; message: string } => {
    const pod = snapshot.pods.get(`${stream.namespace}/${stream.pod}`);
    if (!pod) return { code: 'pod_gone', message: `pod ${stream.namespace}/${stream.pod} no longer exists` };
    if (pod.serviceAccount !== stream.serviceAccount) {
      return { code: 'identity_mismatch', message: `pod ${stream.namespace}/${stream.pod} now runs as ServiceAccount ${pod.serviceAccount}` };
    }
    return buildProxyConfig(snapshot, proxyWorkload(pod));
  };

  const onChanged = (snapshot: MeshSnapshot, changedAt: number): void => {
    for (const stream of [...streams]) {
      try {
        const result = configFor(snapshot, stream);
        if ('version' in result) push(stream, result, 'update', changedAt);
        else end(stream, result);
      } catch (err) {
        log.error('could not build a proxy config', { pod: `${stream.namespace}/${stream.pod}`, err });
      }
    }
  };
  state.on('changed', onChanged);

  const heartbeatMs = opts.heartbeatMs ?? HEARTBEAT_MS;
  const heartbeat = setInterval(() => {
    for (const stream of streams) if (!stream.res.writableNeedDrain) write(stream, { type: 'heartbeat' });
  }, heartbeatMs);
  heartbeat.unref();

  const shutdown = () => {
    state.off('changed', onChanged);
    clearInterval(heartbeat);
    for (const stream of [...streams]) end(stream);
  };
  if (closing?.aborted) shutdown();
  else closing?.addEventListener('abort', shutdown, { once: true });
  // One listener per server signal (not per stream: AbortSignal warns past a few listeners).
  const hooked = new WeakSet<AbortSignal>();
  const hook = (signal: AbortSignal) => {
    if (hooked.has(signal)) return;
    hooked.add(signal);
    signal.addEventListener('abort', () => {
      for (const stream of [...streams]) if (stream.serverClosing === signal) end(stream);
    }, { once: true });
  };

  const refuse = (res: Response, status: number, code: string, message: string): void => {
    metrics.refused.inc({ code });
    if (status === 503) res.set('retry-after', '1');
    res.status(status).json(errorBody(code, message));
  };

  const router = express.Router();
  router.get(CONFIG_PATH, (req: Request, res: Response) => {
    const socket = req.socket as TLSSocket;
    const serverClosing = locallyClosing(res);
    if (closing?.aborted || serverClosing?.aborted) return refuse(res, 503, 'shutting_down', 'the control plane is shutting down; reconnect');
    // authorized: the client presented a certificate that chains to the trust bundle.
    const cert = socket.authorized === true && typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
    if (!cert) {
      const why = socket.authorizationError ? `: ${String(socket.authorizationError)}` : '';
      return refuse(res, 401, 'unauthenticated', `a workload certificate that chains to the mesh trust bundle is required${why}`);
    }
    let identity: WorkloadIdentity;
    try {
      identity = workloadIdentityOf(cert, trustDomain);
    } catch (err) {
      return refuse(res, 401, 'unauthenticated', `not a workload certificate: ${(err as Error).message}`);
    }
    const podName = req.query.pod;
    if (typeof podName !== 'string' || !isDns1123Subdomain(podName)) return refuse(res, 400, 'bad_request', 'query parameter pod must be one pod name');
    const snapshot = state.snapshot;
    if (!snapshot) return refuse(res, 503, 'not_ready', 'the control plane has not listed the cluster yet');
    const ref = `${identity.namespace}/${podName}`;
    const pod = snapshot.pods.get(ref);
    // The proxy retries: a pod created a moment ago may not be in the cache yet.
    if (!pod) return refuse(res, 404, 'pod_not_found', `pod ${ref} not found (in the certificate's namespace)`);
    if (pod.serviceAccount !== identity.serviceAccount) {
      return refuse(res, 403, 'forbidden', `pod ${ref} runs as ServiceAccount ${pod.serviceAccount}, the certificate is for ${identity.serviceAccount}`);
    }

    const stream: Stream = { res, namespace: identity.namespace, pod: podName, serviceAccount: identity.serviceAccount, serverClosing };
    if (serverClosing) hook(serverClosing);
    res.status(200);
    res.set({ 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.flushHeaders();
    socket.setNoDelay(true);
    streams.add(stream);
    metrics.streams.set(streams.size);
    res.on('close', () => end(stream));
    res.on('drain', () => {
      if (stream.pending) push(stream, stream.pending, 'update');
    });
    // A stream authenticated by a certificate lasts no longer than it; the proxy reconnects with its next one.
    const remaining = Date.parse(cert.validTo) - Date.now();
    stream.expiry = setTimeout(() => end(stream, { code: 'certificate_expired', message: 'the client certificate expired; reconnect with a fresh one' }), Math.min(Math.max(remaining, 0), 2 ** 31 - 1));
    stream.expiry.unref();
    log.debug('config stream opened', { pod: ref, serviceAccount: identity.serviceAccount });
    push(stream, buildProxyConfig(snapshot, proxyWorkload(pod)), 'initial');
  });
  return router;
}
