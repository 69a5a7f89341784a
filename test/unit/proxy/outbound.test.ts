// The outbound proxy, alone and in front of a real inbound proxy: app → outbound (15001) → mTLS →
// inbound (15006) → app, all on 127.0.0.1 with real certificates.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { InboundProxy } from '../../../src/proxy/inbound.ts';
import { ProxyMetrics } from '../../../src/proxy/metrics.ts';
import { OutboundProxy } from '../../../src/proxy/outbound.ts';
import { MutableTlsMaterial } from '../../../src/proxy/types.ts';
import type { AuthzRequest, OutboundDestination } from '../../../src/proxy/types.ts';
import { CLIENT_ID, CountingApp, HttpApp, SERVER_ID, TD, collect, credentials, eventually, logSink, once, stopAll, testPki } from './harness.ts';
import type { LogSink, Pki } from './harness.ts';

let pki: Pki;

interface Mesh {
  inbound: InboundProxy;
  inboundPort: number;
  outbound: OutboundProxy;
  outboundPort: number;
  /** Where the inbound side forwards (the server app). */
  server: { appPort: number };
  /** What the outbound side thinks of the original destination. */
  client: { dst: { address: string; port: number }; destination: OutboundDestination };
  seen: AuthzRequest[];
  outboundLog: LogSink;
  registry: Registry;
  clientMaterial: MutableTlsMaterial;
}

const meshes: Mesh[] = [];

async function startMesh(serverAppPort: number, options: { serverCredentials?: ReturnType<typeof credentials>; clientCredentials?: boolean } = {}): Promise<Mesh> {
  const server = { appPort: serverAppPort };
  const seen: AuthzRequest[] = [];
  const inbound = new InboundProxy({
    tls: new MutableTlsMaterial(options.serverCredentials ?? credentials(pki.server, pki.ca, SERVER_ID)),
    config: () => ({
      trustDomain: TD,
      workload: { name: 'httpbin', namespace: 'foo', labels: { app: 'httpbin' } },
      modeForPort: () => 'STRICT',
      authorize: (r) => {
        seen.push(r);
        return { allow: true, policy: null, reason: 'no policy' };
      },
    }),
    originalDestination: () => ({ address: '127.0.0.1', port: server.appPort }),
    logger: logSink().logger,
  });
  const inboundPort = (await inbound.listen(0, '127.0.0.1')).port;
  const client: Mesh['client'] = {
    dst: { address: '127.0.0.1', port: inboundPort },
    destination: { meshed: true, allowedSpiffeIds: [SERVER_ID], workload: { name: 'httpbin', namespace: 'foo' }, service: 'httpbin.foo.svc.cluster.local' },
  };
  const outboundLog = logSink();
  const registry = new Registry();
  const clientMaterial = new MutableTlsMaterial(options.clientCredentials === false ? undefined : credentials(pki.client, pki.ca, CLIENT_ID));
  const outbound = new OutboundProxy({
    tls: clientMaterial,
    config: () => ({ destinationFor: () => client.destination }),
    originalDestination: () => client.dst,
    logger: outboundLog.logger,
    metrics: new ProxyMetrics(registry),
    workload: { name: 'sleep', namespace: 'bar' },
    detectionTimeoutMs: 300,
  });
  const outboundPort = (await outbound.listen(0, '127.0.0.1')).port;
  const mesh = { inbound, inboundPort, outbound, outboundPort, server, client, seen, outboundLog, registry, clientMaterial };
  meshes.push(mesh);
  return mesh;
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, headers: { host: 'httpbin.foo' } });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
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
  await Promise.all(meshes.flatMap((m) => [m.inbound.close(), m.outbound.close()]));
  await stopAll();
});

describe('outbound to a meshed destination', () => {
  it('carries plaintext HTTP inside mTLS, announced as cinch-http/1.1', async () => {
    const app = await new HttpApp().start();
    const mesh = await startMesh(app.port);
    const res = await get(mesh.outboundPort, '/headers');
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).xfcc, `By=${SERVER_ID};URI=${CLIENT_ID}`);
    const request = mesh.seen.at(-1)!;
    assert.equal(request.source.principal, 'cluster.local/ns/bar/sa/sleep');
    assert.equal(request.request?.protocol, 'http');
  });

  it('carries h2c inside mTLS, announced as cinch-h2', async () => {
    const app = http2.createServer();
    app.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200 });
      stream.end(`${String(headers[':path'])} ${String(headers['x-forwarded-client-cert'])}`);
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const mesh = await startMesh((app.address() as net.AddressInfo).port);
    const session = http2.connect(`http://127.0.0.1:${mesh.outboundPort}`);
    const body = await new Promise<string>((resolve, reject) => {
      const stream = session.request({ ':path': '/grpc.Echo/Say' });
      let text = '';
      stream.on('data', (d: Buffer) => (text += d.toString()));
      stream.on('end', () => resolve(text));
      stream.on('error', reject);
      stream.end();
    });
    assert.equal(body, `/grpc.Echo/Say By=${SERVER_ID};URI=${CLIENT_ID}`);
    assert.equal(mesh.seen.at(-1)!.request?.protocol, 'http');
    session.close();
    app.close();
  });

  it('takes a destination declared TCP without waiting for the app to speak (server-first)', async () => {
    const greeter = await new CountingApp((s) => {
      s.write('220 ready\r\n');
      s.on('data', () => s.end('221 bye\r\n'));
    }).start();
    const mesh = await startMesh(greeter.port);
    mesh.client.destination = { meshed: true, allowedSpiffeIds: [SERVER_ID], protocol: 'tcp' };
    const started = performance.now();
    const socket = net.connect(mesh.outboundPort, '127.0.0.1');
    const first = await once<Buffer>(socket, 'data');
    const waited = performance.now() - started;
    assert.equal(first.toString(), '220 ready\r\n');
    assert.ok(waited < 250, `greeting took ${waited} ms`);
    const rest = collect(socket);
    socket.write('QUIT\r\n');
    assert.equal((await rest).data.toString(), '221 bye\r\n');
    assert.equal(mesh.seen.at(-1)!.request, undefined);
  });

  it('moves 20 MB each way through both proxies intact', async () => {
    const size = 20 * 1024 * 1024;
    const app = await new CountingApp().start(); // echo
    const mesh = await startMesh(app.port);
    const payload = randomBytes(size);
    const socket = net.connect({ port: mesh.outboundPort, host: '127.0.0.1', allowHalfOpen: true });
    const hash = createHash('sha256');
    let received = 0;
    socket.on('data', (d: Buffer) => {
      received += d.length;
      hash.update(d);
    });
    const closed = once(socket, 'close');
    socket.end(payload);
    await closed;
    assert.equal(received, size);
    assert.equal(hash.digest('hex'), createHash('sha256').update(payload).digest('hex'));
  });

  it('counts the connection with source and destination identities', async () => {
    const app = await new CountingApp().start();
    const mesh = await startMesh(app.port);
    const socket = net.connect(mesh.outboundPort, '127.0.0.1');
    const result = collect(socket);
    socket.end('hello');
    assert.equal((await result).data.toString(), 'hello');
    let text = '';
    for (let i = 0; i < 100 && !text.includes('istio_tcp_connections_closed_total{'); i++) {
      await new Promise((r) => setTimeout(r, 10));
      text = await mesh.registry.metrics();
    }
    const labels =
      'reporter="source",source_workload="sleep",source_workload_namespace="bar",source_principal="spiffe://cluster.local/ns/bar/sa/sleep",destination_workload="httpbin",destination_workload_namespace="foo",destination_principal="spiffe://cluster.local/ns/foo/sa/httpbin",destination_service="httpbin.foo.svc.cluster.local",request_protocol="tcp",connection_security_policy="mutual_tls"';
    assert.ok(text.includes(`istio_tcp_connections_opened_total{${labels}} 1`), text);
    assert.ok(text.includes(`istio_tcp_connections_closed_total{${labels}} 1`), text);
    assert.ok(text.includes(`istio_tcp_received_bytes_total{${labels}} 5`), text);
    assert.ok(text.includes(`istio_tcp_sent_bytes_total{${labels}} 5`), text);
  });
});

describe('outbound ALPN', () => {
  it("names the app's protocol in ALPN: cinch-http/1.1, cinch-h2 or cinch-tcp", async () => {
    const tls = await import('node:tls');
    const seen: (string | false | null)[] = [];
    // A stand-in peer proxy that records what the client offered.
    const peer = tls.createServer({
      key: pki.server.keyPem,
      cert: pki.server.chainPem,
      ca: pki.ca.certPem,
      requestCert: true,
      ALPNProtocols: ['cinch-h2', 'cinch-http/1.1', 'cinch-tcp'],
    });
    peer.on('secureConnection', (s) => {
      seen.push(s.alpnProtocol);
      s.on('error', () => {});
      s.end();
    });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const app = await new CountingApp().start();
    const mesh = await startMesh(app.port);
    mesh.client.dst = { address: '127.0.0.1', port: (peer.address() as net.AddressInfo).port };
    for (const first of ['GET / HTTP/1.1\r\nhost: x\r\n\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', '\x00\x01binary']) {
      const socket = net.connect(mesh.outboundPort, '127.0.0.1');
      const done = collect(socket);
      socket.write(first);
      await done;
    }
    assert.deepEqual(seen, ['cinch-http/1.1', 'cinch-h2', 'cinch-tcp']);
    peer.close();
  });
});

describe('outbound fails closed', () => {
  async function refused(mesh: Mesh, app: CountingApp, reason: RegExp): Promise<void> {
    const socket = net.connect(mesh.outboundPort, '127.0.0.1');
    const result = collect(socket);
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    const { data, error } = await result;
    assert.equal(data.length, 0);
    assert.equal(error?.code, 'ECONNRESET');
    assert.equal(app.bytes, 0);
    assert.equal(app.connections, 0);
    await eventually(() => mesh.outboundLog.lines().some((l) => l.message === 'outbound mTLS refused: closing the app connection' && reason.test(String(l.reason))));
  }

  it('refuses a server whose SPIFFE ID is not one the destination may have', async () => {
    const app = await new CountingApp().start();
    const mesh = await startMesh(app.port);
    mesh.client.destination = { meshed: true, allowedSpiffeIds: ['spiffe://cluster.local/ns/foo/sa/other'] };
    await refused(mesh, app, /server identity spiffe:\/\/cluster\.local\/ns\/foo\/sa\/httpbin is not one of spiffe:\/\/cluster\.local\/ns\/foo\/sa\/other/);
  });

  it('refuses a server whose certificate does not chain to the bundle', async () => {
    const app = await new CountingApp().start();
    const { issueLeaf } = await import('./certs.ts');
    const impostor = await issueLeaf(pki.otherCa, SERVER_ID);
    const mesh = await startMesh(app.port, { serverCredentials: credentials(impostor, pki.otherCa, SERVER_ID) });
    await refused(mesh, app, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|self.signed|unable to verify/i);
  });

  it('refuses to originate before the first certificate arrived', async () => {
    const app = await new CountingApp().start();
    const mesh = await startMesh(app.port, { clientCredentials: false });
    await refused(mesh, app, /no workload certificate yet/);
  });
});

describe('outbound passthrough', () => {
  it('passes bytes to a destination outside the mesh as plain TCP', async () => {
    const app = await new CountingApp().start();
    const mesh = await startMesh(app.port);
    mesh.client.destination = { meshed: false };
    mesh.client.dst = { address: '127.0.0.1', port: app.port };
    const socket = net.connect(mesh.outboundPort, '127.0.0.1');
    const result = collect(socket);
    socket.end('plain bytes');
    assert.equal((await result).data.toString(), 'plain bytes');
    assert.equal(app.bytes, 11);
    assert.equal(mesh.seen.length, 0);
  });

  it('resets the app connection when the destination refuses', async () => {
    const dead = await new CountingApp().start();
    await dead.stop();
    const mesh = await startMesh(dead.port);
    mesh.client.destination = { meshed: false };
    mesh.client.dst = { address: '127.0.0.1', port: dead.port };
    const socket = net.connect(mesh.outboundPort, '127.0.0.1');
    const result = collect(socket);
    socket.write('x');
    assert.equal((await result).error?.code, 'ECONNRESET');
  });

  it('closes a connection that has no original destination (never loops back to itself)', async () => {
    const outbound = new OutboundProxy({
      tls: new MutableTlsMaterial(),
      config: () => ({ destinationFor: () => ({ meshed: false }) }),
      originalDestination: () => {
        throw new Error('no NAT entry');
      },
      logger: logSink().logger,
    });
    const { port } = await outbound.listen(0, '127.0.0.1');
    const result = await collect(net.connect(port, '127.0.0.1'));
    assert.equal(result.data.length, 0);
    await outbound.close();
  });
});
