// The admission webhook: AdmissionReview over HTTPS (port 15017): POST /inject for pods, POST /validate for
// Istio-format policies. The decisions come from the injector and the policy core; this shell speaks the protocol.
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../telemetry/logger.ts';
import {
  BadReviewError,
  isPodCreate,
  parseAdmissionReview,
  podDisplayName,
  podOf,
  encodeReviewResponse,
  type AdmissionRequest,
  type AdmissionReview,
  type MutationResult,
} from './admission.ts';
import type { V1Pod } from '@kubernetes/client-node';
import { createWebhookMetrics } from './metrics.ts';
import { admitPolicy } from './policy-admission.ts';
import type { PolicyOptions } from '../policy/types.ts';
import { sendJsonText } from '../http/json.ts';

export type Mutator = (pod: V1Pod, request: AdmissionRequest) => MutationResult | Promise<MutationResult>;

export interface WebhookServerOptions {
  key: string | Buffer;
  cert: string | Buffer;
  mutate: Mutator;
  registry: Registry;
  logger: Logger;
  /** Largest body accepted; a pod object is at most ~1.5 MiB in etcd, so 3 MiB leaves room for the review around it. */
  bodyLimit?: string;
  /** Reasons the webhook is not ready yet (empty when ready). */
  notReadyReasons?: () => string[];
  /** For /validate: the mesh's root namespace (policy warnings depend on it). */
  policyOptions?: PolicyOptions;
}

export interface WebhookServer {
  server: https.Server;
  listen(port: number, host?: string): Promise<number>;
  /** Swap the serving certificate for new handshakes; open connections keep theirs. */
  setCertificate(key: string | Buffer, cert: string | Buffer): void;
  /** Stops accepting, lets in-flight reviews finish (up to `graceMs`), then closes everything. */
  close(graceMs?: number): Promise<void>;
}

const JSON_TYPES = ['application/json', 'application/*+json'];

function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

export function createWebhookServer(opts: WebhookServerOptions): WebhookServer {
  const metrics = createWebhookMetrics(opts.registry);
  const log = opts.logger;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // While shutting down, a keep-alive connection is closed as soon as its last response is out.
  let closing = false;
  app.use((_req, res, next) => {
    res.on('finish', () => {
      if (closing) setImmediate(() => server.closeIdleConnections());
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok\n');
  });
  app.get('/readyz', (_req, res) => {
    const reasons = opts.notReadyReasons?.() ?? [];
    res.status(reasons.length ? 503 : 200).type('text/plain').send(reasons.length ? `${reasons.join('\n')}\n` : 'ok\n');
  });

  const jsonBody = express.json({ limit: opts.bodyLimit ?? '3mb', type: JSON_TYPES });
  /** The parsed AdmissionReview, or undefined once a 415/400 has been answered (`invalid` counts why). */
  const readReview = (req: Request, res: Response, invalid?: (reason: string) => void): AdmissionReview | undefined => {
    if (!req.is(JSON_TYPES)) {
      invalid?.('content_type');
      res.status(415).json(errorBody('unsupported_media_type', `content-type must be application/json, got ${req.get('content-type') ?? 'none'}`));
      return undefined;
    }
    try {
      return parseAdmissionReview(req.body);
    } catch (err) {
      if (!(err instanceof BadReviewError)) throw err;
      invalid?.('bad_review');
      res.status(400).json(errorBody('bad_request', `invalid AdmissionReview: ${err.message}`));
      return undefined;
    }
  };

  app.post('/inject', jsonBody, async (req: Request, res: Response) => {
    const started = performance.now();
    const review = readReview(req, res, (reason) => metrics.requests.inc({ result: 'invalid', reason }));
    if (!review) return;
    const request = review.request;
    if (!isPodCreate(request)) {
      metrics.requests.inc({ result: 'ignored', reason: 'not_pod_create' });
      sendJsonText(res, 200, encodeReviewResponse(review, { kind: 'allow' }));
      return;
    }
    // Built only when a line is written: on the hot path (info level, injected) nothing is logged.
    const podLog = () => log.child({ namespace: request.namespace, pod: podDisplayName(request), uid: request.uid });
    let result: MutationResult;
    try {
      result = await opts.mutate(podOf(request), request);
    } catch (err) {
      // An injector bug must not let an unmeshed pod through silently: refuse, and say why.
      podLog().error('injection failed', { err });
      result = { kind: 'refuse', reason: 'internal_error', message: `cinch injection failed: ${(err as Error).message}` };
    }
    const outcome = result.kind === 'patch' ? 'injected' : result.kind === 'skip' ? 'skipped' : 'refused';
    metrics.requests.inc({ result: outcome, reason: result.reason });
    metrics.duration.observe({ result: outcome }, (performance.now() - started) / 1000);
    if (result.kind === 'refuse') podLog().warn('pod refused', { reason: result.reason, message: result.message });
    else if (log.isDebugEnabled()) podLog().debug(outcome, { reason: result.reason });
    sendJsonText(res, 200, encodeReviewResponse(review, result));
  });

  // Istio-format policies, checked at kubectl apply (ValidatingWebhookConfiguration cinch-policy-validator).
  app.post('/validate', jsonBody, (req: Request, res: Response) => {
    const review = readReview(req, res);
    if (!review) return;
    const result = admitPolicy(review.request, opts.policyOptions);
    metrics.policyReviews.inc({ result: result.kind === 'refuse' ? 'refused' : 'allowed', reason: result.reason });
    if (result.kind === 'refuse') log.info('policy refused at admission', { namespace: review.request.namespace, name: review.request.name, message: result.message });
    sendJsonText(res, 200, encodeReviewResponse(review, result));
  });

  app.use((_req, res) => {
    res.status(404).json(errorBody('not_found', 'unknown path; the webhook serves POST /inject, POST /validate, GET /healthz, GET /readyz'));
  });
  // express.json's errors carry a status (413 too large, 400 unparsable, 415 bad charset).
  app.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    const code = status === 413 ? 'payload_too_large' : status === 400 ? 'bad_request' : status === 415 ? 'unsupported_media_type' : 'internal';
    metrics.requests.inc({ result: 'invalid', reason: code });
    if (status === 500) log.error('webhook error', { err });
    const message = status === 400 && err.type === 'entity.parse.failed' ? `body is not valid JSON: ${err.message}` : err.message;
    res.status(status).json(errorBody(code, message));
  });

  const server = https.createServer({ key: opts.key, cert: opts.cert, minVersion: 'TLSv1.2' }, app);
  server.keepAliveTimeout = 60_000; // the API server reuses connections between reviews

  return {
    server,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      }),
    setCertificate: (key, cert) => server.setSecureContext({ key, cert, minVersion: 'TLSv1.2' }),
    close: (graceMs = 10_000) =>
      new Promise((resolve) => {
        closing = true;
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
