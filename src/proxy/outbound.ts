// Outbound capture (15001): the app's redirected connections. To a meshed destination the bytes go
// inside mTLS originated with the workload certificate, and only to a server whose certificate
// chains to the bundle and names one of the SPIFFE IDs that destination may have; anything else is
// passed through as plain TCP. Any verification failure closes the app's connection (fail closed).
import net from 'node:net';
import tls from 'node:tls';
import { createProxyLogger, type ProxyLogger as Logger } from './log.ts';
import { abort, peek, peerIdentity, sniffPlaintext, spliceSockets, untilEmpty, MAX_REQUEST_LINE } from './detect.ts';
import type { PlainProtocol } from './detect.ts';
import type { ProxyMetrics } from './metrics.ts';
import { ALPN_H2, ALPN_HTTP1, ALPN_TCP, plainIp } from './types.ts';
import type { MeshedDestination, OriginalDestinationLookup, OutboundConfig, TlsMaterial } from './types.ts';

export const OUTBOUND_PORT = 15001;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export interface OutboundOptions {
  tls: TlsMaterial;
  /** Read for every connection. */
  config: () => OutboundConfig;
  originalDestination: OriginalDestinationLookup;
  metrics?: ProxyMetrics;
  logger?: Logger;
  /** This workload, for metric labels. */
  workload?: { name?: string; namespace?: string };
  /** TCP connect + TLS handshake to the destination; default 10 s. */
  connectTimeoutMs?: number;
  /** Idle connections are closed after this; default 1 h. */
  idleTimeoutMs?: number;
  /**
   * How long to wait for the app's first bytes to name the tunnel's protocol in ALPN before taking
   * it as opaque TCP (server-first protocols); default 1 s. Destinations with `protocol: 'tcp'` skip it.
   */
  detectionTimeoutMs?: number;
}

const ALPN_FOR: Record<PlainProtocol, string> = { http1: ALPN_HTTP1, h2: ALPN_H2, tcp: ALPN_TCP };

export class OutboundProxy {
  readonly server: net.Server;
  private readonly options: OutboundOptions;
  private readonly logger: Logger;
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly detectionTimeoutMs: number;
  private readonly sockets = new Set<net.Socket>();

  constructor(options: OutboundOptions) {
    this.options = options;
    this.logger = options.logger ?? createProxyLogger({ context: { component: 'proxy-outbound' } });
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 3_600_000;
    this.detectionTimeoutMs = options.detectionTimeoutMs ?? 1000;
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.handle(socket));
  }

  listen(port = OUTBOUND_PORT, host?: string): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.removeListener('error', reject);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /** Stops accepting; with `graceMs`, open connections get that long to end by themselves before they are torn down. */
  async close(graceMs = 0): Promise<void> {
    const closed = this.server.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    if (graceMs > 0) await untilEmpty(this.sockets, graceMs);
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** Takes one accepted, redirected app connection. */
  handle(app: net.Socket): void {
    this.track(app);
    app.on('error', () => app.destroy());
    let address: string;
    let port: number;
    try {
      const dst = this.options.originalDestination(app);
      address = plainIp(dst.address);
      port = dst.port;
    } catch (err) {
      // Not redirected: someone connected to 15001 directly. Forwarding would loop back to us.
      this.logger.warn('outbound connection without original destination closed', { error: err });
      app.destroy();
      return;
    }
    let destination;
    try {
      destination = this.options.config().destinationFor(address, port);
    } catch (err) {
      this.logger.error('outbound destination lookup failed: closing', { destination_ip: address, destination_port: port, error: err });
      abort(app);
      return;
    }
    if (!destination.meshed) {
      this.passthrough(app, address, port);
      return;
    }
    const meshed = destination;
    if (meshed.protocol === 'tcp') {
      this.originate(app, address, port, meshed, ALPN_TCP, undefined);
      return;
    }
    // The ALPN is in the ClientHello, so the protocol must be known before the handshake starts.
    peek(app, sniffPlaintext, this.detectionTimeoutMs, MAX_REQUEST_LINE, (err, peeked) => {
      if (err || !peeked) {
        app.destroy();
        return;
      }
      this.originate(app, address, port, meshed, ALPN_FOR[peeked.ended ? 'tcp' : peeked.verdict], peeked.ended ? peeked.head : undefined);
    });
  }

  private passthrough(app: net.Socket, host: string, port: number): void {
    const upstream = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    this.track(upstream);
    upstream.setTimeout(this.connectTimeoutMs, () => upstream.destroy(new Error('connect timeout')));
    upstream.once('connect', () => upstream.setTimeout(0));
    const tracker = this.options.metrics?.tcpConnection(
      { reporter: 'source', ...this.selfLabels(), mtls: false },
      app,
      true,
    );
    upstream.once('close', () => tracker?.close());
    // Writes queue until the connection is up; a failed connect resets the app's connection.
    spliceSockets(app, upstream, this.idleTimeoutMs);
  }

  private selfLabels(): { sourcePrincipal?: string; sourceWorkload?: string; sourceNamespace?: string } {
    return {
      sourcePrincipal: this.options.tls.current()?.spiffeId,
      sourceWorkload: this.options.workload?.name,
      sourceNamespace: this.options.workload?.namespace,
    };
  }

  private originate(app: net.Socket, host: string, port: number, destination: MeshedDestination, alpn: string, replay: Buffer | undefined): void {
    const credentials = this.options.tls.current();
    const fail = (reason: string): void => {
      this.logger.warn('outbound mTLS refused: closing the app connection', { reason, destination_ip: host, destination_port: port });
      abort(app);
    };
    if (!credentials) {
      fail('no workload certificate yet');
      return;
    }
    if (app.destroyed) return;
    let verified: string | undefined;
    // The TCP socket is made first so the TLS socket inherits allowHalfOpen from it.
    const tcp = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const upstream = tls.connect({
      socket: tcp,
      host,
      secureContext: credentials.secureContext,
      ALPNProtocols: [alpn],
      rejectUnauthorized: true,
      // Node's default never matches URI SANs; the server must present one of the allowed SPIFFE IDs.
      checkServerIdentity: (_host, cert) => {
        const identity = peerIdentity(cert.raw);
        if (!identity.ok) return new Error(identity.reason);
        if (!destination.allowedSpiffeIds.includes(identity.spiffeId)) {
          return new Error(`server identity ${identity.spiffeId} is not one of ${destination.allowedSpiffeIds.join(', ') || '(none)'}`);
        }
        verified = identity.spiffeId;
        return undefined;
      },
    });
    this.track(upstream);
    upstream.setTimeout(this.connectTimeoutMs, () => upstream.destroy(new Error('mTLS connect timeout')));
    const onHandshakeError = (err: Error): void => fail((err as NodeJS.ErrnoException).code ? `${(err as NodeJS.ErrnoException).code}: ${err.message}` : err.message);
    upstream.once('error', onHandshakeError);
    const onAppGone = (): void => {
      upstream.destroy();
    };
    app.once('close', onAppGone);
    upstream.once('secureConnect', () => {
      upstream.removeListener('error', onHandshakeError);
      app.removeListener('close', onAppGone);
      upstream.setTimeout(0);
      if (app.destroyed) {
        upstream.destroy();
        return;
      }
      const tracker = this.options.metrics?.tcpConnection(
        {
          reporter: 'source',
          ...this.selfLabels(),
          destinationPrincipal: verified,
          destinationWorkload: destination.workload?.name,
          destinationNamespace: destination.workload?.namespace,
          destinationService: destination.service,
          mtls: true,
        },
        app,
        true,
      );
      upstream.once('close', () => tracker?.close());
      // App bytes only start flowing once the server's identity is verified.
      if (replay) upstream.write(replay);
      spliceSockets(app, upstream, this.idleTimeoutMs);
    });
  }
}
