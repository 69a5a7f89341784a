// The CA API (DESIGN.md "CA API"): POST /v1/certificates and GET /v1/trust-bundle, as an express
// router for the mesh server on 15012. Order of checks, cheapest and least revealing first:
// ready → token (TokenReview) → per-identity rate limit → body → CSR → sign. The identity is the
// token's ServiceAccount; the CSR only contributes its public key. The CSR check and the signature
// run synchronously on purpose: together well under a millisecond, less than a hand-off to a worker.
import { performance } from 'node:perf_hooks';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { AuthenticationError, type Caller } from '../identity/token-review.ts';
import { SpiffeIdError, formatWorkloadId } from '../identity/spiffe.ts';
import type { Logger } from '../telemetry/logger.ts';
import { checkCsr } from './csr.ts';
import { CaError } from './errors.ts';
import type { FastLeafSigner } from './fast-signer.ts';
import type { CaMetrics } from './metrics.ts';
import { retryAfterSeconds, type RateDecision } from './rate-limit.ts';

export const CERTIFICATES_PATH = '/v1/certificates';
export const TRUST_BUNDLE_PATH = '/v1/trust-bundle';
/** A P-256 CSR is < 1 KiB and the CSR itself is capped at 16 KiB; the rest is room for JSON. */
export const DEFAULT_BODY_LIMIT_BYTES = 64 * 1024;
/** What a client not yet served is told to wait before trying again. */
const NOT_READY_RETRY_SECONDS = 5;
const AUTH_UNAVAILABLE_RETRY_SECONDS = 2;

export interface CaAuthenticator {
  /** The caller a bearer token belongs to; AuthenticationError for a bad token, anything else when it cannot tell. */
  authenticate(token: string | undefined): Promise<Caller>;
}

export interface CaRateLimiter {
  take(identity: string): RateDecision;
}

export interface CaRouterOptions {
  /** The current signer; undefined while the CA is not loaded (→ 503). */
  signer: () => FastLeafSigner | undefined;
  /** The current roots (several during a rotation). */
  trustBundle: () => readonly string[];
  authenticator: CaAuthenticator;
  trustDomain: string;
  rateLimiter: CaRateLimiter;
  metrics: CaMetrics;
  logger: Logger;
  bodyLimitBytes?: number;
}

/** Who is asking, for logs: everything but the token. */
interface RequestContext {
  namespace?: string;
  serviceAccount?: string;
  pod?: string;
  identity?: string;
  remoteAddress?: string;
}

interface Authorized {
  signer: FastLeafSigner;
  caller: Caller;
  identity: string;
}

interface Refusal {
  status: number;
  code: string;
  message: string;
  retryAfterSeconds?: number;
  /** A refusal that is the CA's fault or an attack pattern is worth more than a warning. */
  level?: 'warn' | 'error';
}

function bearerToken(req: Request): string | undefined {
  const header = req.get('authorization');
  if (header === undefined) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!match) throw new AuthenticationError('missing_token', 'the Authorization header must be "Bearer <ServiceAccount token>"');
  return match[1];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** RFC 3339 in UTC, whole seconds (X.509 times carry no fractions). */
function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

class BodyError extends Error {
  /** 0: the client aborted. */
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Reads and parses a JSON body of at most `limit` bytes, whatever the content type (`curl --data`
 * sends form-urlencoded; this endpoint only speaks JSON). UTF-8 only, as RFC 8259 requires; no
 * content encodings. A declared length over the limit is refused before anything is read.
 */
function readJsonBody(req: Request, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
      return reject(new BodyError(415, 'unsupported_media_type', `content-encoding ${JSON.stringify(encoding)} is not supported; send the JSON as is`));
    }
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      return reject(new BodyError(413, 'payload_too_large', `the body is larger than ${limit} bytes`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(new BodyError(413, 'payload_too_large', `the body is larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      const text = (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new BodyError(400, 'bad_request', `the body is not valid JSON: ${(err as Error).message}`));
      }
    };
    const onError = () => {
      cleanup();
      reject(new BodyError(0, 'aborted', 'the client aborted the request'));
    };
    const onClose = () => {
      if (!req.complete) onError();
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

export function caRouter(opts: CaRouterOptions): Router {
  const { metrics } = opts;
  const log = opts.logger;
  const router = express.Router();

  const contextOf = (req: Request, res: Response): RequestContext => {
    const authorized = res.locals.ca as Authorized | undefined;
    return {
      namespace: authorized?.caller.namespace,
      serviceAccount: authorized?.caller.serviceAccount,
      pod: authorized?.caller.podName,
      identity: authorized?.identity,
      remoteAddress: req.socket.remoteAddress,
    };
  };

  const refuse = (req: Request, res: Response, refusal: Refusal): void => {
    metrics.refused.inc({ reason: refusal.code });
    log[refusal.level ?? 'warn']('certificate request refused', {
      ...contextOf(req, res),
      reason: refusal.code,
      status: refusal.status,
      // Not `message`: winston would append it to the log message.
      detail: refusal.message,
    });
    if (refusal.retryAfterSeconds !== undefined) res.set('retry-after', String(refusal.retryAfterSeconds));
    // RFC 6750 3.1: no error code when the request carried no credentials at all.
    if (refusal.status === 401) res.set('www-authenticate', refusal.code === 'missing_token' ? 'Bearer realm="cinch-ca"' : 'Bearer realm="cinch-ca", error="invalid_token"');
    res.status(refusal.status).json({ error: { code: refusal.code, message: refusal.message } });
  };

  // Readiness, authentication and rate limit: all before the body is read.
  const authorize = async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const signer = opts.signer();
    if (!signer) {
      return refuse(req, res, {
        status: 503,
        code: 'not_ready',
        message: 'the CA has not loaded its signing material yet; retry later',
        retryAfterSeconds: NOT_READY_RETRY_SECONDS,
      });
    }
    let caller: Caller;
    try {
      caller = await opts.authenticator.authenticate(bearerToken(req));
    } catch (err) {
      if (err instanceof AuthenticationError) return refuse(req, res, { status: 401, code: err.code, message: err.message });
      // Not the client's fault: the API server could not be asked. A 401 would make it give up.
      log.error('token review failed', { remoteAddress: req.socket.remoteAddress, err });
      return refuse(req, res, {
        status: 503,
        code: 'authentication_unavailable',
        message: 'the token cannot be verified right now (the Kubernetes API server did not answer); retry later',
        retryAfterSeconds: AUTH_UNAVAILABLE_RETRY_SECONDS,
        level: 'error',
      });
    }
    let identity: string;
    try {
      identity = formatWorkloadId({ trustDomain: opts.trustDomain, namespace: caller.namespace, serviceAccount: caller.serviceAccount });
    } catch (err) {
      if (!(err instanceof SpiffeIdError)) throw err;
      return refuse(req, res, { status: 403, code: 'identity_not_allowed', message: `no SPIFFE ID for this ServiceAccount: ${err.message}` });
    }
    res.locals.ca = { signer, caller, identity } satisfies Authorized;
    const decision = opts.rateLimiter.take(identity);
    if (!decision.allowed) {
      const seconds = retryAfterSeconds(decision.retryAfterMs);
      return refuse(req, res, {
        status: 429,
        code: 'rate_limited',
        message: `too many certificate requests for ${identity}; retry in ${seconds} s`,
        retryAfterSeconds: seconds,
      });
    }
    next();
  };

  const bodyLimit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;

  const issue = async (req: Request, res: Response): Promise<void> => {
    const { signer, caller, identity } = res.locals.ca as Authorized;
    let body: unknown;
    try {
      body = await readJsonBody(req, bodyLimit);
    } catch (err) {
      if (!(err instanceof BodyError)) throw err;
      if (err.status === 0) return; // the client went away; nobody to answer
      // An unread remainder is not worth reading just to keep the connection.
      if (err.status === 413) res.set('connection', 'close');
      return refuse(req, res, { status: err.status, code: err.code, message: err.message });
    }
    if (!isPlainObject(body)) {
      return refuse(req, res, { status: 400, code: 'bad_request', message: 'the body must be a JSON object: {"csr": "<PEM>", "ttlSeconds": <optional>}' });
    }
    if (typeof body.csr !== 'string' || body.csr.trim() === '') {
      return refuse(req, res, { status: 400, code: 'bad_request', message: '"csr" is missing: it must be a PEM PKCS#10 certificate request' });
    }
    const started = performance.now();
    let leaf;
    try {
      const csr = checkCsr(body.csr, identity);
      leaf = signer.sign({ csr, spiffeId: identity, ttlSeconds: body.ttlSeconds });
    } catch (err) {
      if (!(err instanceof CaError)) throw err;
      return refuse(req, res, { status: err.status, code: err.code, message: err.message, level: err.status >= 500 ? 'error' : 'warn' });
    }
    const signingSeconds = (performance.now() - started) / 1000;
    // Written directly: express's res.json/res.send machinery costs more than the JSON itself.
    const json = JSON.stringify({ certChain: leaf.certChain, trustBundle: opts.trustBundle(), notAfter: rfc3339(leaf.notAfter) });
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(json) });
    res.end(json);
    // Bookkeeping after the answer is on its way: the audit line and metrics (~50 µs, mostly the
    // logger) overlap with the network and the client instead of adding to every request's latency.
    metrics.signingDuration.observe(signingSeconds);
    metrics.issued.inc();
    log.info('certificate issued', {
      namespace: caller.namespace,
      serviceAccount: caller.serviceAccount,
      pod: caller.podName,
      identity,
      serial: leaf.serialNumber,
      notAfter: leaf.notAfter.toISOString(),
      remoteAddress: req.socket.remoteAddress,
    });
  };

  router.post(CERTIFICATES_PATH, authorize, issue);

  router.get(TRUST_BUNDLE_PATH, (_req, res) => {
    const roots = opts.trustBundle();
    if (roots.length === 0) {
      res.set('retry-after', String(NOT_READY_RETRY_SECONDS));
      res.status(503).json({ error: { code: 'not_ready', message: 'the CA has not loaded its trust bundle yet; retry later' } });
      return;
    }
    res.set('cache-control', 'no-cache');
    res.type('application/x-pem-file').send(roots.map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`)).join(''));
  });

  const allow = (methods: string) => (_req: Request, res: Response) => {
    res.set('allow', methods);
    res.status(405).json({ error: { code: 'method_not_allowed', message: `use ${methods}` } });
  };
  router.all(CERTIFICATES_PATH, allow('POST'));
  router.all(TRUST_BUNDLE_PATH, allow('GET, HEAD'));
  return router;
}
