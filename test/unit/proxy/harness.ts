// Real sockets on 127.0.0.1 for the data-path tests: a test PKI, credentials, apps that count what
// reaches them, a log sink, and small clients.
import http from 'node:http';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import { createLogger } from '../../../src/telemetry/logger.ts';
import type { Logger } from '../../../src/telemetry/logger.ts';
import type { MeshCredentials } from '../../../src/proxy/types.ts';
import { createTestCa, issueLeaf } from './certs.ts';
import type { TestCa, TestLeaf } from './certs.ts';

export const TD = 'cluster.local';
export const SERVER_ID = `spiffe://${TD}/ns/foo/sa/httpbin`;
export const CLIENT_ID = `spiffe://${TD}/ns/bar/sa/sleep`;

export interface Pki {
  ca: TestCa;
  otherCa: TestCa;
  server: TestLeaf;
  server2: TestLeaf;
  client: TestLeaf;
  otherCaClient: TestLeaf;
  otherDomainClient: TestLeaf;
  twoUriClient: TestLeaf;
}

let pki: Promise<Pki> | undefined;

/** One PKI per test file (key generation is the slow part). */
export function testPki(): Promise<Pki> {
  pki ??= (async () => {
    const ca = await createTestCa('Mesh Root');
    const otherCa = await createTestCa('Other Root');
    return {
      ca,
      otherCa,
      server: await issueLeaf(ca, SERVER_ID),
      server2: await issueLeaf(ca, SERVER_ID),
      client: await issueLeaf(ca, CLIENT_ID),
      otherCaClient: await issueLeaf(otherCa, CLIENT_ID),
      otherDomainClient: await issueLeaf(ca, 'spiffe://evil.example/ns/bar/sa/sleep'),
      twoUriClient: await issueLeaf(ca, { uris: [CLIENT_ID, 'spiffe://cluster.local/ns/x/sa/y'] }),
    };
  })();
  return pki;
}

export function credentials(leaf: TestLeaf, ca: TestCa, spiffeId: string): MeshCredentials {
  return {
    spiffeId,
    keyPem: leaf.keyPem,
    certChainPem: leaf.chainPem,
    trustBundle: [ca.certPem],
    secureContext: tls.createSecureContext({ key: leaf.keyPem, cert: leaf.chainPem, ca: ca.certPem, minVersion: 'TLSv1.2' }),
  };
}

export interface LogSink {
  logger: Logger;
  lines: () => Record<string, unknown>[];
}

export function logSink(): LogSink {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c.toString()));
  const logger = createLogger({ level: 'debug', stream });
  return {
    logger,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    (server as http.Server).closeAllConnections?.();
  });
}

// Everything started here is stopped by stopAll(), so a failing test cannot leave a server that
// keeps the test process alive.
const running = new Set<{ stop(): Promise<void> }>();

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((r) => r.stop()));
}

/** A TCP app that counts every byte it receives and every connection, echoing by default. */
export class CountingApp {
  readonly server: net.Server;
  bytes = 0;
  connections = 0;
  port = 0;
  readonly sockets = new Set<net.Socket>();
  constructor(handler?: (socket: net.Socket) => void) {
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      socket.on('data', (d: Buffer) => {
        this.bytes += d.length;
      });
      if (handler) handler(socket);
      else socket.pipe(socket);
    });
  }
  async start(): Promise<this> {
    this.port = await listen(this.server);
    running.add(this);
    return this;
  }
  async stop(): Promise<void> {
    running.delete(this);
    for (const s of this.sockets) s.destroy();
    await closeServer(this.server);
  }
}

/** An HTTP app answering `<method> <url>` plus what it saw, counting requests. */
export class HttpApp {
  readonly server: http.Server;
  requests: http.IncomingMessage[] = [];
  port = 0;
  constructor(handler?: http.RequestListener) {
    this.server = http.createServer((req, res) => {
      this.requests.push(req);
      if (handler) return void handler(req, res);
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ method: req.method, url: req.url, bodyBytes: n, xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
      });
    });
  }
  async start(): Promise<this> {
    this.port = await listen(this.server);
    running.add(this);
    return this;
  }
  async stop(): Promise<void> {
    running.delete(this);
    await closeServer(this.server);
  }
}

export interface Collected {
  data: Buffer;
  error?: NodeJS.ErrnoException;
}

/** Everything a socket receives until it closes. */
export function collect(socket: net.Socket): Promise<Collected> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (e) => (error = e));
    socket.on('close', () => resolve({ data: Buffer.concat(chunks), error }));
  });
}

export interface MtlsClientOptions {
  port: number;
  leaf?: TestLeaf;
  ca: TestCa;
  alpn?: string[];
  servername?: string;
  maxVersion?: tls.SecureVersion;
  /** Expected server identity; any by default. */
  allowHalfOpen?: boolean;
}

export function mtlsConnect(options: MtlsClientOptions): tls.TLSSocket {
  const tcp = net.connect({ host: '127.0.0.1', port: options.port, allowHalfOpen: options.allowHalfOpen ?? false });
  return tls.connect({
    socket: tcp,
    key: options.leaf?.keyPem,
    cert: options.leaf?.chainPem,
    ca: options.ca.certPem,
    ALPNProtocols: options.alpn,
    servername: options.servername,
    maxVersion: options.maxVersion,
    checkServerIdentity: () => undefined,
  });
}

export function once<T = unknown>(emitter: NodeJS.EventEmitter, event: string): Promise<T> {
  return new Promise((resolve) => emitter.once(event, (v: T) => resolve(v)));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `check` holds (polling), failing after `ms`. */
export async function eventually(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(10);
  }
}
