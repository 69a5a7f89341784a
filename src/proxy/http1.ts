// The inbound HTTP/1.1 fast path: Cinch reads each request's head itself, authorizes it, writes the
// rewritten head (normalized path, hop-by-hop headers out, XFCC in) to a pooled app connection, and
// then moves the body and the response as bytes, reading only their framing (Content-Length or the
// chunk sizes) to know where each message ends. No node:http request/response objects, no
// re-serialisation of bodies: that was most of the inbound proxy's cost per request.
//
// Only plain, unambiguous requests take it: HTTP/1.1, a method node:http knows, an origin-form target
// of URL characters, token header names, visible-ASCII values, no header twice, no Transfer-Encoding,
// Expect or Upgrade, a decimal Content-Length. Anything else (chunked or streamed uploads, upgrades,
// CONNECT, HTTP/1.0, odd bytes) is handed, with every byte not yet consumed, to the node:http server
// for the rest of the connection, which then behaves exactly as before (including its rejections):
// the fast path never accepts a request node:http would parse differently. One request at a time per
// connection: a pipelined request waits, unread, until the response before it is complete.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { AuthzDecision, AuthzHttpRequest } from './types.ts';
import type { HttpSeries } from './metrics.ts';
import type { ProxyLogger as Logger } from './log.ts';

/** node:http's default limit (--max-http-header-size); longer heads go to node:http, which answers 431. */
const MAX_HEAD = 16 * 1024;
const MAX_RESPONSE_HEAD = 64 * 1024;
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE']);
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
export const DENIED_BODY = 'RBAC: access denied';
export const UNAVAILABLE_BODY = 'upstream connect error or disconnect/reset before headers';
export const XFCC = 'x-forwarded-client-cert';
/** Connection-scoped headers never cross the proxy (RFC 9110 §7.6.1); XFCC is always re-set by us. */
export const REQUEST_HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', XFCC]);

/**
 * A lower-cased header name that is XFCC with some '-' written as '_': CGI, WSGI and PHP servers map both to
 * HTTP_X_FORWARDED_CLIENT_CERT, so a caller could pass it off as the identity we vouch for. Never forwarded.
 */
export function spoofsXfcc(lower: string): boolean {
  return lower.length === XFCC.length && lower !== XFCC && lower.replaceAll('_', '-') === XFCC;
}
const RESPONSE_HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade']);
/** Never removed because a Connection header names them: the bytes we splice are framed by them (and Host is what the policy saw). */
export const KEEP_WHEN_CONNECTION_NAMED: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

/** What a Connection header says (RFC 9110 §7.6.1). */
export interface ConnectionTokens {
  close: boolean;
  keepAlive: boolean;
  upgrade: boolean;
  /** The other headers it names, which go no further: never those in KEEP_WHEN_CONNECTION_NAMED. */
  named: ReadonlySet<string> | undefined;
}

const NO_CONNECTION_TOKENS: ConnectionTokens = Object.freeze({ close: false, keepAlive: false, upgrade: false, named: undefined });

/** One reading of Connection for requests and responses on every path (the fast path, node:http): two readings could disagree on framing. */
export function parseConnection(value: string | undefined): ConnectionTokens {
  if (!value) return NO_CONNECTION_TOKENS;
  let close = false;
  let keepAlive = false;
  let upgrade = false;
  let named: Set<string> | undefined;
  for (const t of value.split(',')) {
    const token = t.trim().toLowerCase();
    if (token === 'close') close = true;
    else if (token === 'keep-alive') keepAlive = true;
    else if (token === 'upgrade') upgrade = true;
    else if (token && !KEEP_WHEN_CONNECTION_NAMED.has(token)) (named ??= new Set()).add(token);
  }
  return { close, keepAlive, upgrade, named };
}

export function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.startsWith('application/grpc');
}

// tchar (RFC 9110 §5.6.2)
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Origin-form target: pchar, "/", "?" and "%" (RFC 3986); anything else goes to node:http.
const TARGET = new Uint8Array(256);
for (const c of "-._~!$&'()*+,;=:@/?%") TARGET[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TARGET[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TARGET[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TARGET[c] = 1;

export interface RequestHead {
  method: string;
  target: string;
  /** Lower-case names, as node:http gives them (no duplicates on this path). */
  headers: Record<string, string>;
  /** [name as sent, value] pairs to forward: hop-by-hop and Connection-named headers already left out. */
  forward: string[];
  contentLength: number;
  /** The client asked to close after this request. */
  close: boolean;
  /** Bytes of the head, blank line included. */
  length: number;
}

/** A complete plain request head; 'more': not complete yet; 'other': not for the fast path. */
export function parseRequestHead(buf: Buffer): RequestHead | 'more' | 'other' {
  const end = buf.indexOf(CRLFCRLF);
  if (end < 0) return buf.length > MAX_HEAD ? 'other' : 'more';
  if (end + 4 > MAX_HEAD) return 'other';
  // Request line: METHOD SP origin-form SP HTTP/1.1
  let i = 0;
  while (i < 16 && buf[i] >= 0x41 && buf[i] <= 0x5a) i++;
  if (i === 0 || buf[i] !== 0x20) return 'other';
  const method = buf.toString('latin1', 0, i);
  if (!METHODS.has(method)) return 'other';
  const targetStart = ++i;
  if (buf[i] !== 0x2f) return 'other';
  while (i < end && TARGET[buf[i]] === 1) i++;
  if (buf[i] !== 0x20) return 'other';
  const target = buf.toString('latin1', targetStart, i);
  i++;
  if (buf.toString('latin1', i, i + 10) !== 'HTTP/1.1\r\n') return 'other';
  i += 10;
  const headers: Record<string, string> = {};
  const raw: string[] = [];
  let contentLength = 0;
  let connection: string | undefined;
  while (i < end + 2) {
    const nameStart = i;
    while (TCHAR[buf[i]] === 1) i++;
    if (i === nameStart || buf[i] !== 0x3a) return 'other';
    const name = buf.toString('latin1', nameStart, i);
    i++;
    while (buf[i] === 0x20 || buf[i] === 0x09) i++;
    const valueStart = i;
    let valueEnd = i;
    for (;;) {
      const c = buf[i];
      if (c === 0x0d) break;
      if ((c < 0x20 && c !== 0x09) || c > 0x7e) return 'other';
      i++;
      if (c !== 0x20 && c !== 0x09) valueEnd = i;
    }
    if (buf[i + 1] !== 0x0a) return 'other';
    const value = buf.toString('latin1', valueStart, valueEnd);
    i += 2;
    const lower = name.toLowerCase();
    if (lower in headers) return 'other'; // node:http merges or drops duplicates: let it
    if (lower === 'transfer-encoding' || lower === 'expect' || lower === 'upgrade' || lower === 'set-cookie' || lower === '__proto__') return 'other';
    if (lower === 'content-length') {
      if (!/^\d{1,15}$/.test(value)) return 'other';
      contentLength = Number(value);
    } else if (lower === 'connection') connection = value;
    headers[lower] = value;
    raw.push(name, value);
  }
  const { close, upgrade, named } = parseConnection(connection);
  if (upgrade) return 'other';
  // node:http answers 400 to an HTTP/1.1 request without Host; the policy must not see host ''.
  if (headers.host === undefined) return 'other';
  const forward: string[] = [];
  for (let k = 0; k < raw.length; k += 2) {
    const lower = raw[k].toLowerCase();
    if (REQUEST_HOP_BY_HOP.has(lower) || named?.has(lower) || spoofsXfcc(lower)) continue;
    forward.push(raw[k], raw[k + 1]);
  }
  return { method, target, headers, forward, contentLength, close, length: end + 4 };
}

export interface ResponseHead {
  status: number;
  /** The head to send downstream (hop-by-hop headers out), without the final blank line. */
  text: string;
  /** 'length' (contentLength bytes), 'chunked', 'close' (until the app closes), 'none'. */
  framing: 'length' | 'chunked' | 'close' | 'none';
  contentLength: number;
  /** The app will close its connection after this response. */
  appCloses: boolean;
  length: number;
}

/** The app's response head; 'more' if incomplete; an Error if it is not HTTP/1.x. */
export function parseResponseHead(buf: Buffer, method: string): ResponseHead | 'more' | Error {
  const end = buf.indexOf(CRLFCRLF);
  if (end < 0) return buf.length > MAX_RESPONSE_HEAD ? new Error('response head too long') : 'more';
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const m = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: ([^\r\n\0]*))?$/.exec(lines[0]);
  if (!m) return new Error('not an HTTP/1.x response');
  const status = Number(m[2]);
  const http10 = m[1] === '0';
  let contentLength: number | undefined;
  let chunked = false;
  let transferEncoding = false;
  let connection = '';
  const fields: [string, string, string][] = [];
  for (let k = 1; k < lines.length; k++) {
    const line = lines[k];
    // A CR, LF or NUL left inside a line would reach the client as a different head than the one we framed.
    if (/[\r\n\0]/.test(line)) return new Error('malformed response header');
    const colon = line.indexOf(':');
    if (colon <= 0 || line.charCodeAt(0) === 0x20 || line.charCodeAt(0) === 0x09) return new Error('malformed response header');
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return new Error('malformed response header');
    const lower = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (lower === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== Number(value))) return new Error('bad Content-Length in response');
      contentLength = Number(value);
    } else if (lower === 'transfer-encoding') {
      transferEncoding = true;
      const codings = value.toLowerCase().split(',');
      chunked = codings[codings.length - 1].trim() === 'chunked';
    } else if (lower === 'connection') connection += `,${value}`;
    fields.push([name, lower, value]);
  }
  const tokens = parseConnection(connection);
  const appCloses = tokens.close || (http10 && !tokens.keepAlive);
  let framing: ResponseHead['framing'];
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) framing = 'none';
  else if (transferEncoding) framing = chunked ? 'chunked' : 'close';
  else if (contentLength !== undefined) framing = 'length';
  else framing = 'close';
  let text = `HTTP/1.1 ${m[2]} ${m[3] ?? ''}\r\n`;
  for (const [name, lower, value] of fields) {
    if (RESPONSE_HOP_BY_HOP.has(lower) || tokens.named?.has(lower)) continue;
    if (lower === 'content-length' && transferEncoding) continue;
    text += `${name}: ${value}\r\n`;
  }
  return { status, text, framing, contentLength: contentLength ?? 0, appCloses: appCloses || framing === 'close', length: end + 4 };
}

/** Finds where a chunked body ends, byte by byte across calls, without decoding it. */
export class ChunkedScanner {
  private state = 0;
  private size = 0;
  private digits = 0;
  private remaining = 0;

  /** Bytes of `buf` (from `start`) that belong to the body: `done` when its end is among them. Throws on bad framing. */
  scan(buf: Buffer, start: number): { used: number; done: boolean } {
    let i = start;
    while (i < buf.length) {
      const c = buf[i];
      switch (this.state) {
        case 0: // chunk size
          if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)) {
            if (++this.digits > 12) throw new Error('chunk size too large');
            this.size = this.size * 16 + parseInt(String.fromCharCode(c), 16);
          } else if (this.digits > 0 && (c === 0x3b || c === 0x20 || c === 0x09)) this.state = 1;
          else if (this.digits > 0 && c === 0x0d) this.state = 2;
          else throw new Error('bad chunk size');
          i++;
          break;
        case 1: // chunk extension
          if (c === 0x0d) this.state = 2;
          else if (c === 0x0a) throw new Error('bad chunk extension');
          i++;
          break;
        case 2: // LF after the size line
          if (c !== 0x0a) throw new Error('bad chunk size line');
          i++;
          if (this.size === 0) this.state = 6;
          else {
            this.remaining = this.size;
            this.state = 3;
          }
          break;
        case 3: {
          // chunk data
          const n = Math.min(this.remaining, buf.length - i);
          this.remaining -= n;
          i += n;
          if (this.remaining === 0) this.state = 4;
          break;
        }
        case 4: // CR after data
          if (c !== 0x0d) throw new Error('missing CRLF after chunk data');
          this.state = 5;
          i++;
          break;
        case 5: // LF after data
          if (c !== 0x0a) throw new Error('missing CRLF after chunk data');
          this.state = 0;
          this.size = 0;
          this.digits = 0;
          i++;
          break;
        case 6: // start of a trailer line, or the final CRLF
          if (c === 0x0a || c === 0x00) throw new Error('bad trailer');
          this.state = c === 0x0d ? 8 : 7;
          i++;
          break;
        case 7: // trailer line, CRLF-terminated like the head (the client must find the same end)
          if (c === 0x0d) this.state = 9;
          else if (c === 0x0a || c === 0x00) throw new Error('bad trailer');
          i++;
          break;
        case 9: // LF after a trailer line
          if (c !== 0x0a) throw new Error('bad trailer');
          this.state = 6;
          i++;
          break;
        case 8: // LF that ends the body
          if (c !== 0x0a) throw new Error('bad end of chunked body');
          return { used: i + 1 - start, done: true };
      }
    }
    return { used: i - start, done: false };
  }
}

export interface FastPathContext {
  readonly port: number;
  readonly sni?: string;
}

export interface Http1FastOptions<C extends FastPathContext> {
  appHost: string;
  logger: Logger;
  authorize(ctx: C, request: AuthzHttpRequest): AuthzDecision;
  series(ctx: C): HttpSeries | undefined;
  xfcc(ctx: C): string | undefined;
  normalize(target: string): { path: string; query: string };
  /** node:http takes over the connection from here (the unread bytes were put back). */
  handOver(socket: net.Socket, ctx: C): void;
  draining(): boolean;
  idleTimeoutMs: number;
  headersTimeoutMs: number;
  upstreamIdleTimeoutMs: number;
}

/** Idle keep-alive connections to the app, per port, most recently used first (as the node:http Agent's 'lifo'). */
class AppPool {
  private readonly idle = new Map<number, net.Socket[]>();
  private readonly all = new Set<net.Socket>();
  private readonly host: string;
  private readonly idleTimeoutMs: number;
  constructor(host: string, idleTimeoutMs: number) {
    this.host = host;
    this.idleTimeoutMs = idleTimeoutMs;
  }

  take(port: number): { socket: net.Socket; reused: boolean } {
    const list = this.idle.get(port);
    while (list && list.length > 0) {
      const socket = list.pop()!;
      if (socket.destroyed || socket.readableEnded) continue;
      socket.setTimeout(0);
      socket.removeAllListeners('timeout');
      socket.removeAllListeners('end');
      socket.removeAllListeners('data');
      return { socket, reused: true };
    }
    const socket = net.connect({ host: this.host, port, noDelay: true });
    socket.on('error', () => socket.destroy());
    this.all.add(socket);
    socket.once('close', () => {
      this.all.delete(socket);
      const l = this.idle.get(port);
      const at = l?.indexOf(socket) ?? -1;
      if (at >= 0) l!.splice(at, 1);
    });
    return { socket, reused: false };
  }

  give(port: number, socket: net.Socket): void {
    if (socket.destroyed || socket.readableEnded) return;
    socket.removeAllListeners('data');
    // An idle connection that says anything, or ends, is done with.
    socket.on('data', () => socket.destroy());
    socket.once('end', () => socket.destroy());
    socket.setTimeout(this.idleTimeoutMs);
    socket.once('timeout', () => socket.destroy());
    let list = this.idle.get(port);
    if (!list) this.idle.set(port, (list = []));
    list.push(socket);
  }

  close(): void {
    for (const socket of this.all) socket.destroy();
    this.idle.clear();
  }
}

interface InFlight {
  method: string;
  head: string;
  start: number;
  series: HttpSeries | undefined;
  /** Request body bytes still to forward. */
  bodyLeft: number;
  hadBody: boolean;
  close: boolean;
  retried: boolean;
  app: net.Socket;
  reused: boolean;
  /** Response state. */
  responseStarted: boolean;
  rbuf: Buffer;
  framing?: ResponseHead['framing'];
  left: number;
  chunked?: ChunkedScanner;
  status: number;
  appCloses: boolean;
  grpc: boolean;
  done: boolean;
  /** This request's listeners on `app` (the pool keeps its own). */
  onAppData?: (chunk: Buffer) => void;
  onAppEnd?: () => void;
  onAppClose?: () => void;
}

const EMPTY = Buffer.alloc(0);

export class Http1FastPath<C extends FastPathContext> {
  private readonly options: Http1FastOptions<C>;
  private readonly pool: AppPool;
  private readonly conns = new Set<FastConn<C>>();

  constructor(options: Http1FastOptions<C>) {
    this.options = options;
    this.pool = new AppPool(options.appHost, options.upstreamIdleTimeoutMs);
  }

  serve(socket: net.Socket, ctx: C): void {
    const conn = new FastConn(this, socket, ctx);
    this.conns.add(conn);
    conn.start();
  }

  /** @internal */ get opts(): Http1FastOptions<C> {
    return this.options;
  }
  /** @internal */ get appPool(): AppPool {
    return this.pool;
  }
  /** @internal */ forget(conn: FastConn<C>): void {
    this.conns.delete(conn);
  }

  /** Idle connections close now, busy ones after their response. */
  drain(): void {
    for (const conn of this.conns) conn.drain();
  }

  close(): void {
    for (const conn of this.conns) conn.destroy();
    this.conns.clear();
    this.pool.close();
  }
}

class FastConn<C extends FastPathContext> {
  private buf: Buffer = EMPTY;
  private req: InFlight | undefined;
  /** Denied request body bytes still to skip. */
  private discard = 0;
  private headersTimer: NodeJS.Timeout | undefined;
  private ended = false;
  private finished = false;
  /** Waiting for the client to read what we wrote (403s to pipelined requests) before reading more of it. */
  private awaitingDrain = false;
  private readonly onData = (chunk: Buffer): void => this.data(chunk);
  private readonly onEnd = (): void => this.clientEnded();
  private readonly onClose = (): void => this.teardown();
  private readonly onTimeout = (): void => this.destroy();

  private readonly owner: Http1FastPath<C>;
  private readonly socket: net.Socket;
  private readonly ctx: C;
  constructor(owner: Http1FastPath<C>, socket: net.Socket, ctx: C) {
    this.owner = owner;
    this.socket = socket;
    this.ctx = ctx;
  }

  start(): void {
    const s = this.socket;
    s.on('data', this.onData);
    s.on('end', this.onEnd);
    s.on('close', this.onClose);
    s.on('timeout', this.onTimeout);
    s.setTimeout(this.owner.opts.idleTimeoutMs);
    s.resume();
  }

  drain(): void {
    if (!this.req && this.buf.length === 0 && this.discard === 0) this.finish();
  }

  destroy(): void {
    this.socket.destroy();
    this.teardown();
  }

  private teardown(): void {
    if (this.headersTimer) clearTimeout(this.headersTimer);
    this.headersTimer = undefined;
    if (this.req && !this.req.done) this.req.app.destroy();
    this.req = undefined;
    this.owner.forget(this);
  }

  /** Ends the client connection after what was written. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.socket.end();
    this.socket.destroySoon();
  }

  private data(chunk: Buffer): void {
    if (this.finished) return;
    const req = this.req;
    if (req && req.bodyLeft > 0) {
      const n = Math.min(req.bodyLeft, chunk.length);
      req.bodyLeft -= n;
      if (!req.app.write(n === chunk.length ? chunk : chunk.subarray(0, n))) this.backpressure(req.app);
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    if (this.discard > 0) {
      const n = Math.min(this.discard, chunk.length);
      this.discard -= n;
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.req) {
      // Pipelined: the next request waits until this response is complete.
      this.socket.pause();
      return;
    }
    this.next();
  }

  private backpressure(app: net.Socket): void {
    this.socket.pause();
    app.once('drain', () => {
      if (!this.socket.destroyed) this.socket.resume();
    });
  }

  /** Takes the next request out of `buf`, if its head is complete. */
  private next(): void {
    while (!this.req && !this.finished && this.discard === 0 && this.buf.length > 0) {
      if (this.socket.writableNeedDrain) {
        // As node:http does: a client that pipelines without reading its responses is not read further.
        this.socket.pause();
        if (!this.awaitingDrain) {
          this.awaitingDrain = true;
          this.socket.once('drain', () => {
            this.awaitingDrain = false;
            this.next();
          });
        }
        return;
      }
      const head = parseRequestHead(this.buf);
      if (head === 'more') {
        this.headersTimer ??= setTimeout(() => this.headersTimedOut(), this.owner.opts.headersTimeoutMs);
        return;
      }
      if (this.headersTimer) clearTimeout(this.headersTimer);
      this.headersTimer = undefined;
      if (head === 'other') {
        this.handOver();
        return;
      }
      const rest = this.buf.subarray(head.length);
      this.buf = EMPTY;
      this.request(head, rest);
    }
    if (!this.req && !this.finished) {
      if (this.ended && this.buf.length === 0 && this.discard === 0) this.finish();
      else if (this.socket.isPaused()) this.socket.resume();
    }
  }

  private headersTimedOut(): void {
    this.headersTimer = undefined;
    if (this.req || this.finished) return;
    this.socket.write('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    this.finish();
  }

  private handOver(): void {
    const s = this.socket;
    s.pause();
    s.removeListener('data', this.onData);
    s.removeListener('end', this.onEnd);
    s.removeListener('close', this.onClose);
    s.removeListener('timeout', this.onTimeout);
    s.setTimeout(0);
    this.owner.forget(this);
    if (this.buf.length > 0) s.unshift(this.buf);
    this.buf = EMPTY;
    this.owner.opts.handOver(s, this.ctx);
  }

  private request(head: RequestHead, rest: Buffer): void {
    const o = this.owner.opts;
    const start = performance.now();
    const { path, query } = o.normalize(head.target);
    const decision = o.authorize(this.ctx, {
      protocol: 'http',
      method: head.method,
      path,
      host: head.headers.host ?? '',
      headers: head.headers,
      sni: this.ctx.sni,
    });
    const series = o.series(this.ctx);
    const grpc = isGrpc(head.headers['content-type']);
    const close = head.close || o.draining();
    if (!decision.allow) {
      series?.record(403, grpc, performance.now() - start);
      this.socket.write(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${DENIED_BODY.length}\r\n${close ? 'connection: close\r\n' : ''}\r\n${DENIED_BODY}`,
      );
      if (close) {
        this.finish();
        return;
      }
      // The body of a denied request is read and dropped, as node:http does.
      const n = Math.min(head.contentLength, rest.length);
      this.discard = head.contentLength - n;
      this.buf = rest.subarray(n);
      return;
    }
    let text = `${head.method} ${path}${query} HTTP/1.1\r\n`;
    const f = head.forward;
    for (let k = 0; k < f.length; k += 2) text += `${f[k]}: ${f[k + 1]}\r\n`;
    const xfcc = o.xfcc(this.ctx);
    if (xfcc) text += `x-forwarded-client-cert: ${xfcc}\r\n`;
    text += '\r\n';
    const { socket: app, reused } = this.owner.appPool.take(this.ctx.port);
    const req: InFlight = {
      method: head.method,
      head: text,
      start,
      series,
      bodyLeft: head.contentLength,
      hadBody: head.contentLength > 0,
      close,
      retried: false,
      app,
      reused,
      responseStarted: false,
      rbuf: EMPTY,
      left: 0,
      status: 0,
      appCloses: false,
      grpc,
      done: false,
    };
    this.req = req;
    this.socket.setTimeout(0);
    this.attach(req);
    const n = Math.min(req.bodyLeft, rest.length);
    req.bodyLeft -= n;
    if (n > 0) app.write(Buffer.concat([Buffer.from(text, 'latin1'), rest.subarray(0, n)]));
    else app.write(text, 'latin1');
    if (n < rest.length) {
      this.buf = rest.subarray(n);
      this.socket.pause();
    }
  }

  private attach(req: InFlight): void {
    const app = req.app;
    req.onAppData = (chunk: Buffer) => this.response(req, chunk);
    req.onAppEnd = () => this.appEnded(req);
    req.onAppClose = () => this.appClosed(req);
    app.on('data', req.onAppData);
    app.once('end', req.onAppEnd);
    app.once('close', req.onAppClose);
  }

  private detach(req: InFlight): void {
    if (req.onAppData) req.app.removeListener('data', req.onAppData);
    if (req.onAppEnd) req.app.removeListener('end', req.onAppEnd);
    if (req.onAppClose) req.app.removeListener('close', req.onAppClose);
    req.app.removeAllListeners('drain');
  }

  private response(req: InFlight, chunk: Buffer): void {
    if (req.done || this.req !== req) return;
    req.responseStarted = true;
    if (req.framing === undefined) {
      req.rbuf = req.rbuf.length === 0 ? chunk : Buffer.concat([req.rbuf, chunk]);
      for (;;) {
        const head = parseResponseHead(req.rbuf, req.method);
        if (head === 'more') return;
        if (head instanceof Error) {
          this.upstreamFailed(req, head);
          return;
        }
        if (head.status === 101) {
          this.upstreamFailed(req, new Error('101 without an upgrade request'));
          return;
        }
        if (head.status < 200) {
          // Interim (100 Continue, 103 Early Hints): passed on, and the real response follows.
          this.write(req, `${head.text}\r\n`);
          req.rbuf = req.rbuf.subarray(head.length);
          continue;
        }
        req.status = head.status;
        req.framing = head.framing;
        req.left = head.contentLength;
        req.appCloses = head.appCloses;
        if (head.framing === 'chunked') req.chunked = new ChunkedScanner();
        // Decided now, not at the request: a drain that began meanwhile closes this connection too.
        if (this.owner.opts.draining()) req.close = true;
        const closeClient = req.close || head.framing === 'close';
        chunk = req.rbuf;
        req.rbuf = EMPTY;
        const pos = head.length;
        const headText = `${head.text}${closeClient ? 'connection: close\r\n' : ''}\r\n`;
        // Head and the body bytes that came with it in one write (one TLS record for a small response).
        const bodyNow = this.bodyBytes(req, chunk, pos);
        if (bodyNow instanceof Error) {
          this.upstreamFailed(req, bodyNow);
          return;
        }
        this.write(req, bodyNow.length > 0 ? Buffer.concat([Buffer.from(headText, 'latin1'), bodyNow]) : headText);
        break;
      }
    } else {
      const body = this.bodyBytes(req, chunk, 0);
      if (body instanceof Error) {
        this.socket.destroy();
        this.teardown();
        return;
      }
      if (body.length > 0) this.write(req, body);
    }
    if (req.framing === 'none' || (req.framing === 'length' && req.left === 0) || (req.framing === 'chunked' && req.done)) this.responseDone(req);
  }

  /** The part of `chunk` (from `pos`) that belongs to the response body; marks `done` for chunked. */
  private bodyBytes(req: InFlight, chunk: Buffer, pos: number): Buffer | Error {
    const avail = chunk.length - pos;
    if (avail === 0) return EMPTY;
    if (req.framing === 'none') return new Error('bytes after a response without a body');
    if (req.framing === 'close') return chunk.subarray(pos);
    if (req.framing === 'length') {
      const n = Math.min(req.left, avail);
      req.left -= n;
      if (n < avail) return new Error('bytes after the end of the response');
      return chunk.subarray(pos, pos + n);
    }
    let scanned;
    try {
      scanned = req.chunked!.scan(chunk, pos);
    } catch (err) {
      return err as Error;
    }
    if (scanned.done) {
      req.done = true;
      if (pos + scanned.used < chunk.length) return new Error('bytes after the end of the response');
    }
    return chunk.subarray(pos, pos + scanned.used);
  }

  private write(req: InFlight, data: Buffer | string): void {
    const ok = typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
    if (!ok && !req.app.isPaused()) {
      req.app.pause();
      this.socket.once('drain', () => {
        if (!req.app.destroyed) req.app.resume();
      });
    }
  }

  private responseDone(req: InFlight): void {
    req.done = true;
    this.detach(req);
    if (req.app.isPaused()) req.app.resume();
    req.series?.record(req.status, req.grpc, performance.now() - req.start);
    this.req = undefined;
    const bodyPending = req.bodyLeft > 0;
    if (req.appCloses || bodyPending) req.app.destroy();
    else this.owner.appPool.give(this.ctx.port, req.app);
    if (req.close || req.framing === 'close' || bodyPending || this.owner.opts.draining()) {
      this.finish();
      return;
    }
    this.socket.setTimeout(this.owner.opts.idleTimeoutMs);
    this.next();
  }

  private appEnded(req: InFlight): void {
    if (req.done || this.req !== req) return;
    if (req.framing === 'close') {
      this.responseDone(req);
      return;
    }
    this.upstreamFailed(req, new Error('app closed the connection before the response was complete'));
  }

  private appClosed(req: InFlight): void {
    if (req.done || this.req !== req) return;
    this.upstreamFailed(req, new Error('app connection closed'));
  }

  private upstreamFailed(req: InFlight, err: Error): void {
    if (req.done || this.req !== req) return;
    this.detach(req);
    req.app.destroy();
    if (req.responseStarted && req.framing !== undefined) {
      // Part of the response is already on its way: the client must see a broken response.
      req.done = true;
      this.socket.destroy();
      this.teardown();
      return;
    }
    // A pooled connection the app closed just as we picked it: the app never saw the request, so an
    // idempotent one without a body is retried once on a fresh connection.
    if (!req.retried && req.reused && !req.hadBody && !req.responseStarted && IDEMPOTENT.has(req.method)) {
      const { socket: app, reused } = this.owner.appPool.take(this.ctx.port);
      req.app = app;
      req.reused = reused;
      req.retried = true;
      this.attach(req);
      app.write(req.head, 'latin1');
      return;
    }
    req.done = true;
    this.owner.opts.logger.debug('app connection failed', { port: this.ctx.port, error: err });
    req.series?.record(503, req.grpc, performance.now() - req.start);
    this.req = undefined;
    const close = req.close || req.bodyLeft > 0 || this.owner.opts.draining();
    this.socket.write(
      `HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: ${UNAVAILABLE_BODY.length}\r\n${close ? 'connection: close\r\n' : ''}\r\n${UNAVAILABLE_BODY}`,
    );
    if (close) this.finish();
    else {
      this.socket.setTimeout(this.owner.opts.idleTimeoutMs);
      this.next();
    }
  }

  private clientEnded(): void {
    this.ended = true;
    if (this.req && this.req.bodyLeft > 0) {
      // The rest of the body will never come: the request cannot complete, so neither connection waits for it.
      this.destroy();
      return;
    }
    if (!this.req && this.discard === 0) {
      if (this.buf.length === 0) this.finish();
      else this.next();
    }
  }
}
