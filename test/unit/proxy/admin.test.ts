// The admin endpoints: readiness on 15021, metrics and rewritten app probes on 15020, against real
// app servers on 127.0.0.1; /quitquitquit, down to the real `cinch proxy` command exiting.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { AdminServer, healthStatus } from '../../../src/proxy/admin.ts';
import type { AppProbe, Readiness } from '../../../src/proxy/admin.ts';
import { ProxyMetrics } from '../../../src/proxy/metrics.ts';
import { CountingApp, eventually, HttpApp, stopAll } from './harness.ts';

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

function request(host: string, port: number, method: string, path: string): Promise<{ status: number; body: string; allow?: string }> {
  return new Promise((resolve, reject) => {
    http
      .request({ host, port, method, path, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, allow: res.headers.allow }));
      })
      .on('error', reject)
      .end();
  });
}

describe('POST /quitquitquit', () => {
  let admin: AdminServer;
  let port = 0;
  let quits = 0;

  before(async () => {
    admin = new AdminServer({ registry: new Registry(), readiness: () => ({ ready: true }), onQuit: () => quits++ });
    // Every interface, as in a pod: the kubelet reaches 15020 on the pod IP.
    ({ stats: port } = await admin.listen({ stats: 0, ready: 0, host: '0.0.0.0' }));
  });
  after(() => admin.close());

  it('takes only POST', async () => {
    const res = await request('127.0.0.1', port, 'GET', '/quitquitquit');
    assert.equal(res.status, 405);
    assert.equal(res.allow, 'POST');
    assert.equal(quits, 0);
  });

  it('refuses a caller outside the pod (not loopback): 15020 is reachable from the node', async (t) => {
    const external = Object.values(os.networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    if (!external) return t.skip('this machine has no non-loopback IPv4 address to call from');
    const res = await request(external, port, 'POST', '/quitquitquit');
    assert.equal(res.status, 403);
    assert.match(res.body, /only accepted from inside the pod/);
    assert.equal(quits, 0);
  });

  it('answers 200 to a loopback POST and then stops the proxy', async () => {
    const res = await request('127.0.0.1', port, 'POST', '/quitquitquit');
    assert.equal(res.status, 200);
    await eventually(() => quits === 1);
  });
});

describe('`cinch proxy` and /quitquitquit', () => {
  it('exits 0 when asked from inside its network namespace (a Job with a classic sidecar can complete)', async (t) => {
    // Root alone is not enough (a container without CAP_SYS_ADMIN, or without ip, nsenter or curl): probe it.
    const probe = spawnSync('unshare', ['--net', '--', 'sh', '-c', 'ip link set lo up && command -v nsenter >/dev/null && command -v curl >/dev/null'], { encoding: 'utf8' });
    if (probe.status !== 0) return t.skip(`needs a private network namespace with ip, nsenter and curl (unshare --net: ${probe.stderr.trim() || `exit ${probe.status}`})`);
    const env = {
      ...process.env,
      POD_NAME: 'job-x2x4q',
      POD_NAMESPACE: 'foo',
      SERVICE_ACCOUNT: 'batch',
      CINCH_CA_ADDRESS: '127.0.0.1:15012',
      CINCH_TOKEN_FILE: '/nonexistent/token',
      CINCH_CA_ROOT_FILE: '/nonexistent/root-cert.pem',
    };
    const cinch = path.resolve(import.meta.dirname, '../../../bin/cinch.js');
    // Its own network namespace, so the fixed ports 15001/15006/15020/15021 are free; loopback up for the caller.
    const child = spawn('unshare', ['--net', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, cinch, 'proxy', '--drain-seconds', '1'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const inPod = (args: string[]) => spawnSync('nsenter', [`--net=/proc/${child.pid}/ns/net`, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', ...args], { encoding: 'utf8' });
      await eventually(() => inPod(['http://127.0.0.1:15021/healthz/ready']).stdout === '503', 20_000);
      assert.equal(inPod(['-X', 'POST', 'http://127.0.0.1:15020/quitquitquit']).stdout, '200');
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(() => resolve('still running'), 10_000)))]);
      clearTimeout(timer);
      assert.equal(code, 0, stderr);
      assert.match(stderr, /exit requested on \/quitquitquit/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
