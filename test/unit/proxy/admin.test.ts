// The admin endpoints: readiness on 15021, metrics and rewritten app probes on 15020, against real
// app servers on 127.0.0.1.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { AdminServer, healthStatus } from '../../../src/proxy/admin.ts';
import type { AppProbe, Readiness } from '../../../src/proxy/admin.ts';
import { ProxyMetrics } from '../../../src/proxy/metrics.ts';
import { CountingApp, HttpApp, stopAll } from './harness.ts';

function get(port: number, path: string): Promise<{ status: number; body: string; type?: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: res.headers['content-type'] }));
      })
      .on('error', reject);
  });
}

/** A gRPC health server answering Check with `status` (1 SERVING, 2 NOT_SERVING), framed by hand. */
async function grpcHealthServer(status: () => number): Promise<{ port: number; services: string[]; close: () => void }> {
  const services: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      // HealthCheckRequest: field 1 (service) as 0x0a <len> <bytes>, or empty.
      services.push(body.length > 7 ? body.subarray(7, 7 + body[6]).toString() : '');
      if (headers[':path'] !== '/grpc.health.v1.Health/Check') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, status()]));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, services, close: () => server.close() };
}

describe('admin server', () => {
  let admin: AdminServer;
  let ports: { stats: number; ready: number };
  let readiness: Readiness = { ready: false, reason: 'no certificate yet' };
  let healthy = true;
  let grpcStatus = 1;
  let grpc: Awaited<ReturnType<typeof grpcHealthServer>>;
  let app: HttpApp;
  let tcpApp: CountingApp;
  let deadPort: number;
  const registry = new Registry();

  before(async () => {
    app = await new HttpApp((req, res) => {
      if (req.url === '/redirect') {
        res.writeHead(302, { location: '/elsewhere' });
        return void res.end();
      }
      res.writeHead(healthy ? 200 : 500, { 'x-seen-header': String(req.headers['x-probe'] ?? '') });
      res.end(req.headers['x-probe'] === 'yes' ? 'ok' : 'no header');
    }).start();
    tcpApp = await new CountingApp().start();
    const dead = await new CountingApp().start();
    deadPort = dead.port;
    await dead.stop();
    grpc = await grpcHealthServer(() => grpcStatus);
    const metrics = new ProxyMetrics(registry);
    metrics.httpSeries({ reporter: 'destination', mtls: true }).record(200, false, 3);
    const probes: Record<string, AppProbe> = {
      '/app-health/web/livez': { httpGet: { port: app.port, path: '/healthz', scheme: 'HTTP', httpHeaders: [{ name: 'X-Probe', value: 'yes' }] } },
      '/app-health/web/readyz': { httpGet: { port: String(app.port), path: '/redirect' } },
      '/app-health/web/startupz': { httpGet: { port: deadPort, path: '/' } },
      '/app-health/db/livez': { tcpSocket: { port: tcpApp.port } },
      '/app-health/db/readyz': { tcpSocket: { port: deadPort } },
      '/app-health/grpc/livez': { grpc: { port: grpc.port } },
      '/app-health/grpc/readyz': { grpc: { port: grpc.port, service: 'shop.Cart' } },
      '/app-health/named/livez': { httpGet: { port: 'http', path: '/' } },
    };
    admin = new AdminServer({ registry, readiness: () => readiness, probes });
    ports = await admin.listen({ stats: 0, ready: 0, host: '127.0.0.1' });
  });

  after(async () => {
    await admin.close();
    grpc.close();
    await stopAll();
  });

  it('answers /healthz/ready 503 with the reason, then 200 once ready', async () => {
    const before = await get(ports.ready, '/healthz/ready');
    assert.equal(before.status, 503);
    assert.match(before.body, /no certificate yet/);
    readiness = { ready: true };
    assert.equal((await get(ports.ready, '/healthz/ready')).status, 200);
    assert.equal((await get(ports.ready, '/other')).status, 404);
  });

  it('serves the proxy registry at /stats/prometheus', async () => {
    const res = await get(ports.stats, '/stats/prometheus');
    assert.equal(res.status, 200);
    assert.match(res.type ?? '', /^text\/plain/);
    assert.match(res.body, /istio_requests_total\{reporter="destination"[^}]*response_code="200"\} 1/);
  });

  it('runs an HTTP probe against the app: 200 while healthy, 503 when not', async () => {
    healthy = true;
    assert.equal((await get(ports.stats, '/app-health/web/livez')).status, 200);
    assert.equal(app.requests.at(-1)!.headers['x-probe'], 'yes');
    healthy = false;
    const down = await get(ports.stats, '/app-health/web/livez');
    assert.equal(down.status, 503);
    assert.match(down.body, /HTTP 500/);
    healthy = true;
  });

  it('takes a 3xx answer as success, as the kubelet does', async () => {
    assert.equal((await get(ports.stats, '/app-health/web/readyz')).status, 200);
  });

  it('fails an HTTP probe when the app is not listening', async () => {
    const res = await get(ports.stats, '/app-health/web/startupz');
    assert.equal(res.status, 503);
    assert.match(res.body, /ECONNREFUSED/);
  });

  it('runs TCP probes by connecting', async () => {
    assert.equal((await get(ports.stats, '/app-health/db/livez')).status, 200);
    assert.equal((await get(ports.stats, '/app-health/db/readyz')).status, 503);
  });

  it('runs gRPC probes with grpc.health.v1 Check over h2c', async () => {
    grpcStatus = 1;
    assert.equal((await get(ports.stats, '/app-health/grpc/livez')).status, 200);
    assert.equal((await get(ports.stats, '/app-health/grpc/readyz')).status, 200);
    assert.deepEqual(grpc.services.slice(-2), ['', 'shop.Cart']);
    grpcStatus = 2;
    const res = await get(ports.stats, '/app-health/grpc/livez');
    assert.equal(res.status, 503);
    assert.match(res.body, /status 2/);
  });

  it('answers 404 for unknown probes and for paths outside the probe pattern', async () => {
    assert.equal((await get(ports.stats, '/app-health/nope/livez')).status, 404);
    assert.equal((await get(ports.stats, '/app-health/web/prestopz')).status, 404);
    assert.equal((await get(ports.stats, '/app-health/web/livez/extra')).status, 404);
    assert.equal((await get(ports.stats, '/app-health/../web/livez')).status, 404);
    assert.equal((await get(ports.stats, '/')).status, 404);
  });

  it('refuses a named port it cannot resolve', async () => {
    const res = await get(ports.stats, '/app-health/named/livez');
    assert.equal(res.status, 503);
    assert.match(res.body, /not a port number/);
  });
});

describe('gRPC health response decoding', () => {
  it('reads the status field, with UNKNOWN (0) when it is absent', () => {
    assert.equal(healthStatus(Buffer.from([0, 0, 0, 0, 2, 0x08, 1])), 1);
    assert.equal(healthStatus(Buffer.from([0, 0, 0, 0, 0])), 0);
    assert.equal(healthStatus(Buffer.from([1, 0, 0, 0, 0])), undefined);
    assert.equal(healthStatus(Buffer.from([0, 0, 0, 0, 9, 0x08])), undefined);
  });
});
