// Port 15012: one HTTPS server for the CA API and the proxies' config stream. Callers of the CA
// authenticate with a bearer token (a pod asking for its first certificate has none to present),
// so client certificates are requested but not required; routers that need mTLS (the config
// stream) check `req.socket.authorized` and the peer's SPIFFE ID (see peerSpiffeId).
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../telemetry/logger.ts';
import { sendJson } from '../http/json.ts';
import { rawRoutesOf, type RawRoute } from '../http/raw-routes.ts';

export interface MeshServerOptions {
  key: string | Buffer;
  /** Leaf then intermediates (not the root): what a TLS server sends. */
  cert: string | Buffer;
  /** Roots client certificates must chain to for `req.socket.authorized` to be true. */
  trustBundle: readonly string[];
  /** Mounted at `/` in order; each serves its own paths (and its raw routes, see withRawRoutes). */
  routers: readonly Router[];
  logger: Logger;
  registry: Registry;
  /** Idle keep-alive connections are closed after this long; proxies reuse theirs between renewals. */
  keepAliveTimeoutMs?: number;
}

export interface MeshServer {
  readonly server: https.Server;
  /**
   * Aborted when close() starts. Routers with long-lived responses (the config stream) end them on
   * abort; the same signal is on every request as `res.locals.closing` (see closingSignal).
   */
  readonly closing: AbortSignal;
  listen(port: number, host?: string): Promise<number>;
  /** New key, certificate and client trust bundle for new handshakes; open connections keep theirs. */
  setCredentials(key: string | Buffer, cert: string | Buffer, trustBundle: readonly string[]): void;
  /** Stops accepting, signals `closing`, lets in-flight requests finish (up to `graceMs`), then closes everything. */
  close(graceMs?: number): Promise<void>;
}

/** The mesh server's closing signal for a request handled on it. */
export function closingSignal(res: Response): AbortSignal | undefined {
  const signal: unknown = res.locals.closing;
  return signal instanceof AbortSignal ? signal : undefined;
}

/**
 * The SPIFFE ID of a client whose certificate chains to the trust bundle, or undefined: no
 * certificate, not trusted, or not exactly one URI SAN (the workload profile has exactly one).
 */
export function peerSpiffeId(req: Request): string | undefined {
  const socket = req.socket as TLSSocket;
  if (!socket.authorized) return undefined;
  const sans = (socket.getPeerCertificate().subjectaltname ?? '').split(', ').filter((s) => s !== '');
  const uris = sans.filter((s) => s.startsWith('URI:'));
  if (uris.length !== 1 || !uris[0].startsWith('URI:spiffe://')) return undefined;
  return uris[0].slice('URI:'.length);
}

function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

function secureContextOptions(key: string | Buffer, cert: string | Buffer, trustBundle: readonly string[]) {
  // Always an array, even empty: without `ca` Node would trust its public roots for client certificates.
  return { key, cert, ca: [...trustBundle], minVersion: 'TLSv1.2' as const };
}

/** Error codes for the statuses body parsers and express raise on their own. */
const CLIENT_ERROR_CODES: Readonly<Record<number, string>> = {
  400: 'bad_request',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  411: 'length_required',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
};

export function createMeshServer(opts: MeshServerOptions): MeshServer {
  const log = opts.logger;
  const requests = new Counter({
    name: 'cinch_mesh_server_requests_total',
    help: 'Requests on the CA and config port by route (unmatched for unknown paths) and status code.',
    labelNames: ['route', 'code'],
    registers: [opts.registry],
  });
  const tlsErrors = new Counter({
    name: 'cinch_mesh_server_tls_errors_total',
    help: 'Connections dropped before a request because the TLS handshake failed.',
    registers: [opts.registry],
  });

  const closer = new AbortController();
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  // Every request, express's or a raw route's: counted under a bounded route label when it finishes;
  // while closing, each response closes its connection, and idle keep-alive ones are closed.
  const track = (res: ServerResponse, routeLabel: () => string): void => {
    if (closer.signal.aborted) res.setHeader('connection', 'close');
    res.on('finish', () => {
      requests.inc({ route: routeLabel(), code: String(res.statusCode) });
      if (closer.signal.aborted) setImmediate(() => server.closeIdleConnections());
    });
  };
  // Never HTML and never a stack trace: anything but a client error is logged and answered "internal".
  const internalError = (req: { method?: string }, path: string, res: ServerResponse, err: unknown): void => {
    log.error('request failed', { method: req.method, path: path.slice(0, 200), err });
    if (res.headersSent) {
      // A streamed response cannot turn into an error body; cut it so the client sees it failed.
      res.destroy();
      return;
    }
    sendJson(res, 500, errorBody('internal', 'internal error; the control plane logged the details'));
  };

  app.use((req, res, next) => {
    res.locals.closing = closer.signal;
    // Only a bounded label: the route pattern that matched, never the raw path.
    track(res, () => {
      const route = (req.route as { path?: unknown } | undefined)?.path;
      return typeof route === 'string' ? `${req.baseUrl}${route}` : 'unmatched';
    });
    next();
  });
  for (const router of opts.routers) app.use(router);

  app.use((req, res) => {
    res.status(404).json(errorBody('not_found', `no such endpoint: ${req.method} ${req.path.slice(0, 200)}`));
  });
  // Never HTML and never a stack trace: client errors keep their message, anything else is "internal".
  app.use((err: Error & { status?: number; statusCode?: number; type?: string; expose?: boolean }, req: Request, res: Response, _next: NextFunction) => {
    const status = err.status ?? err.statusCode;
    if (typeof status !== 'number' || status < 400 || status >= 500) {
      internalError(req, req.path, res, err);
      return;
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const message = err.type === 'entity.parse.failed' ? `body is not valid JSON: ${err.message}` : err.message;
    // An unread body (too large, refused early) is not worth reading just to keep the connection.
    if (status === 413) res.set('connection', 'close');
    res.status(status).json(errorBody(CLIENT_ERROR_CODES[status] ?? 'bad_request', message));
  });

  // Raw routes, by method and exact URL; the first router to claim one wins, as with express.
  const raw = new Map<string, RawRoute>();
  for (const router of opts.routers) {
    for (const route of rawRoutesOf(router)) {
      const key = `${route.method} ${route.path}`;
      if (!raw.has(key)) raw.set(key, route);
    }
  }
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const route = raw.get(`${req.method} ${req.url}`);
    if (route === undefined) {
      app(req, res);
      return;
    }
    track(res, () => route.path);
    const failed = (err: unknown) => internalError(req, route.path, res, err);
    try {
      route.handle(req, res)?.catch(failed);
    } catch (err) {
      failed(err);
    }
  };

  const server = https.createServer(
    {
      ...secureContextOptions(opts.key, opts.cert, opts.trustBundle),
      requestCert: true,
      rejectUnauthorized: false,
    },
    raw.size === 0 ? app : onRequest,
  );
  server.keepAliveTimeout = opts.keepAliveTimeoutMs ?? 60_000;
  // Time to receive a whole request (headers and body): a slow client cannot hold a socket open
  // for minutes. It does not limit responses, so the config stream is unaffected.
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  server.on('tlsClientError', (err: Error & { code?: string }) => {
    tlsErrors.inc();
    log.debug('TLS handshake failed', { code: err.code, message: err.message });
  });

  let closed: Promise<void> | undefined;
  return {
    server,
    closing: closer.signal,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      }),
    setCredentials: (key, cert, trustBundle) => server.setSecureContext(secureContextOptions(key, cert, trustBundle)),
    close: (graceMs = 10_000) =>
      (closed ??= new Promise((resolve) => {
        closer.abort(new Error('the mesh server is shutting down'));
        if (!server.listening) return resolve();
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      })),
  };
}
