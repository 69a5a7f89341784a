// Authorization at the inbound proxy: the AuthzRequest for a connection or a request, the logged
// denial, and HTTP/1.1 + HTTP/2 request handling (authorize each request; 403 `RBAC: access denied`
// on deny; otherwise forward to the app over a keep-alive pool, or h2c for HTTP/2).
import http from 'node:http';
import type * as http2 from 'node:http2';
import { http2 as loadHttp2 } from './lazy.ts';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { normalizePath } from '../policy/path.ts';
import type { ProxyLogger as Logger } from './log.ts';
import type { HttpSeries, ProxyMetrics } from './metrics.ts';
import { namespaceOfPrincipal } from './metrics.ts';
import type { AuthzDecision, AuthzHttpRequest, AuthzRequest, InboundConfig } from './types.ts';
import { spliceSockets } from './detect.ts';
import { DENIED_BODY, Http1FastPath, IDEMPOTENT, isGrpc, parseConnection, REQUEST_HOP_BY_HOP, spoofsXfcc, UNAVAILABLE_BODY, XFCC } from './http1.ts';

export { DENIED_BODY };

/** What the inbound proxy knows about one accepted connection. */
export interface InboundContext {
  /** Original destination port: the app's port, and the policy's destination.port. */
  readonly port: number;
  readonly destinationIp: string;
  readonly sourceIp: string;
  readonly mtls: boolean;
  /** Verified peer identity (mTLS only). */
  readonly peer?: { readonly spiffeId: string; readonly principal: string };
  readonly sni?: string;
  /** Per-connection metric series, made on first use. */
  series?: HttpSeries;
}

// ---------------------------------------------------------------- decisions

export function authzRequest(config: InboundConfig, ctx: InboundContext, request?: AuthzRequest['request']): AuthzRequest {
  const principal = ctx.peer?.principal;
  return {
    destination: { namespace: config.workload.namespace, labels: config.workload.labels, port: ctx.port, ip: ctx.destinationIp },
    source: principal ? { principal, namespace: namespaceOfPrincipal(principal), ip: ctx.sourceIp } : { ip: ctx.sourceIp },
    request,
  };
}

/** Evaluates with the config current at this moment; a throwing policy engine denies (fail closed). */
export function decide(config: InboundConfig, request: AuthzRequest, logger: Logger): AuthzDecision {
  let decision: AuthzDecision;
  try {
    decision = config.authorize(request);
  } catch (err) {
    decision = { allow: false, policy: null, reason: `authorization failed: ${(err as Error).message}` };
  }
  if (!decision.allow) {
    const http = request.request?.protocol === 'http' ? request.request : undefined;
    logger.info('authorization denied', {
      policy: decision.policy,
      reason: decision.reason,
      source_principal: request.source.principal ?? null,
      source_ip: request.source.ip,
      destination_port: request.destination.port,
      protocol: http ? 'http' : 'tcp',
      ...(http ? { method: http.method, path: http.path, host: http.host } : {}),
    });
  }
  return decision;
}

// ---------------------------------------------------------------- paths

/**
 * The path policies see and the app receives, as Envoy's normalize_path (Istio's default BASE):
 * the policy core's own normalizePath, so what is enforced is exactly what is forwarded and
 * `/a/../admin` or `/%61dmin` cannot slip past a rule on `/admin`. The query string is split off
 * (policies match paths without it) and handed back for forwarding.
 */
export function normalizeTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  if (q < 0) return { path: normalizePath(target), query: '' };
  return { path: normalizePath(target.slice(0, q)), query: target.slice(q) };
}

// ---------------------------------------------------------------- headers

/** rawHeaders minus hop-by-hop ones (and those the Connection header names), plus our XFCC. */
function requestHeaders(raw: string[], connection: string | undefined, xfcc: string | undefined, keepUpgrade: boolean): string[] {
  const { named } = parseConnection(connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (REQUEST_HOP_BY_HOP.has(lower)) {
      if (!(keepUpgrade && (lower === 'connection' || lower === 'upgrade'))) continue;
    } else if (named?.has(lower)) continue;
    else if (spoofsXfcc(lower)) continue;
    out.push(name, raw[i + 1]);
  }
  if (xfcc) out.push(XFCC, xfcc);
  return out;
}

function responseHeaders(raw: string[], connection: string | undefined): string[] {
  const { named } = parseConnection(connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase();
    // The downstream server frames the body itself (chunked or length), so transfer-encoding goes too.
    if (lower === 'transfer-encoding' || (REQUEST_HOP_BY_HOP.has(lower) && lower !== XFCC) || named?.has(lower)) continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** Envoy's XFCC (SANITIZE_SET): what the app may trust about the caller, only when it was verified. */
function xfccFor(ctx: InboundContext, selfSpiffeId: string | undefined): string | undefined {
  if (!ctx.peer) return undefined;
  return selfSpiffeId ? `By=${selfSpiffeId};URI=${ctx.peer.spiffeId}` : `URI=${ctx.peer.spiffeId}`;
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// ---------------------------------------------------------------- the handler

export interface InboundHttpOptions {
  config: () => InboundConfig;
  /** Where the app listens (default 127.0.0.1). */
  appHost: string;
  selfSpiffeId: () => string | undefined;
  logger: Logger;
  metrics?: ProxyMetrics;
  /** Idle time before a downstream keep-alive connection (or HTTP/2 session) is closed. */
  idleTimeoutMs: number;
  /** Idle time of pooled app connections: below the app's own keep-alive timeout (Node's is 5 s) to avoid reuse races. */
  upstreamIdleTimeoutMs?: number;
  /** A request's headers must arrive within this (slow-header clients); default 60 s. */
  headersTimeoutMs?: number;
}

export class InboundHttp {
  private readonly options: InboundHttpOptions;
  private readonly h1: http.Server;
  private h2: http2.Http2Server | undefined;
  private readonly agent: http.Agent;
  private readonly contexts = new WeakMap<object, InboundContext>();
  private readonly upstreamH2 = new Map<number, http2.ClientHttp2Session>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private pendingH2: InboundContext | undefined;
  /** Shutting down: every response closes its connection. */
  private draining = false;
  private readonly tunnels = new Set<net.Socket>();
  private readonly fast: Http1FastPath<InboundContext>;

  constructor(options: InboundHttpOptions) {
    this.options = options;
    const headersTimeout = options.headersTimeoutMs ?? 60_000;
    const upstreamIdleTimeout = options.upstreamIdleTimeoutMs ?? 4000;
    this.fast = new Http1FastPath<InboundContext>({
      appHost: options.appHost,
      logger: options.logger,
      authorize: (ctx, request) => this.authorizeHttp(ctx, request),
      series: (ctx) => this.seriesFor(ctx),
      xfcc: (ctx) => xfccFor(ctx, this.options.selfSpiffeId()),
      normalize: normalizeTarget,
      handOver: (socket, ctx) => this.serveHttp1Node(socket, ctx),
      draining: () => this.draining,
      idleTimeoutMs: options.idleTimeoutMs,
      headersTimeoutMs: headersTimeout,
      upstreamIdleTimeoutMs: upstreamIdleTimeout,
    });
    this.agent = new http.Agent({ keepAlive: true, timeout: upstreamIdleTimeout, scheduling: 'lifo' });
    this.h1 = http.createServer({
      keepAliveTimeout: options.idleTimeoutMs,
      headersTimeout,
      // Long uploads and streams are the app's business; idle connections are ours (keepAliveTimeout).
      requestTimeout: 0,
      connectionsCheckingInterval: Math.min(30_000, Math.max(50, headersTimeout / 2)),
      noDelay: true,
    });
    // This server never listens (connections are handed to it), but node:http only starts tracking
    // connections, and so enforcing headersTimeout, on 'listening'.
    this.h1.emit('listening');
    this.h1.on('request', (req, res) => this.onRequest(req, res, false));
    // Without this listener node:http answers `Expect: 100-continue` itself, before the policy has run, and a
    // denied client sends its whole body for nothing. With it, the 100 goes out only once the request is allowed.
    this.h1.on('checkContinue', (req, res) => this.onRequest(req, res, true));
    this.h1.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.onTunnel(req, socket, head));
    this.h1.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.onTunnel(req, socket, head));
  }

  /** Serves HTTP/1.x on an accepted (possibly decrypted) socket whose first bytes were put back. */
  serveHttp1(socket: net.Socket, ctx: InboundContext): void {
    this.fast.serve(socket, ctx);
  }

  /** node:http for the whole connection (or the rest of it, when the fast path hands over). */
  private serveHttp1Node(socket: net.Socket, ctx: InboundContext): void {
    this.contexts.set(socket, ctx);
    this.h1.emit('connection', socket);
    // Bytes put back with unshift sit in the stream buffer; the server only reads them once it flows.
    socket.resume();
  }

  /** The HTTP/2 server, made on the first HTTP/2 connection (node:http2 is loaded then). */
  private h2Server(): http2.Http2Server {
    if (this.h2) return this.h2;
    const h2 = loadHttp2().createServer();
    // Emitted synchronously from emit('connection'): the only moment the session can be tied to its
    // context (session.socket is a proxy object, useless as a map key).
    h2.on('session', (session: http2.ServerHttp2Session) => {
      if (this.pendingH2) this.contexts.set(session, this.pendingH2);
      this.sessions.add(session);
      session.setTimeout(this.options.idleTimeoutMs, () => session.close());
      session.once('close', () => this.sessions.delete(session));
    });
    h2.on('sessionError', (err: Error) => this.options.logger.debug('HTTP/2 session error', { error: err }));
    h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => this.onStream(stream, headers));
    this.h2 = h2;
    return h2;
  }

  serveHttp2(socket: net.Socket, ctx: InboundContext): void {
    this.pendingH2 = ctx;
    try {
      this.h2Server().emit('connection', socket);
    } finally {
      this.pendingH2 = undefined;
    }
  }

  /** Shutdown, gently: idle keep-alive connections close now, busy ones after their response; HTTP/2 gets GOAWAY. */
  drain(): void {
    this.draining = true;
    this.fast.drain();
    this.h1.closeIdleConnections();
    for (const session of this.sessions) session.close();
  }

  close(): void {
    this.fast.close();
    this.h1.closeAllConnections();
    this.h1.close();
    for (const session of this.sessions) session.destroy();
    for (const session of this.upstreamH2.values()) session.destroy();
    for (const socket of this.tunnels) socket.destroy();
    this.upstreamH2.clear();
    this.agent.destroy();
  }

  private seriesFor(ctx: InboundContext): HttpSeries | undefined {
    const metrics = this.options.metrics;
    if (!metrics) return undefined;
    if (!ctx.series) {
      const config = this.options.config();
      ctx.series = metrics.httpSeries({
        reporter: 'destination',
        sourcePrincipal: ctx.peer?.spiffeId,
        destinationPrincipal: ctx.mtls ? this.options.selfSpiffeId() : undefined,
        destinationWorkload: config.workload.name,
        destinationNamespace: config.workload.namespace,
        mtls: ctx.mtls,
      });
    }
    return ctx.series;
  }

  private authorizeHttp(ctx: InboundContext, request: AuthzHttpRequest): AuthzDecision {
    const config = this.options.config();
    return decide(config, authzRequest(config, ctx, request), this.options.logger);
  }

  // ------------------------------------------------------------ HTTP/1.1

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse, expectsContinue: boolean): void {
    const start = performance.now();
    const ctx = this.contexts.get(req.socket);
    if (!ctx) {
      res.destroy();
      return;
    }
    const { path, query } = normalizeTarget(req.url ?? '/');
    const decision = this.authorizeHttp(ctx, {
      protocol: 'http',
      method: req.method ?? 'GET',
      path,
      host: req.headers.host ?? '',
      headers: req.headers,
      sni: ctx.sni,
    });
    const series = this.seriesFor(ctx);
    const grpc = isGrpc(req.headers['content-type']);
    if (series) res.once('finish', () => series.record(res.statusCode, grpc, performance.now() - start));
    if (!decision.allow) {
      res.writeHead(403, { 'content-type': 'text/plain', 'content-length': DENIED_BODY.length, ...(this.draining ? { connection: 'close' } : {}) });
      res.end(DENIED_BODY);
      return;
    }
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    // Allowed: the client may send its body now. Answered here rather than relayed from the app, which may never
    // send a 100 (the client would stall on its own timer, and node:http would close the connection after).
    if (expectsContinue) res.writeContinue();
    this.forward(req, res, ctx, path + query, hasBody, false);
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, ctx: InboundContext, target: string, hasBody: boolean, retried: boolean): void {
    const upstream = http.request({
      host: this.options.appHost,
      port: ctx.port,
      method: req.method,
      path: target,
      headers: requestHeaders(req.rawHeaders, req.headers.connection, xfccFor(ctx, this.options.selfSpiffeId()), false),
      setHost: false,
      agent: this.agent,
    });
    let responded = false;
    upstream.on('response', (up) => {
      responded = true;
      const headers = responseHeaders(up.rawHeaders, up.headers.connection);
      if (this.draining) headers.push('connection', 'close');
      res.writeHead(up.statusCode ?? 502, up.statusMessage, headers);
      up.once('end', () => {
        if (up.rawTrailers.length > 0) res.addTrailers(pairs(up.rawTrailers));
      });
      up.on('error', () => res.destroy());
      up.pipe(res);
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (responded || res.destroyed || res.writableEnded) return;
      // A pooled connection the app closed just as we picked it: the app never saw the request, so an
      // idempotent one without a body is retried once (node:http's documented reusedSocket pattern).
      if (!retried && !hasBody && upstream.reusedSocket && err.code === 'ECONNRESET' && IDEMPOTENT.has(req.method ?? '')) {
        this.forward(req, res, ctx, target, hasBody, true);
        return;
      }
      if (res.headersSent) res.destroy();
      else {
        this.options.logger.debug('app connection failed', { port: ctx.port, error: err });
        res.writeHead(503, { 'content-type': 'text/plain', 'content-length': UNAVAILABLE_BODY.length });
        res.end(UNAVAILABLE_BODY);
      }
    });
    // The client went away before the response finished: stop the app's work too.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    if (hasBody) req.pipe(upstream);
    else upstream.end();
  }

  /** Upgrade (WebSocket) and CONNECT: authorize the request, then splice raw bytes to the app. */
  private onTunnel(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const ctx = this.contexts.get(socket);
    socket.on('error', () => socket.destroy());
    if (!ctx) {
      socket.destroy();
      return;
    }
    const { path, query } = normalizeTarget(req.url ?? '/');
    const decision = this.authorizeHttp(ctx, {
      protocol: 'http',
      method: req.method ?? 'GET',
      path,
      host: req.headers.host ?? '',
      headers: req.headers,
      sni: ctx.sni,
    });
    const series = this.seriesFor(ctx);
    if (!decision.allow) {
      series?.record(403, false, 0);
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${DENIED_BODY.length}\r\nconnection: close\r\n\r\n${DENIED_BODY}`);
      return;
    }
    const headers = requestHeaders(req.rawHeaders, undefined, xfccFor(ctx, this.options.selfSpiffeId()), true);
    let text = `${req.method} ${req.method === 'CONNECT' ? (req.url ?? '') : path + query} HTTP/${req.httpVersion}\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    const app = net.connect({ host: this.options.appHost, port: ctx.port, allowHalfOpen: true, noDelay: true });
    app.write(text + '\r\n');
    if (head.length > 0) app.write(head);
    this.tunnels.add(socket);
    spliceSockets(socket, app, this.options.idleTimeoutMs, () => this.tunnels.delete(socket));
  }

  // ------------------------------------------------------------ HTTP/2

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const start = performance.now();
    stream.on('error', () => stream.destroy());
    const ctx = this.contexts.get(stream.session as object);
    if (!ctx) {
      stream.close(loadHttp2().constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const rawPath = headers[':path'] ?? '/';
    const { path, query } = normalizeTarget(rawPath);
    const decision = this.authorizeHttp(ctx, {
      protocol: 'http',
      method: headers[':method'] ?? 'GET',
      path,
      host: headers[':authority'] ?? headers.host ?? '',
      headers,
      sni: ctx.sni,
    });
    const series = this.seriesFor(ctx);
    const grpc = isGrpc(headers['content-type']);
    if (series) {
      stream.once('close', () => {
        const status = stream.sentHeaders[':status'];
        if (status !== undefined) series.record(Number(status), grpc, performance.now() - start);
      });
    }
    if (!decision.allow) {
      stream.respond({ ':status': 403, 'content-type': 'text/plain', 'content-length': DENIED_BODY.length });
      stream.end(DENIED_BODY);
      return;
    }
    const session = this.upstreamSession(ctx.port);
    const out: http2.OutgoingHttpHeaders = {};
    for (const name of Object.keys(headers)) {
      if (name === XFCC || name === 'connection' || name === 'keep-alive' || name === 'proxy-connection' || name === 'upgrade' || spoofsXfcc(name)) continue;
      out[name] = headers[name];
    }
    if (path + query !== rawPath && rawPath.charCodeAt(0) === 0x2f) out[':path'] = path + query;
    const xfcc = xfccFor(ctx, this.options.selfSpiffeId());
    if (xfcc) out[XFCC] = xfcc;
    let upstream: http2.ClientHttp2Stream;
    try {
      upstream = session.request(out, { endStream: stream.endAfterHeaders });
    } catch (err) {
      this.upstreamFailed(stream, ctx, err as Error);
      return;
    }
    let trailers: http2.IncomingHttpHeaders | undefined;
    upstream.on('error', (err: Error) => {
      if (!stream.headersSent) this.upstreamFailed(stream, ctx, err);
      else stream.close(loadHttp2().constants.NGHTTP2_INTERNAL_ERROR);
    });
    upstream.on('response', (responseHeaders: http2.IncomingHttpHeaders, flags: number) => {
      if (stream.destroyed) return;
      // Trailers-only responses (gRPC errors) end with the headers.
      if (flags & loadHttp2().constants.NGHTTP2_FLAG_END_STREAM) {
        stream.respond(responseHeaders, { endStream: true });
        return;
      }
      stream.respond(responseHeaders, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(trailers ?? {}));
      upstream.pipe(stream);
    });
    upstream.on('trailers', (t: http2.IncomingHttpHeaders) => {
      trailers = t;
    });
    upstream.on('close', () => {
      if (!stream.closed && !stream.writableEnded) stream.close(upstream.rstCode || loadHttp2().constants.NGHTTP2_INTERNAL_ERROR);
    });
    stream.once('close', () => {
      if (!upstream.closed) upstream.close(loadHttp2().constants.NGHTTP2_CANCEL);
    });
    if (!stream.endAfterHeaders) stream.pipe(upstream);
  }

  private upstreamFailed(stream: http2.ServerHttp2Stream, ctx: InboundContext, err: Error): void {
    this.options.logger.debug('app connection failed', { port: ctx.port, error: err });
    if (stream.destroyed || stream.headersSent) return;
    stream.respond({ ':status': 503, 'content-type': 'text/plain', 'content-length': UNAVAILABLE_BODY.length });
    stream.end(UNAVAILABLE_BODY);
  }

  /** One multiplexed h2c session per app port, replaced when it closes or goes away. */
  private upstreamSession(port: number): http2.ClientHttp2Session {
    const existing = this.upstreamH2.get(port);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const session = loadHttp2().connect(`http://${hostPort(this.options.appHost, port)}`);
    const forget = (): void => {
      if (this.upstreamH2.get(port) === session) this.upstreamH2.delete(port);
    };
    session.on('error', (err: Error) => {
      this.options.logger.debug('app HTTP/2 session error', { port, error: err });
      forget();
    });
    session.once('goaway', forget);
    session.once('close', forget);
    session.setTimeout(this.options.upstreamIdleTimeoutMs ?? 4000, () => {
      forget();
      session.close();
    });
    this.upstreamH2.set(port, session);
    return session;
  }
}

function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}
