// Inbound capture (15006): redirected connections to the pod's ports. Per port, PeerAuthentication
// decides what may come in (STRICT: mTLS only; PERMISSIVE: mTLS or plaintext, told apart by the first
// bytes and the ALPN; DISABLE: plaintext passthrough); then authorization per connection (TCP) or per
// request (HTTP/1.1, HTTP/2), and the bytes go on to the app on <appHost>:<original port>.
//
// TLS is terminated by one never-listening tls.Server fed with emit('connection'): that keeps Node's
// own chain check (`authorized`), handshake timeout and setSecureContext for rotation. Its
// 'secureConnection' hands back a new TLSSocket, found again by the TCP 4-tuple it shares with the
// raw socket (the kernel keeps 4-tuples unique among live connections).
import net from 'node:net';
import tls from 'node:tls';
import { createProxyLogger, type ProxyLogger as Logger } from './log.ts';
import { parseClientHello, peek, untilEmpty, peerIdentity, sniffPlaintext, spliceSockets, startsWithTls, MAX_REQUEST_LINE } from './detect.ts';
import type { PlainProtocol } from './detect.ts';
import { InboundHttp, authzRequest, decide } from './http-authz.ts';
import type { InboundContext } from './http-authz.ts';
import type { ProxyMetrics } from './metrics.ts';
import { OUTBOUND_PORT } from './outbound.ts';
import { READY_PORT, STATS_PORT } from './admin.ts';
import { ALPN_H2, ALPN_HTTP1, ALPN_TCP, INBOUND_ALPNS, MESH_ALPNS, meshTlsOptions, plainIp } from './types.ts';
import type { InboundConfig, MeshCredentials, OriginalDestinationLookup, PeerAuthenticationMode, TlsMaterial } from './types.ts';

export const INBOUND_PORT = 15006;
/**
 * The sidecar's own ports (outbound, inbound, stats, readiness). A connection "to" one of them came to the pod IP
 * and was redirected here; forwarding it to loopback would loop back into the proxy (a connection storm) or reach
 * endpoints meant for the pod alone (/quitquitquit) as if from inside the pod. Envoy blackholes these too.
 */
const SIDECAR_PORTS: ReadonlySet<number> = new Set([OUTBOUND_PORT, INBOUND_PORT, STATS_PORT, READY_PORT]);
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 3_600_000;
export const DEFAULT_DETECTION_TIMEOUT_MS = 1000;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface InboundOptions {
  tls: TlsMaterial;
  /** Read on every decision: a new config applies from the next connection or request on. */
  config: () => InboundConfig;
  originalDestination: OriginalDestinationLookup;
  metrics?: ProxyMetrics;
  logger?: Logger;
  /** Where the app listens; default 127.0.0.1. */
  appHost?: string;
  /** Idle TCP connections are closed after this; default 1 h (Envoy's default). */
  tcpIdleTimeoutMs?: number;
  /** Idle HTTP keep-alive connections and HTTP/2 sessions; default 1 h. */
  httpIdleTimeoutMs?: number;
  /**
   * How long to wait for a plaintext client's first bytes before taking the connection as opaque TCP
   * (server-first protocols); default 1 s. STRICT ports wait `handshakeTimeoutMs` for a ClientHello instead.
   */
  detectionTimeoutMs?: number;
  /** A ClientHello must arrive and the handshake finish within this; default 10 s. */
  handshakeTimeoutMs?: number;
  /** An HTTP/1.1 request's headers must arrive within this; default 60 s. */
  httpHeadersTimeoutMs?: number;
}

type Verdict =
  | { kind: 'refuse'; reason: string }
  | { kind: 'mtls' }
  | { kind: 'passthrough'; sni?: string }
  | { kind: 'plain'; protocol: PlainProtocol };

interface PendingHandshake {
  ctx: Omit<InboundContext, 'mtls' | 'peer' | 'sni'>;
  timer: NodeJS.Timeout;
}

function tupleKey(socket: net.Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}|${socket.localAddress}|${socket.localPort}`;
}

export class InboundProxy {
  readonly server: net.Server;
  private readonly options: InboundOptions;
  private readonly logger: Logger;
  private readonly appHost: string;
  private readonly tcpIdleTimeoutMs: number;
  private readonly detectionTimeoutMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly tlsServer: tls.Server;
  private readonly http: InboundHttp;
  private readonly pending = new Map<string, PendingHandshake>();
  private readonly sockets = new Set<net.Socket>();
  private readonly unsubscribe: () => void;
  private hasCredentials = false;
  /** Where this listener is bound (15006 in a pod; any port in tests). */
  private listeningPort: number | undefined;

  constructor(options: InboundOptions) {
    this.options = options;
    this.logger = options.logger ?? createProxyLogger({ context: { component: 'proxy-inbound' } });
    this.appHost = options.appHost ?? '127.0.0.1';
    this.tcpIdleTimeoutMs = options.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS;
    this.detectionTimeoutMs = options.detectionTimeoutMs ?? DEFAULT_DETECTION_TIMEOUT_MS;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.tlsServer = tls.createServer({
      // The chain is checked by OpenSSL against the bundle; we read the verdict (`authorized`) and
      // log why, instead of Node dropping the socket silently.
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: [...INBOUND_ALPNS],
      handshakeTimeout: this.handshakeTimeoutMs,
    });
    this.tlsServer.on('secureConnection', (socket: tls.TLSSocket) => this.onSecure(socket));
    this.tlsServer.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => this.onTlsError(err, socket));
    const initial = options.tls.current();
    if (initial) this.setCredentials(initial);
    this.unsubscribe = options.tls.onChange((credentials) => this.setCredentials(credentials));
    this.http = new InboundHttp({
      config: options.config,
      appHost: this.appHost,
      selfSpiffeId: () => options.tls.current()?.spiffeId,
      logger: this.logger,
      metrics: options.metrics,
      idleTimeoutMs: options.httpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS,
      headersTimeoutMs: options.httpHeadersTimeoutMs,
    });
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.handle(socket));
  }

  /** New handshakes use the new certificate and bundle; established connections keep theirs. */
  private setCredentials(credentials: MeshCredentials): void {
    this.tlsServer.setSecureContext(meshTlsOptions(credentials));
    this.hasCredentials = true;
  }

  listen(port = INBOUND_PORT, host?: string): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.removeListener('error', reject);
        const address = this.server.address() as net.AddressInfo;
        this.listeningPort = address.port;
        resolve(address);
      });
    });
  }

  /**
   * Stops accepting. With `graceMs`, open connections get that long to finish (idle HTTP keep-alive
   * connections are closed at once, busy ones after their response, HTTP/2 sessions get a GOAWAY);
   * whatever is still open then is torn down.
   */
  async close(graceMs = 0): Promise<void> {
    this.unsubscribe();
    const closed = this.server.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    if (graceMs > 0) {
      this.http.drain();
      await untilEmpty(this.sockets, graceMs);
    }
    for (const socket of this.sockets) socket.destroy();
    for (const entry of this.pending.values()) clearTimeout(entry.timer);
    this.pending.clear();
    this.http.close();
    await closed;
  }

  /** Takes one accepted, redirected connection (what the listener calls). */
  handle(raw: net.Socket): void {
    this.sockets.add(raw);
    raw.once('close', () => this.sockets.delete(raw));
    raw.on('error', () => raw.destroy());
    let port: number;
    let destinationIp: string;
    try {
      const dst = this.options.originalDestination(raw);
      port = dst.port;
      destinationIp = plainIp(dst.address);
    } catch (err) {
      this.logger.warn('inbound connection without original destination closed', { error: err, source_ip: plainIp(raw.remoteAddress) });
      raw.destroy();
      return;
    }
    if (SIDECAR_PORTS.has(port) || port === this.listeningPort) {
      this.logger.warn("inbound connection to the proxy's own port refused", { destination_port: port, source_ip: plainIp(raw.remoteAddress) });
      raw.destroy();
      return;
    }
    const config = this.options.config();
    let mode: PeerAuthenticationMode;
    try {
      mode = config.modeForPort(port);
    } catch (err) {
      this.logger.error('no PeerAuthentication mode for port: closing', { destination_port: port, error: err });
      raw.destroy();
      return;
    }
    const ctx = { port, destinationIp, sourceIp: plainIp(raw.remoteAddress) };
    const opaque = config.protocolForPort?.(port) === 'tcp';
    if (mode === 'DISABLE' && opaque) {
      this.dispatch(raw, { ...ctx, mtls: false }, 'tcp', undefined);
      return;
    }
    const decideVerdict = (bytes: Buffer, final: boolean): Verdict | undefined => this.verdict(mode, opaque, bytes, final);
    const timeout = mode === 'STRICT' ? this.handshakeTimeoutMs : this.detectionTimeoutMs;
    peek(raw, decideVerdict, timeout, 64 * 1024, (err, peeked) => {
      if (err || !peeked) {
        raw.destroy();
        return;
      }
      const verdict = peeked.verdict;
      if (verdict.kind === 'refuse') {
        this.logger.info('inbound connection refused', { reason: verdict.reason, mode, destination_port: port, source_ip: ctx.sourceIp });
        raw.destroy();
      } else if (peeked.ended && verdict.kind !== 'passthrough' && verdict.kind !== 'plain') {
        raw.destroy();
      } else if (verdict.kind === 'mtls') {
        this.terminate(raw, ctx);
      } else if (verdict.kind === 'passthrough') {
        this.dispatch(raw, { ...ctx, mtls: false, sni: verdict.sni }, 'tcp', peeked.ended ? peeked.head : undefined);
      } else {
        // The bytes could not be put back (the client already half-closed): only TCP can replay them.
        const protocol = peeked.ended ? 'tcp' : verdict.protocol;
        this.dispatch(raw, { ...ctx, mtls: false }, protocol, peeked.ended ? peeked.head : undefined);
      }
    });
  }

  private verdict(mode: PeerAuthenticationMode, opaque: boolean, bytes: Buffer, final: boolean): Verdict | undefined {
    if (mode === 'DISABLE') {
      const protocol = sniffPlaintext(bytes, final);
      return protocol && { kind: 'plain', protocol };
    }
    const isTls = startsWithTls(bytes);
    if (mode === 'STRICT') {
      if (isTls === undefined) return final ? { kind: 'refuse', reason: 'no TLS ClientHello: port is STRICT' } : undefined;
      return isTls ? { kind: 'mtls' } : { kind: 'refuse', reason: 'plaintext: port is STRICT' };
    }
    // PERMISSIVE
    if (isTls === undefined) return final ? { kind: 'plain', protocol: 'tcp' } : undefined;
    if (isTls) {
      const hello = parseClientHello(bytes);
      if (hello === 'more') return final ? { kind: 'refuse', reason: 'incomplete TLS ClientHello' } : undefined;
      if (hello === 'invalid') return { kind: 'refuse', reason: 'malformed TLS ClientHello' };
      // Only a mesh ALPN marks a mesh handshake; other TLS is the app's own (Istio's PERMISSIVE does the same).
      return hello.alpn.some((p) => MESH_ALPNS.includes(p)) ? { kind: 'mtls' } : { kind: 'passthrough', sni: hello.sni };
    }
    if (opaque) return { kind: 'plain', protocol: 'tcp' };
    const protocol = sniffPlaintext(bytes, final || bytes.length >= MAX_REQUEST_LINE);
    return protocol && { kind: 'plain', protocol };
  }

  private terminate(raw: net.Socket, ctx: PendingHandshake['ctx']): void {
    if (!this.hasCredentials) {
      this.logger.warn('mTLS connection refused: no workload certificate yet', { destination_port: ctx.port, source_ip: ctx.sourceIp });
      raw.destroy();
      return;
    }
    const key = tupleKey(raw);
    const entry: PendingHandshake = {
      ctx,
      // Only forgets the entry: the TLS socket itself times out through handshakeTimeout.
      timer: setTimeout(() => {
        if (this.pending.get(key) === entry) this.pending.delete(key);
      }, this.handshakeTimeoutMs + 1000),
    };
    this.pending.set(key, entry);
    this.tlsServer.emit('connection', raw);
  }

  private takePending(socket: tls.TLSSocket): PendingHandshake['ctx'] | undefined {
    const key = tupleKey(socket);
    const entry = this.pending.get(key);
    if (!entry) return undefined;
    this.pending.delete(key);
    clearTimeout(entry.timer);
    return entry.ctx;
  }

  private onTlsError(err: Error, socket: tls.TLSSocket): void {
    const ctx = this.takePending(socket);
    this.logger.info('inbound mTLS handshake failed', {
      reason: (err as NodeJS.ErrnoException).code ?? err.message,
      destination_port: ctx?.port,
      source_ip: ctx?.sourceIp ?? plainIp(socket.remoteAddress),
    });
    socket.destroy();
  }

  private onSecure(socket: tls.TLSSocket): void {
    socket.on('error', () => socket.destroy());
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const base = this.takePending(socket);
    if (!base) {
      socket.destroy();
      return;
    }
    const refuse = (reason: string): void => {
      this.logger.info('inbound mTLS peer refused', { reason, destination_port: base.port, source_ip: base.sourceIp });
      socket.destroy();
    };
    const cert = socket.getPeerX509Certificate();
    if (!socket.authorized) {
      refuse(cert ? `client certificate not trusted: ${String(socket.authorizationError)}` : 'no client certificate');
      return;
    }
    const config = this.options.config();
    const identity = peerIdentity(cert?.raw, config.trustDomain);
    if (!identity.ok) {
      refuse(identity.reason);
      return;
    }
    const ctx: InboundContext = {
      ...base,
      mtls: true,
      peer: { spiffeId: identity.spiffeId, principal: identity.principal },
      sni: typeof socket.servername === 'string' && socket.servername ? socket.servername : undefined,
    };
    // The client's ALPN says what the tunnel carries; without one, look at the decrypted bytes.
    const alpn = socket.alpnProtocol;
    const protocol: PlainProtocol | undefined =
      alpn === ALPN_TCP || config.protocolForPort?.(base.port) === 'tcp'
        ? 'tcp'
        : alpn === ALPN_HTTP1 || alpn === 'http/1.1'
          ? 'http1'
          : alpn === ALPN_H2 || alpn === 'h2'
            ? 'h2'
            : undefined;
    if (protocol) {
      this.dispatch(socket, ctx, protocol, undefined);
      return;
    }
    peek(socket, sniffPlaintext, this.detectionTimeoutMs, MAX_REQUEST_LINE, (err, peeked) => {
      if (err || !peeked) socket.destroy();
      else this.dispatch(socket, ctx, peeked.ended ? 'tcp' : peeked.verdict, peeked.ended ? peeked.head : undefined);
    });
  }

  private dispatch(socket: net.Socket, ctx: InboundContext, protocol: PlainProtocol, replay: Buffer | undefined): void {
    if (protocol === 'http1') this.http.serveHttp1(socket, ctx);
    else if (protocol === 'h2') this.http.serveHttp2(socket, ctx);
    else this.serveTcp(socket, ctx, replay);
  }

  /** Opaque TCP: one decision per connection; denied connections are closed before the app sees a byte. */
  private serveTcp(socket: net.Socket, ctx: InboundContext, replay: Buffer | undefined): void {
    const config = this.options.config();
    const decision = decide(config, authzRequest(config, ctx, ctx.sni ? { protocol: 'tcp', sni: ctx.sni } : undefined), this.logger);
    if (!decision.allow) {
      socket.destroy();
      return;
    }
    const app = net.connect({ host: this.appHost, port: ctx.port, allowHalfOpen: true, noDelay: true });
    this.sockets.add(app);
    const tracker = this.options.metrics?.tcpConnection(
      {
        reporter: 'destination',
        sourcePrincipal: ctx.peer?.spiffeId,
        destinationPrincipal: ctx.mtls ? this.options.tls.current()?.spiffeId : undefined,
        destinationWorkload: config.workload.name,
        destinationNamespace: config.workload.namespace,
        mtls: ctx.mtls,
      },
      app,
      false,
    );
    // A refused app connection resets the client's (spliceSockets), so it never looks like a clean close.
    const onConnectError = (err: Error): void => {
      this.logger.debug('app connection failed', { destination_port: ctx.port, error: err });
    };
    app.once('error', onConnectError);
    app.once('connect', () => app.removeListener('error', onConnectError));
    app.once('close', () => {
      this.sockets.delete(app);
      tracker?.close();
    });
    if (replay) app.write(replay);
    spliceSockets(socket, app, this.tcpIdleTimeoutMs);
  }
}
