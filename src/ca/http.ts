// The CA API (DESIGN.md "CA API"): POST /v1/certificates and GET /v1/trust-bundle, as an express
// router for the mesh server on 15012. Order of checks, cheapest and least revealing first:
// ready → token (TokenReview) → per-identity rate limit → body → CSR → sign. The identity is the
// token's ServiceAccount; the CSR only contributes its public key. The CSR check and the signature
// run synchronously on purpose: together well under a millisecond, less than a hand-off to a worker.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import express, { type Request, type Response, type Router } from 'express';
import { AuthenticationError, type Caller } from '../identity/token-review.ts';
import { SpiffeIdError, formatWorkloadId } from '../identity/spiffe.ts';
import type { Logger } from '../telemetry/logger.ts';
import { checkCsr } from './csr.ts';
import { CaError } from './errors.ts';
import type { FastLeafSigner } from './fast-signer.ts';
import type { CaMetrics } from './metrics.ts';
import { retryAfterSeconds, type RateDecision } from './rate-limit.ts';
import { sendJson } from '../http/json.ts';
import { withRawRoutes } from '../http/raw-routes.ts';

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

interface Authorized {
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

function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!match) throw new AuthenticationError('missing_token', 'the Authorization header must be "Bearer <ServiceAccount token>"');
  return match[1];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** RFC 3339 in UTC, whole seconds (X.509 times carry no fractions), from an ISO string. */
function rfc3339(iso: string): string {
  // toISOString() is always YYYY-MM-DDTHH:mm:ss.sssZ for the years a certificate can have.
  return iso.endsWith('Z') && iso.length === 24 ? `${iso.slice(0, 19)}Z` : iso.replace(/\.\d{3}Z$/, 'Z');
}

/** Bytes of a JSON error body and its headers: what express's res.status().json() sent, without express. */
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
function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
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
  const bodyLimit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;

  const refuse = (req: IncomingMessage, res: ServerResponse, refusal: Refusal, who?: Authorized): void => {
    metrics.refused.inc({ reason: refusal.code });
    log[refusal.level ?? 'warn']('certificate request refused', {
      namespace: who?.caller.namespace,
      serviceAccount: who?.caller.serviceAccount,
      pod: who?.caller.podName,
      identity: who?.identity,
      remoteAddress: req.socket.remoteAddress,
      reason: refusal.code,
      status: refusal.status,
      // Not `message`: winston would append it to the log message.
      detail: refusal.message,
    });
    if (refusal.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(refusal.retryAfterSeconds));
    // RFC 6750 3.1: no error code when the request carried no credentials at all.
    if (refusal.status === 401) res.setHeader('www-authenticate', refusal.code === 'missing_token' ? 'Bearer realm="cinch-ca"' : 'Bearer realm="cinch-ca", error="invalid_token"');
    sendJson(res, refusal.status, { error: { code: refusal.code, message: refusal.message } });
  };

  // The SPIFFE ID of the last caller seen: callers come from the authenticator's cache, so the same
  // object comes back for every request of a token's 10 s window. Checked field by field, not trusted.
  let lastCaller: { namespace: string; serviceAccount: string; identity: string } | undefined;
  const identityOf = (caller: Caller): string => {
    const last = lastCaller;
    if (last !== undefined && last.namespace === caller.namespace && last.serviceAccount === caller.serviceAccount) return last.identity;
    const identity = formatWorkloadId({ trustDomain: opts.trustDomain, namespace: caller.namespace, serviceAccount: caller.serviceAccount });
    lastCaller = { namespace: caller.namespace, serviceAccount: caller.serviceAccount, identity };
    return identity;
  };

  // The trust bundle and the chain after the leaf as JSON, built once per CA: both are readonly arrays
  // of the loaded material, replaced whole (never changed in place) when the CA changes.
  let bundleRoots: readonly string[] | undefined;
  let bundleJson = '';
  const trustBundleJson = (): string => {
    const roots = opts.trustBundle();
    if (roots !== bundleRoots) {
      bundleRoots = roots;
      bundleJson = JSON.stringify(roots);
    }
    return bundleJson;
  };
  // A signer's chains all end in that signer's intermediates and root.
  let tailSigner: FastLeafSigner | undefined;
  let chainTailJson = '';
  const certChainJson = (signer: FastLeafSigner, chain: readonly string[]): string => {
    if (signer !== tailSigner) {
      tailSigner = signer;
      chainTailJson = chain.slice(1).map((pem) => `,${JSON.stringify(pem)}`).join('');
    }
    return `[${JSON.stringify(chain[0])}${chainTailJson}]`;
  };

  /**
   * POST /v1/certificates, on plain node:http objects: the mesh server calls it directly for this
   * exact path (express's router, res.json and friends cost more per request than the JSON itself),
   * and express serves it for every other spelling of the path. Readiness, authentication and rate
   * limit come before the body is read.
   */
  const issue = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
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
      identity = identityOf(caller);
    } catch (err) {
      if (!(err instanceof SpiffeIdError)) throw err;
      return refuse(req, res, { status: 403, code: 'identity_not_allowed', message: `no SPIFFE ID for this ServiceAccount: ${err.message}` });
    }
    const who: Authorized = { caller, identity };
    const decision = opts.rateLimiter.take(identity);
    if (!decision.allowed) {
      const seconds = retryAfterSeconds(decision.retryAfterMs);
      return refuse(
        req,
        res,
        {
          status: 429,
          code: 'rate_limited',
          message: `too many certificate requests for ${identity}; retry in ${seconds} s`,
          retryAfterSeconds: seconds,
        },
        who,
      );
    }

    let body: unknown;
    try {
      body = await readJsonBody(req, bodyLimit);
    } catch (err) {
      if (!(err instanceof BodyError)) throw err;
      if (err.status === 0) return; // the client went away; nobody to answer
      // An unread remainder is not worth reading just to keep the connection.
      if (err.status === 413) res.setHeader('connection', 'close');
      return refuse(req, res, { status: err.status, code: err.code, message: err.message }, who);
    }
    if (!isPlainObject(body)) {
      return refuse(req, res, { status: 400, code: 'bad_request', message: 'the body must be a JSON object: {"csr": "<PEM>", "ttlSeconds": <optional>}' }, who);
    }
    if (typeof body.csr !== 'string' || body.csr.trim() === '') {
      return refuse(req, res, { status: 400, code: 'bad_request', message: '"csr" is missing: it must be a PEM PKCS#10 certificate request' }, who);
    }
    const started = performance.now();
    let leaf;
    try {
      const csr = checkCsr(body.csr, identity);
      leaf = signer.sign({ csr, spiffeId: identity, ttlSeconds: body.ttlSeconds });
    } catch (err) {
      if (!(err instanceof CaError)) throw err;
      return refuse(req, res, { status: err.status, code: err.code, message: err.message, level: err.status >= 500 ? 'error' : 'warn' }, who);
    }
    const signingSeconds = (performance.now() - started) / 1000;
    const notAfter = leaf.notAfter.toISOString();
    // The same text JSON.stringify({ certChain, trustBundle, notAfter }) gives; only the leaf and the date are new.
    const json = `{"certChain":${certChainJson(signer, leaf.certChain)},"trustBundle":${trustBundleJson()},"notAfter":"${rfc3339(notAfter)}"}`;
    const length = Buffer.byteLength(json);
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': length });
    // As many bytes as characters: all ASCII (PEM and a date), whose UTF-8 is its latin1, which goes out
    // as a plain copy instead of an encoding pass. Same bytes either way (as sendJsonText does).
    res.end(json, length === json.length ? 'latin1' : 'utf8');
    // Bookkeeping after the answer is on its way: the audit line and metrics (~50 µs, mostly the
    // logger) overlap with the network and the client instead of adding to every request's latency.
    metrics.signingDuration.observe(signingSeconds);
    metrics.issued.inc();
    // One record object rather than (message, meta): winston's single-argument path skips the splat
    // scan of the message and a copy of the fields; the JSON line is the same (keys are sorted).
    log.info({
      message: 'certificate issued',
      namespace: caller.namespace,
      serviceAccount: caller.serviceAccount,
      pod: caller.podName,
      identity,
      serial: leaf.serialNumber,
      notAfter,
      remoteAddress: req.socket.remoteAddress,
    });
  };

  const router = express.Router();
  router.post(CERTIFICATES_PATH, (req: Request, res: Response) => issue(req, res));

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
  return withRawRoutes(router, [{ method: 'POST', path: CERTIFICATES_PATH, handle: issue }]);
}
