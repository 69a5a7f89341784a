// The inbound proxy with real TLS between real sockets on 127.0.0.1: PeerAuthentication modes,
// authorization per connection and per request, forwarding, rotation and metrics.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { InboundProxy } from '../../../src/proxy/inbound.ts';
import { ProxyMetrics } from '../../../src/proxy/metrics.ts';
import { MutableTlsMaterial } from '../../../src/proxy/types.ts';
import type { AuthzDecision, AuthzRequest, InboundConfig, PeerAuthenticationMode } from '../../../src/proxy/types.ts';
import {
  CLIENT_ID,
  CountingApp,
  HttpApp,
  SERVER_ID,
  TD,
  collect,
  credentials,
  eventually,
  logSink,
  mtlsConnect,
  once,
  stopAll,
  testPki,
} from './harness.ts';
import type { LogSink, Pki } from './harness.ts';
import type { TestLeaf } from './certs.ts';

const ALLOW: AuthzDecision = { allow: true, policy: null, reason: 'no policy' };

interface Setup {
  proxy: InboundProxy;
  port: number;
  state: { mode: PeerAuthenticationMode; appPort: number; authorize: (r: AuthzRequest) => AuthzDecision };
  seen: AuthzRequest[];
  material: MutableTlsMaterial;
  registry: Registry;
  sink: LogSink;
}

let pki: Pki;
const setups: Setup[] = [];

async function startInbound(mode: PeerAuthenticationMode, appPort: number, options: { withCredentials?: boolean; httpHeadersTimeoutMs?: number; tcpIdleTimeoutMs?: number } = {}): Promise<Setup> {
  const state: Setup['state'] = { mode, appPort, authorize: () => ALLOW };
  const seen: AuthzRequest[] = [];
  const material = new MutableTlsMaterial(options.withCredentials === false ? undefined : credentials(pki.server, pki.ca, SERVER_ID));
  const registry = new Registry();
  const sink = logSink();
  const config = (): InboundConfig => ({
    trustDomain: TD,
    workload: { name: 'httpbin', namespace: 'foo', labels: { app: 'httpbin' } },
    modeForPort: () => state.mode,
    authorize: (request) => {
      seen.push(request);
      return state.authorize(request);
    },
  });
  const proxy = new InboundProxy({
    tls: material,
    config,
    originalDestination: () => ({ address: '127.0.0.1', port: state.appPort }),
    logger: sink.logger,
    metrics: new ProxyMetrics(registry),
    detectionTimeoutMs: 200,
    httpHeadersTimeoutMs: options.httpHeadersTimeoutMs,
    tcpIdleTimeoutMs: options.tcpIdleTimeoutMs,
  });
  const { port } = await proxy.listen(0, '127.0.0.1');
  const setup = { proxy, port, state, seen, material, registry, sink };
  setups.push(setup);
  return setup;
}

/** Writes `payload`, half-closes, and returns all that comes back. */
async function roundTrip(socket: net.Socket, payload: string | Buffer): Promise<{ data: Buffer; error?: Error }> {
  const result = collect(socket);
  socket.end(payload);
  return result;
}

/** An HTTP/1.1 request over mTLS (ALPN as given) through the proxy. */
function mtlsRequest(
  port: number,
  path: string,
  options: { leaf?: TestLeaf; alpn?: string[]; method?: string; body?: string; agent?: http.Agent } = {},
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      method: options.method ?? 'GET',
      headers: { host: 'httpbin.foo' },
      agent: options.agent,
      createConnection: options.agent
        ? undefined
        : () => mtlsConnect({ port, leaf: options.leaf ?? pki.client, ca: pki.ca, alpn: options.alpn ?? ['cinch-http/1.1'] }),
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function plainRequest(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false, headers: { host: 'httpbin.foo' } });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  pki = await testPki();
});

after(async () => {
  await Promise.all(setups.map((s) => s.proxy.close()));
  await stopAll();
});

describe('inbound STRICT', () => {
  let app: CountingApp;
  let setup: Setup;
  before(async () => {
    app = await new CountingApp().start();
    setup = await startInbound('STRICT', app.port);
  });
  after(() => app.stop());

  it('refuses plaintext before a byte reaches the app', async () => {
    const socket = net.connect(setup.port, '127.0.0.1');
    const result = await roundTrip(socket, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    assert.equal(result.data.length, 0);
    assert.equal(app.connections, 0);
    assert.equal(app.bytes, 0);
    await eventually(() => setup.sink.lines().some((l) => l.message === 'inbound connection refused' && l.reason === 'plaintext: port is STRICT'));
  });

  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`refuses a ${maxVersion} client without a certificate`, async () => {
      const socket = mtlsConnect({ port: setup.port, ca: pki.ca, alpn: ['cinch-tcp'], maxVersion });
      socket.on('secureConnect', () => socket.write('secret'));
      const result = await collect(socket);
      assert.equal(result.data.length, 0);
      assert.equal(app.bytes, 0);
      assert.equal(app.connections, 0);
      await eventually(() => setup.sink.lines().some((l) => l.reason === 'no client certificate'));
    });
  }

  const refusals: [string, (p: Pki) => TestLeaf, RegExp][] = [
    ['a certificate from another CA', (p) => p.otherCaClient, /not trusted/],
    ['a certificate of another trust domain', (p) => p.otherDomainClient, /not in trust domain cluster\.local/],
    ['a certificate with two URI SANs', (p) => p.twoUriClient, /2 URI SANs/],
  ];
  for (const [name, leaf, reason] of refusals) {
    it(`refuses ${name}`, async () => {
      const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: leaf(pki), alpn: ['cinch-tcp'] });
      socket.on('secureConnect', () => socket.write('secret'));
      const result = await collect(socket);
      assert.equal(result.data.length, 0);
      assert.equal(app.bytes, 0);
      assert.equal(app.connections, 0);
      await eventually(() => setup.sink.lines().some((l) => l.message === 'inbound mTLS peer refused' && reason.test(String(l.reason))));
    });
  }

  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`accepts mTLS (${maxVersion}) and forwards to the app`, async () => {
      const before = app.bytes;
      const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'], maxVersion });
      await once(socket, 'secureConnect');
      assert.equal(socket.getProtocol(), maxVersion);
      const result = await roundTrip(socket, 'hello mesh');
      assert.equal(result.data.toString(), 'hello mesh');
      assert.equal(app.bytes - before, 10);
      const request = setup.seen.at(-1)!;
      assert.equal(request.source.principal, 'cluster.local/ns/bar/sa/sleep');
      assert.equal(request.source.namespace, 'bar');
      assert.equal(request.source.ip, '127.0.0.1');
      assert.deepEqual(request.destination, { namespace: 'foo', labels: { app: 'httpbin' }, port: app.port, ip: '127.0.0.1' });
      assert.equal(request.request, undefined);
    });
  }

  it('passes the SNI of a TCP connection to authorization', async () => {
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'], servername: 'db.foo.svc' });
    const result = await roundTrip(socket, 'x');
    assert.equal(result.data.toString(), 'x');
    assert.deepEqual(setup.seen.at(-1)!.request, { protocol: 'tcp', sni: 'db.foo.svc' });
  });
});

describe('inbound PERMISSIVE and DISABLE', () => {
  let app: CountingApp;
  before(async () => {
    app = await new CountingApp().start();
  });
  after(() => app.stop());

  it('PERMISSIVE accepts plaintext TCP without a principal', async () => {
    const setup = await startInbound('PERMISSIVE', app.port);
    const result = await roundTrip(net.connect(setup.port, '127.0.0.1'), Buffer.from([0, 1, 2, 3]));
    assert.deepEqual([...result.data], [0, 1, 2, 3]);
    assert.equal(setup.seen.at(-1)!.source.principal, undefined);
  });

  it('PERMISSIVE accepts mTLS with a mesh ALPN', async () => {
    const setup = await startInbound('PERMISSIVE', app.port);
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
    const result = await roundTrip(socket, 'over mtls');
    assert.equal(result.data.toString(), 'over mtls');
    assert.equal(setup.seen.at(-1)!.source.principal, 'cluster.local/ns/bar/sa/sleep');
  });

  it("PERMISSIVE passes TLS without a mesh ALPN through to the app (the app's own TLS)", async () => {
    const seen: Buffer[] = [];
    const tlsApp = await new CountingApp((s) => s.on('data', (d: Buffer) => seen.push(d))).start();
    const setup = await startInbound('PERMISSIVE', tlsApp.port);
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, alpn: ['http/1.1'], servername: 'shop.example' });
    socket.on('error', () => {});
    await eventually(() => tlsApp.bytes > 0);
    const bytes = Buffer.concat(seen);
    assert.equal(bytes[0], 0x16);
    assert.equal(bytes[1], 0x03);
    assert.deepEqual(setup.seen.at(-1)!.request, { protocol: 'tcp', sni: 'shop.example' });
    assert.equal(setup.seen.at(-1)!.source.principal, undefined);
    socket.destroy();
    await tlsApp.stop();
  });

  it('PERMISSIVE refuses a mesh ALPN with a bad certificate rather than falling back to plaintext', async () => {
    const setup = await startInbound('PERMISSIVE', app.port);
    const before = app.connections;
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.otherCaClient, alpn: ['cinch-tcp'] });
    socket.on('secureConnect', () => socket.write('x'));
    const result = await collect(socket);
    assert.equal(result.data.length, 0);
    assert.equal(app.connections, before);
  });

  it('DISABLE passes plaintext, even TLS bytes, straight through', async () => {
    const setup = await startInbound('DISABLE', app.port);
    const result = await roundTrip(net.connect(setup.port, '127.0.0.1'), Buffer.from([0x16, 0x03, 0x01, 0x00]));
    assert.deepEqual([...result.data], [0x16, 0x03, 0x01, 0x00]);
  });

  it('takes a silent plaintext client as TCP after the detection timeout (server-first protocols)', async () => {
    const greeter = await new CountingApp((s) => s.end('220 ready\r\n')).start();
    const setup = await startInbound('PERMISSIVE', greeter.port);
    const result = await collect(net.connect(setup.port, '127.0.0.1'));
    assert.equal(result.data.toString(), '220 ready\r\n');
    await greeter.stop();
  });
});

describe("inbound connections to the proxy's own ports", () => {
  it('closes them without forwarding: to its own listener that would loop back into itself, to 15020 reach the admin endpoints from loopback', async () => {
    const setup = await startInbound('PERMISSIVE', 0);
    for (const port of [setup.port, 15020, 15021, 15001, 15006]) {
      setup.state.appPort = port; // as a direct call to <pod IP>:<port> arrives, redirected with that original port
      const result = await roundTrip(net.connect(setup.port, '127.0.0.1'), 'POST /quitquitquit HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n');
      assert.equal(result.data.length, 0, `port ${port}: closed without an answer`);
    }
    const refusals = setup.sink.lines().filter((l) => l.message === "inbound connection to the proxy's own port refused");
    assert.deepEqual(
      refusals.map((l) => l.destination_port),
      [setup.port, 15020, 15021, 15001, 15006],
    );
  });
});

describe('inbound TCP behaviour', () => {
  let setup: Setup;
  let app: CountingApp;
  before(async () => {
    // Answers only once the client has half-closed: the client must still get the answer.
    app = await new CountingApp((s) => {
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length));
      s.on('end', () => s.end(`got ${n} bytes`));
    }).start();
    setup = await startInbound('STRICT', app.port);
  });
  after(() => app.stop());

  it('closes a denied TCP connection before a byte reaches the app', async () => {
    setup.state.authorize = () => ({ allow: false, policy: 'foo/deny-tcp', reason: 'matched DENY policy foo/deny-tcp' });
    try {
      const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
      socket.on('secureConnect', () => socket.write('should never arrive'));
      const result = await collect(socket);
      assert.equal(result.data.length, 0);
      assert.equal(app.connections, 0);
      assert.equal(app.bytes, 0);
      const line = setup.sink.lines().find((l) => l.message === 'authorization denied');
      assert.ok(line);
      assert.equal(line.policy, 'foo/deny-tcp');
      assert.equal(line.source_principal, 'cluster.local/ns/bar/sa/sleep');
      assert.equal(line.destination_port, app.port);
      assert.equal(line.protocol, 'tcp');
      assert.doesNotMatch(JSON.stringify(setup.sink.lines()), /BEGIN|PRIVATE KEY/);
    } finally {
      setup.state.authorize = () => ALLOW;
    }
  });

  it('fails closed when the policy engine throws', async () => {
    setup.state.authorize = () => {
      throw new Error('boom');
    };
    try {
      const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
      const result = await roundTrip(socket, 'x');
      assert.equal(result.data.length, 0);
      assert.equal(app.connections, 0);
    } finally {
      setup.state.authorize = () => ALLOW;
    }
  });

  it('passes a half-close on: the client ends, and still gets the response', async () => {
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'], allowHalfOpen: true });
    await once(socket, 'secureConnect');
    const result = collect(socket);
    socket.write('abc');
    socket.end('defg');
    assert.equal((await result).data.toString(), 'got 7 bytes');
  });
});

describe('inbound teardown', () => {
  it('passes an app reset on to the client as a reset, after the bytes that came before it', async () => {
    const app = await new CountingApp((s) => {
      s.write('partial', () => setTimeout(() => s.resetAndDestroy(), 20));
    }).start();
    const setup = await startInbound('PERMISSIVE', app.port);
    const socket = net.connect(setup.port, '127.0.0.1');
    const result = collect(socket);
    socket.write('\x00hello');
    const { data, error } = await result;
    assert.equal(data.toString(), 'partial');
    assert.equal(error?.code, 'ECONNRESET');
  });

  it('tears the app side down when the client resets', async () => {
    let appSaw: string | undefined;
    const app = await new CountingApp((s) => {
      s.on('error', (e: NodeJS.ErrnoException) => (appSaw = e.code));
      s.on('close', () => (appSaw ??= 'close'));
    }).start();
    const setup = await startInbound('PERMISSIVE', app.port);
    const socket = net.connect(setup.port, '127.0.0.1');
    socket.write('\x00hello');
    await eventually(() => app.bytes === 6);
    socket.resetAndDestroy();
    await eventually(() => appSaw !== undefined);
    assert.equal(appSaw, 'ECONNRESET');
  });

  it('closes an idle TCP connection on both sides', async () => {
    const app = await new CountingApp().start();
    const setup = await startInbound('STRICT', app.port, { tcpIdleTimeoutMs: 150 });
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
    const result = collect(socket);
    await once(socket, 'secureConnect');
    socket.write('ping');
    const started = Date.now();
    assert.equal((await result).data.toString(), 'ping');
    assert.ok(Date.now() - started >= 140);
    await eventually(() => app.sockets.size === 0);
  });
});

describe('inbound shutdown', () => {
  it('drains: stops accepting, closes idle keep-alive connections, lets busy ones finish', async () => {
    const app = await new HttpApp((req, res) => setTimeout(() => res.end(req.url), req.url === '/slow' ? 300 : 0)).start();
    const setup = await startInbound('PERMISSIVE', app.port);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const idle = await new Promise<net.Socket>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: setup.port, path: '/fast', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(req.socket!));
      });
      req.on('error', reject);
    });
    const idleClosed = once(idle, 'close');
    const busy = new Promise<{ body: string; connection?: string }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: setup.port, path: '/slow', agent: false }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ body, connection: res.headers.connection }));
        })
        .on('error', reject);
    });
    await eventually(() => app.requests.length === 2);
    const started = Date.now();
    const closing = setup.proxy.close(5000);
    await idleClosed;
    assert.ok(Date.now() - started < 200, 'idle keep-alive connection closed at once');
    const refused = await collect(net.connect(setup.port, '127.0.0.1'));
    assert.equal(refused.error?.code, 'ECONNREFUSED');
    assert.deepEqual(await busy, { body: '/slow', connection: 'close' });
    await closing;
    assert.ok(Date.now() - started < 2000, 'drained before the grace period ran out');
    agent.destroy();
  });

  it('tears down what is still open when the grace period ends', async () => {
    const app = await new CountingApp().start();
    const setup = await startInbound('STRICT', app.port);
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
    const result = collect(socket);
    await once(socket, 'secureConnect');
    socket.write('still here');
    await once(socket, 'data');
    const started = Date.now();
    await setup.proxy.close(300);
    assert.ok(Date.now() - started >= 290);
    await result;
  });
});

describe('inbound large transfers', () => {
  it('carries 20 MB each way intact through mTLS (backpressure)', async () => {
    const size = 20 * 1024 * 1024;
    const fromApp = randomBytes(size);
    let appHash = '';
    let appBytes = 0;
    // The app sends 20 MB while it reads 20 MB: both directions are busy at once.
    const app = await new CountingApp((s) => {
      const h = createHash('sha256');
      s.on('data', (d: Buffer) => {
        appBytes += d.length;
        h.update(d);
      });
      s.on('end', () => (appHash = h.digest('hex')));
      s.end(fromApp);
    }).start();
    const setup = await startInbound('STRICT', app.port);
    const toApp = randomBytes(size);
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'], allowHalfOpen: true });
    const h = createHash('sha256');
    let received = 0;
    socket.on('data', (d: Buffer) => {
      received += d.length;
      h.update(d);
    });
    const closed = once(socket, 'close');
    socket.end(toApp);
    await closed;
    assert.equal(received, size);
    assert.equal(h.digest('hex'), createHash('sha256').update(fromApp).digest('hex'));
    await eventually(() => appHash !== '');
    assert.equal(appBytes, size);
    assert.equal(appHash, createHash('sha256').update(toApp).digest('hex'));
    await app.stop();
  });
});

describe('inbound certificate rotation', () => {
  it('keeps an open connection working and presents the new certificate to new handshakes', async () => {
    const app = await new CountingApp().start();
    const setup = await startInbound('STRICT', app.port);
    const first = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
    await once(first, 'secureConnect');
    assert.equal(first.getPeerX509Certificate()!.serialNumber, pki.server.cert.serialNumber.toUpperCase());
    first.write('one');
    assert.equal(String(await once(first, 'data')), 'one');

    setup.material.update(credentials(pki.server2, pki.ca, SERVER_ID));

    first.write('two');
    assert.equal(String(await once(first, 'data')), 'two');
    const second = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
    await once(second, 'secureConnect');
    assert.equal(second.getPeerX509Certificate()!.serialNumber, pki.server2.cert.serialNumber.toUpperCase());
    assert.equal((await roundTrip(second, 'three')).data.toString(), 'three');
    assert.equal((await roundTrip(first, 'four')).data.toString(), 'four');
    await app.stop();
  });

  it('refuses mTLS until the first certificate arrived', async () => {
    const app = await new CountingApp().start();
    const setup = await startInbound('STRICT', app.port, { withCredentials: false });
    const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
    socket.on('secureConnect', () => socket.write('x'));
    const result = await collect(socket);
    assert.equal(result.data.length, 0);
    setup.material.update(credentials(pki.server, pki.ca, SERVER_ID));
    const ok = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
    assert.equal((await roundTrip(ok, 'now')).data.toString(), 'now');
    await app.stop();
  });
});

describe('inbound HTTP/1.1 authorization', () => {
  let app: HttpApp;
  let setup: Setup;
  const denyPath = (r: AuthzRequest): AuthzDecision =>
    r.request?.protocol === 'http' && r.request.path.startsWith('/admin')
      ? { allow: false, policy: 'foo/deny-admin', reason: 'matched DENY policy foo/deny-admin' }
      : ALLOW;
  before(async () => {
    app = await new HttpApp().start();
    setup = await startInbound('PERMISSIVE', app.port);
    setup.state.authorize = denyPath;
  });
  after(() => app.stop());

  it('forwards an allowed request to the app with the caller in XFCC', async () => {
    const res = await mtlsRequest(setup.port, '/headers?x=1');
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body);
    assert.equal(body.url, '/headers?x=1');
    assert.equal(body.xfcc, `By=${SERVER_ID};URI=${CLIENT_ID}`);
    const request = setup.seen.at(-1)!;
    assert.equal(request.request?.protocol, 'http');
    if (request.request?.protocol !== 'http') return;
    assert.equal(request.request.method, 'GET');
    assert.equal(request.request.path, '/headers');
    assert.equal(request.request.host, 'httpbin.foo');
    assert.equal(request.source.principal, 'cluster.local/ns/bar/sa/sleep');
  });

  it('answers a denied request 403 "RBAC: access denied" and the app never sees it', async () => {
    const before = app.requests.length;
    const res = await mtlsRequest(setup.port, '/admin/users', { method: 'POST', body: 'x'.repeat(1000) });
    assert.equal(res.status, 403);
    assert.equal(res.body, 'RBAC: access denied');
    assert.equal(app.requests.length, before);
    const line = setup.sink.lines().find((l) => l.message === 'authorization denied' && l.path === '/admin/users');
    assert.ok(line);
    assert.equal(line.policy, 'foo/deny-admin');
    assert.equal(line.method, 'POST');
  });

  it('normalizes the path before authorizing and forwards the normalized path', async () => {
    for (const sneaky of ['/public/../admin', '/%61dmin', '/./admin/']) {
      const res = await mtlsRequest(setup.port, sneaky);
      assert.equal(res.status, 403, sneaky);
    }
    const res = await mtlsRequest(setup.port, '/a/./b/../c%7e?q=%2e%2e');
    assert.equal(JSON.parse(res.body).url, '/a/c~?q=%2e%2e');
  });

  it('strips a caller-supplied XFCC header', async () => {
    const res = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: setup.port, path: '/', agent: false, headers: { 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/kube-system/sa/admin' } });
      req.on('response', (r) => {
        let b = '';
        r.on('data', (d: Buffer) => (b += d.toString()));
        r.on('end', () => resolve(b));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(JSON.parse(res).xfcc, null);
  });

  it('decides each request on a kept-alive connection with the config of that moment', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let connections = 0;
    agent.createConnection = () => {
      connections++;
      return mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-http/1.1'] });
    };
    assert.equal((await mtlsRequest(setup.port, '/status/1', { agent })).status, 200);
    setup.state.authorize = () => ({ allow: false, policy: 'foo/allow-nothing', reason: 'no ALLOW policy matched' });
    const denied = await mtlsRequest(setup.port, '/status/1', { agent });
    setup.state.authorize = denyPath;
    assert.equal(denied.status, 403);
    assert.equal((await mtlsRequest(setup.port, '/status/2', { agent })).status, 200);
    assert.equal(connections, 1);
    agent.destroy();
  });

  it('handles plaintext HTTP in PERMISSIVE with no principal', async () => {
    const res = await plainRequest(setup.port, '/plain');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).xfcc, null);
    assert.equal(setup.seen.at(-1)!.source.principal, undefined);
    assert.equal((await plainRequest(setup.port, '/admin')).status, 403);
  });

  it('sniffs HTTP inside mTLS when the client sent no ALPN (STRICT terminates any TLS)', async () => {
    setup.state.mode = 'STRICT';
    try {
      const res = await mtlsRequest(setup.port, '/no-alpn', { alpn: [] });
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.body).url, '/no-alpn');
      assert.equal((await mtlsRequest(setup.port, '/admin', { alpn: [] })).status, 403);
    } finally {
      setup.state.mode = 'PERMISSIVE';
    }
  });

  it('answers 503 when the app is not listening', async () => {
    const dead = await new HttpApp().start();
    await dead.stop();
    const saved = setup.state.appPort;
    setup.state.appPort = dead.port;
    try {
      const res = await mtlsRequest(setup.port, '/');
      assert.equal(res.status, 503);
    } finally {
      setup.state.appPort = saved;
    }
  });

  it('retries an idempotent request once when a pooled app connection turns out to be dead', async () => {
    const perSocket = new WeakMap<object, number>();
    // Drops the second request on each connection, as an app that closed an idle connection would.
    const flaky = await new HttpApp((req, res) => {
      const n = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, n);
      if (n === 2) req.socket.destroy();
      else res.end(`ok ${req.method}`);
    }).start();
    const saved = setup.state.appPort;
    setup.state.appPort = flaky.port;
    try {
      assert.equal((await plainRequest(setup.port, '/one')).body, 'ok GET');
      assert.equal((await plainRequest(setup.port, '/two')).body, 'ok GET');
      assert.equal(flaky.requests.length, 3);
      // POST is not idempotent: the failure is reported, not retried.
      assert.equal((await plainRequest(setup.port, '/three', 'POST')).status, 503);
      assert.equal((await plainRequest(setup.port, '/four', 'POST')).body, 'ok POST');
    } finally {
      setup.state.appPort = saved;
    }
  });

  it('closes a client whose headers never finish (slow headers)', async () => {
    const slow = await startInbound('PERMISSIVE', app.port, { httpHeadersTimeoutMs: 200 });
    const socket = net.connect(slow.port, '127.0.0.1');
    const result = collect(socket);
    socket.write('GET / HTTP/1.1\r\nhost: httpbin.foo\r\n');
    const started = Date.now();
    assert.match((await result).data.toString(), /^HTTP\/1\.1 408/);
    assert.ok(Date.now() - started < 2000);
  });

  it('authorizes a WebSocket-style upgrade, then tunnels raw bytes', async () => {
    const upgradeApp = http.createServer();
    upgradeApp.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n');
      socket.pipe(socket);
    });
    await new Promise<void>((r) => upgradeApp.listen(0, '127.0.0.1', r));
    const saved = setup.state.appPort;
    setup.state.appPort = (upgradeApp.address() as net.AddressInfo).port;
    try {
      const socket = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-http/1.1'] });
      const got = collect(socket);
      socket.write('GET /ws HTTP/1.1\r\nhost: httpbin.foo\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n');
      await once(socket, 'data');
      socket.end('ping');
      const text = (await got).data.toString();
      assert.match(text, /ping$/);
      const denied = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-http/1.1'] });
      const deniedText = collect(denied);
      denied.write('GET /admin/ws HTTP/1.1\r\nhost: httpbin.foo\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n');
      assert.match((await deniedText).data.toString(), /^HTTP\/1\.1 403 Forbidden[\s\S]*RBAC: access denied$/);
    } finally {
      setup.state.appPort = saved;
      upgradeApp.closeAllConnections();
      upgradeApp.close();
    }
  });
});

describe('inbound HTTP/2', () => {
  let app: http2.Http2Server;
  let appPort: number;
  let setup: Setup;
  before(async () => {
    app = http2.createServer();
    app.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(JSON.stringify({ path: headers[':path'], bytes: Buffer.concat(chunks).length, xfcc: headers['x-forwarded-client-cert'] ?? null, underscored: headers['x_forwarded_client_cert'] ?? null }));
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    appPort = (app.address() as net.AddressInfo).port;
    setup = await startInbound('PERMISSIVE', appPort);
    setup.state.authorize = (r) =>
      r.request?.protocol === 'http' && r.request.path === '/pkg.Admin/Drop' ? { allow: false, policy: 'foo/deny-drop', reason: 'denied' } : ALLOW;
  });
  after(() => {
    app.close();
  });

  async function h2call(session: http2.ClientHttp2Session, path: string, body = 'payload', extra: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', ...extra });
      let status = 0;
      let text = '';
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = t));
      stream.on('data', (d: Buffer) => (text += d.toString()));
      stream.on('end', () => resolve({ status, body: text, trailers }));
      stream.on('error', reject);
      stream.end(body);
    });
  }

  it('authorizes each stream of a prior-knowledge h2c connection', async () => {
    const session = http2.connect(`http://127.0.0.1:${setup.port}`);
    // XFCC forged by the caller, spelt with underscores too (CGI/WSGI apps read that as the real one): neither reaches the app.
    const ok = await h2call(session, '/pkg.Svc/Get', 'payload', { 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/a/sa/admin', x_forwarded_client_cert: 'URI=spiffe://cluster.local/ns/a/sa/admin' });
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), { path: '/pkg.Svc/Get', bytes: 7, xfcc: null, underscored: null });
    assert.equal(ok.trailers['grpc-status'], '0');
    const denied = await h2call(session, '/pkg.Admin/Drop');
    assert.equal(denied.status, 403);
    assert.equal(denied.body, 'RBAC: access denied');
    session.close();
  });

  it('carries h2 inside mTLS (ALPN cinch-h2) with the caller in XFCC', async () => {
    const session = http2.connect(`http://127.0.0.1:${setup.port}`, {
      createConnection: () => mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-h2'] }),
    });
    const [a, b] = await Promise.all([h2call(session, '/pkg.Svc/A'), h2call(session, '/pkg.Svc/B', 'x'.repeat(100_000))]);
    assert.equal(JSON.parse(a.body).xfcc, `By=${SERVER_ID};URI=${CLIENT_ID}`);
    assert.equal(JSON.parse(b.body).bytes, 100_000);
    assert.equal((await h2call(session, '/pkg.Admin/Drop')).status, 403);
    session.close();
    const request = setup.seen.at(-1)!;
    assert.equal(request.source.principal, 'cluster.local/ns/bar/sa/sleep');
  });

  it('answers 503 on a stream when the h2c app is not listening', async () => {
    const dead = await new CountingApp().start();
    await dead.stop();
    const other = await startInbound('PERMISSIVE', dead.port);
    const session = http2.connect(`http://127.0.0.1:${other.port}`);
    const res = await h2call(session, '/pkg.Svc/Get');
    assert.equal(res.status, 503);
    session.close();
    const request = setup.seen.at(-1)!;
    assert.equal(request.source.principal, 'cluster.local/ns/bar/sa/sleep');
    assert.equal(request.request?.protocol === 'http' && request.request.method, 'POST');
  });
});

describe('inbound metrics', () => {
  it("counts requests and TCP connections with Istio's names and labels", async () => {
    const app = await new HttpApp().start();
    const setup = await startInbound('PERMISSIVE', app.port);
    setup.state.authorize = (r) => (r.request?.protocol === 'http' && r.request.path === '/deny' ? { allow: false, policy: 'foo/x', reason: 'x' } : ALLOW);
    assert.equal((await mtlsRequest(setup.port, '/ok')).status, 200);
    assert.equal((await mtlsRequest(setup.port, '/deny')).status, 403);
    assert.equal((await plainRequest(setup.port, '/ok')).status, 200);
    const echo = await new CountingApp().start();
    setup.state.appPort = echo.port;
    const tcp = mtlsConnect({ port: setup.port, ca: pki.ca, leaf: pki.client, alpn: ['cinch-tcp'] });
    assert.equal((await roundTrip(tcp, 'twelve bytes')).data.length, 12);
    let text = '';
    for (let i = 0; i < 100 && !text.includes('istio_tcp_connections_closed_total{'); i++) {
      await new Promise((r) => setTimeout(r, 10));
      text = await setup.registry.metrics();
    }
    const mtlsOk =
      'istio_requests_total{reporter="destination",source_workload="unknown",source_workload_namespace="bar",source_principal="spiffe://cluster.local/ns/bar/sa/sleep",destination_workload="httpbin",destination_workload_namespace="foo",destination_principal="spiffe://cluster.local/ns/foo/sa/httpbin",destination_service="unknown",request_protocol="http",connection_security_policy="mutual_tls",response_code="200"} 1';
    assert.ok(text.includes(mtlsOk), text);
    assert.match(text, /istio_requests_total\{[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/bar\/sa\/sleep"[^}]*response_code="403"\} 1/);
    assert.match(text, /istio_requests_total\{[^}]*source_principal="unknown"[^}]*destination_principal="unknown"[^}]*connection_security_policy="none",response_code="200"\} 1/);
    assert.match(text, /istio_request_duration_milliseconds_bucket\{le="0.5",reporter="destination"/);
    assert.match(text, /istio_tcp_connections_opened_total\{[^}]*request_protocol="tcp",connection_security_policy="mutual_tls"\} 1/);
    assert.match(text, /istio_tcp_connections_closed_total\{[^}]*connection_security_policy="mutual_tls"\} 1/);
    assert.match(text, /istio_tcp_received_bytes_total\{[^}]*\} 12/);
    assert.match(text, /istio_tcp_sent_bytes_total\{[^}]*\} 12/);
    assert.doesNotMatch(text, /\/ok|\/deny/);
    await app.stop();
    await echo.stop();
  });
});

// A server cert with a DNS name too, so curl and openssl can verify it by hostname.
describe('inbound with real clients (curl, openssl)', () => {
  let app: HttpApp;
  let setup: Setup;
  let dir: string;
  before(async () => {
    const fs = await import('node:fs/promises');
    const os = await import('node:os');
    const path = await import('node:path');
    const { issueLeaf } = await import('./certs.ts');
    app = await new HttpApp().start();
    setup = await startInbound('STRICT', app.port);
    const named = await issueLeaf(pki.ca, { uris: [SERVER_ID], dns: ['httpbin.foo'] });
    setup.material.update(credentials(named, pki.ca, SERVER_ID));
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cinch-proxy-'));
    await fs.writeFile(path.join(dir, 'client.pem'), pki.client.chainPem);
    await fs.writeFile(path.join(dir, 'client-key.pem'), pki.client.keyPem, { mode: 0o600 });
    await fs.writeFile(path.join(dir, 'ca.pem'), pki.ca.certPem);
  });
  after(async () => {
    await app.stop();
    const fs = await import('node:fs/promises');
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function run(cmd: string, args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const { spawn } = await import('node:child_process');
    return new Promise((resolve) => {
      const child = spawn(cmd, args, { cwd: dir });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(input);
    });
  }

  it('curl --cert gets through STRICT; curl without a certificate does not', async () => {
    const base = ['-sS', '--resolve', `httpbin.foo:${setup.port}:127.0.0.1`, '--cacert', 'ca.pem', `https://httpbin.foo:${setup.port}/curl`];
    const ok = await run('curl', ['--cert', 'client.pem', '--key', 'client-key.pem', ...base]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).xfcc, `By=${SERVER_ID};URI=${CLIENT_ID}`);
    const refused = await run('curl', base);
    assert.notEqual(refused.code, 0);
    const plain = await run('curl', ['-sS', `http://127.0.0.1:${setup.port}/`]);
    assert.notEqual(plain.code, 0);
  });

  it('openssl s_client with the mesh ALPN gets through PERMISSIVE', async () => {
    setup.state.mode = 'PERMISSIVE';
    const result = await run(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${setup.port}`, '-alpn', 'cinch-http/1.1', '-cert', 'client.pem', '-key', 'client-key.pem', '-CAfile', 'ca.pem', '-quiet', '-verify_return_error'],
      'GET /openssl HTTP/1.1\r\nhost: httpbin.foo\r\nconnection: close\r\n\r\n',
    );
    assert.match(result.stdout, /^HTTP\/1\.1 200 OK/);
    assert.match(result.stdout, /"url":"\/openssl"/);
  });
});

