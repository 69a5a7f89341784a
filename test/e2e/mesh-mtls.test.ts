// Mutual TLS between meshed pods, and PeerAuthentication as the server's proxy enforces it, in
// network namespaces with the real control plane, `cinch init` rules and proxies (issue 5):
// app-to-app traffic is mTLS on the wire; STRICT refuses a plaintext client (and a TLS client without
// a mesh certificate) before a byte reaches the app; PERMISSIVE accepts both; DISABLE is plaintext.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { APP_PORT, APP_UID, Mesh, captureUnsupportedReason, meshSkipReason, step, sumOf, summariseWire } from './mesh.ts';
import type { HttpResult, MeshPod, WatchLine } from './mesh.ts';

const skip = meshSkipReason();
if (skip) process.stderr.write(`mesh mTLS e2e skipped: ${skip}\n`);
const noCapture = captureUnsupportedReason();
if (noCapture) process.stderr.write(`mesh mTLS e2e: the wire checks are skipped: ${noCapture}\n`);

const marker = (what: string) => `/${what}-${randomBytes(4).toString('hex')}`;

// A TLS client without a certificate (what a non-mesh TLS caller offers): says what came back.
const TLS_NO_CERT = `
import tls from 'node:tls';
const { host, port, path } = JSON.parse(process.argv[1]);
const s = tls.connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
let got = '';
s.setEncoding('utf8');
s.on('secureConnect', () => s.write('GET ' + path + ' HTTP/1.1\\r\\nhost: x\\r\\nconnection: close\\r\\n\\r\\n'));
s.on('data', (d) => (got += d));
s.on('close', () => console.log(JSON.stringify({ got })));
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code ?? e.message, got })); process.exit(0); });
s.setTimeout(5000, () => { console.log(JSON.stringify({ error: 'TIMEOUT', got })); process.exit(0); });
`;

function ok(results: HttpResult[], body: string): void {
  for (const r of results) {
    assert.equal(r.status, 200, `expected 200, got ${JSON.stringify(r)}`);
    assert.equal(r.body, body);
  }
}

describe('mTLS and PeerAuthentication between pods in network namespaces', { skip }, () => {
  let mesh: Mesh;
  let server: MeshPod;
  let client: MeshPod;
  let outsider: MeshPod;

  before(async () => {
    mesh = await Mesh.start({ name: 'mtls' });
    server = await mesh.addPod({ label: 'server', meshed: true, app: true });
    client = await mesh.addPod({ label: 'client', meshed: true });
    outsider = await mesh.addPod({ label: 'outsider', meshed: false });
  });

  after(async () => {
    if (mesh) await mesh.cleanup();
    if (mesh) assert.deepEqual(mesh.remaining(), []);
  });

  /** Waits (bounded) until the outsider's answers change as a policy takes effect; returns the first changed line. */
  async function untilOutsider(pred: (l: WatchLine) => boolean, since: number, what: string): Promise<WatchLine> {
    const watch = outsider.watch(server.url('/watch'), { intervalMs: 50, durationMs: 8000 });
    try {
      const line = await watch.waitForLine((l) => l.t0 >= since && pred(l), 7000);
      step(`${what}: in force ${line.t - since} ms after the API call returned`);
      return line;
    } finally {
      await watch.stop();
    }
  }

  test('app-to-app traffic is mutual TLS on the wire, and the server proxy counts it as mutual_tls from the client identity', () =>
    mesh.explain(async () => {
      const path = marker('mtls-marker');
      const capture = noCapture ? undefined : await server.capture(APP_PORT);
      step('client → server: 3 requests on one keep-alive connection, 2 on new connections');
      ok(await client.request(server.url(path), { count: 3, keepAlive: true }), `hello from server-app ${path}\n`);
      ok(await client.request(server.url(path), { count: 2 }), `hello from server-app ${path}\n`);
      assert.equal(server.appRequests().filter((r) => r.url === path).length, 5, 'the app saw each request once');
      if (capture) {
        const wire = summariseWire(await capture.stop(), APP_PORT);
        step(`wire: ${wire.segments} segments, ${wire.connections} connections, ${wire.clientHellos} ClientHello, ${wire.serverHellos} ServerHello, ${wire.tlsApplicationData} application-data records`);
        assert.ok(wire.connections >= 1, 'the requests crossed the LAN');
        assert.ok(wire.clientHellos >= 1 && wire.serverHellos >= 1, 'a TLS handshake on the wire');
        assert.ok(wire.tlsApplicationData >= 1, 'TLS records carry the data');
        assert.equal(wire.bytes.includes(path), false, 'the request path never appears in clear');
        assert.equal(wire.bytes.includes('HTTP/1.1'), false, 'no plaintext HTTP on the wire');
        assert.equal(wire.bytes.includes('hello from server-app'), false, 'the response never appears in clear');
      }
      const metrics = await server.metrics();
      const mtls = sumOf(metrics, 'istio_requests_total', { reporter: 'destination', connection_security_policy: 'mutual_tls', source_principal: client.spiffeId, response_code: '200' });
      step(`server proxy: istio_requests_total{connection_security_policy="mutual_tls", source_principal="${client.spiffeId}"} = ${mtls}`);
      assert.ok(mtls >= 5, `mutual_tls requests from the client identity counted by the server proxy: ${mtls}`);
      assert.equal(sumOf(metrics, 'istio_requests_total', { reporter: 'destination', connection_security_policy: 'none', source_principal: client.spiffeId }), 0);
    }));

  test('PERMISSIVE (the default, then applied explicitly) accepts both the meshed client and a plaintext outsider', () =>
    mesh.explain(async () => {
      for (const phase of ['default', 'explicit'] as const) {
        if (phase === 'explicit') {
          await mesh.applyPolicy('PeerAuthentication', server.namespace, 'permissive', { mtls: { mode: 'PERMISSIVE' } });
          await new Promise((r) => setTimeout(r, 1000));
        }
        const path = marker(`permissive-${phase}`);
        step(`PERMISSIVE (${phase}): client and outsider`);
        ok(await client.request(server.url(path)), `hello from server-app ${path}\n`);
        ok(await outsider.request(server.url(path)), `hello from server-app ${path}\n`);
        assert.equal(server.appRequests().filter((r) => r.url === path).length, 2);
      }
      const metrics = await server.metrics();
      assert.ok(sumOf(metrics, 'istio_requests_total', { reporter: 'destination', connection_security_policy: 'none', response_code: '200' }) >= 2, 'the plaintext requests are counted as connection_security_policy="none"');
      await mesh.deletePolicy('PeerAuthentication', server.namespace, 'permissive');
    }));

  test('STRICT refuses a plaintext client from another namespace, and TLS without a mesh certificate, before a byte reaches the app', () =>
    mesh.explain(async () => {
      await mesh.applyPolicy('PeerAuthentication', server.namespace, 'strict', { mtls: { mode: 'STRICT' } });
      await untilOutsider((l) => l.status === undefined, Date.now(), 'STRICT');
      try {
        const capture = noCapture ? undefined : await server.capture(APP_PORT);
        const plain = marker('strict-plaintext');
        const [refused] = await outsider.request(server.url(plain));
        step(`outsider, plaintext: ${JSON.stringify(refused)}`);
        assert.equal(refused.status, undefined, `a plaintext request must get no HTTP answer under STRICT: ${JSON.stringify(refused)}`);
        assert.ok(refused.error, 'the connection is closed');

        const tlsPath = marker('strict-tls-no-cert');
        const res = await outsider.netns.nodeEval(TLS_NO_CERT, [JSON.stringify({ host: server.ip, port: APP_PORT, path: tlsPath })], { uid: APP_UID });
        const tlsOut = JSON.parse(res.stdout.trim()) as { got: string; error?: string };
        step(`outsider, TLS without a client certificate: ${JSON.stringify(tlsOut)}`);
        assert.doesNotMatch(tlsOut.got, /HTTP\/1\.1 200/, 'no answer from the app');

        const meshed = marker('strict-meshed');
        ok(await client.request(server.url(meshed), { count: 2, keepAlive: true }), `hello from server-app ${meshed}\n`);
        const seen = server.appRequests().map((r) => r.url);
        assert.equal(seen.includes(plain), false, 'the plaintext request never reached the app');
        assert.equal(seen.includes(tlsPath), false, 'the certificate-less TLS request never reached the app');
        assert.equal(seen.filter((u) => u === meshed).length, 2);
        if (capture) {
          const wire = summariseWire(await capture.stop(), APP_PORT);
          // The plaintext request was on the wire (the outsider sent it); the answer never was.
          assert.equal(wire.bytes.includes('hello from server-app'), false, 'no plaintext answer on the wire');
        }
      } finally {
        await mesh.deletePolicy('PeerAuthentication', server.namespace, 'strict');
      }
      await untilOutsider((l) => l.status === 200, Date.now(), 'STRICT removed (back to PERMISSIVE)');
    }));

  test('DISABLE: a plaintext client gets through, in clear on the wire both ways', () =>
    mesh.explain(async () => {
      const configs = server.configVersions().length;
      await mesh.applyPolicy('PeerAuthentication', server.namespace, 'disable', { mtls: { mode: 'DISABLE' } });
      try {
        const ms = await server.waitForNewConfig(configs, 5000);
        step(`DISABLE pushed to the server proxy ${ms} ms after the API call returned`);
        const capture = noCapture ? undefined : await server.capture(APP_PORT);
        const path = marker('disable-outsider');
        ok(await outsider.request(server.url(path), { count: 2, keepAlive: true }), `hello from server-app ${path}\n`);
        assert.equal(server.appRequests().filter((r) => r.url === path).length, 2);
        if (capture) {
          const wire = summariseWire(await capture.stop(), APP_PORT);
          step(`wire: ${wire.segments} segments, ${wire.connections} connections, ${wire.clientHellos} ClientHello`);
          const text = wire.bytes.toString('latin1');
          assert.equal(text.split(`GET ${path} HTTP/1.1`).length - 1, 2, 'both request lines in clear');
          assert.equal(text.split(`hello from server-app ${path}`).length - 1, 2, 'both answers in clear');
          assert.equal(wire.clientHellos, 0, 'no TLS handshake');
        }
      } finally {
        await mesh.deletePolicy('PeerAuthentication', server.namespace, 'disable');
      }
    }));

  test(
    'DISABLE: the meshed client talks plaintext to the server (auto mTLS, as Istio infers from namespace-level PeerAuthentication)',
    () =>
      mesh.explain(async () => {
        await mesh.applyPolicy('PeerAuthentication', server.namespace, 'disable', { mtls: { mode: 'DISABLE' } });
        try {
          // Both proxies must learn it (the client stops originating TLS, the server stops expecting it).
          const since = Date.now();
          let settled: HttpResult | undefined;
          let last: HttpResult | undefined;
          const probe = marker('disable-settle');
          while (Date.now() - since < 8000) {
            [last] = await client.request(server.url(probe), { timeoutMs: 2000 });
            if (last.status === 200) {
              settled = last;
              break;
            }
            await new Promise((res) => setTimeout(res, 100));
          }
          assert.ok(settled, `the meshed client reaches the server within 8 s of DISABLE; last answer: ${JSON.stringify(last)}`);
          step(`DISABLE in force for the client after ${Date.now() - since} ms`);
          const capture = noCapture ? undefined : await server.capture(APP_PORT);
          const path = marker('disable-meshed');
          ok(await client.request(server.url(path), { count: 2, keepAlive: true }), `hello from server-app ${path}\n`);
          if (capture) {
            const wire = summariseWire(await capture.stop(), APP_PORT);
            step(`wire: ${wire.segments} segments, ${wire.connections} connections, ${wire.clientHellos} ClientHello`);
            assert.equal(wire.bytes.toString('latin1').split(`GET ${path} HTTP/1.1`).length - 1, 2, 'the request lines are in clear on the wire');
            assert.equal(wire.clientHellos, 0, 'no TLS handshake under DISABLE');
          }
        } finally {
          await mesh.deletePolicy('PeerAuthentication', server.namespace, 'disable');
        }
      }),
  );
});
