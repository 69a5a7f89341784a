// Certificate rotation under load (issue 5): both proxies ask for 30-second certificates, and for two
// minutes a client app sends requests to the server app over keep-alive connections and over new
// connections. At least 3 rotations happen in each proxy, every request succeeds, and keep-alive
// connections opened before the first rotation are still serving at the end (rotation never drops
// an established connection).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Mesh, meshSkipReason, step, sumOf } from './mesh.ts';
import type { MeshPod } from './mesh.ts';

const skip = meshSkipReason();
if (skip) process.stderr.write(`mesh rotation e2e skipped: ${skip}\n`);

const TTL_SECONDS = 30;
const LOAD_MS = 120_000;
const MIN_ROTATIONS = 3;
const ROTATIONS = 'cinch_proxy_certificate_rotations_total';
const EXPIRY = 'cinch_proxy_certificate_expiry_timestamp_seconds';

describe('certificate rotation under continuous load', { skip, timeout: 6 * 60_000 }, () => {
  let mesh: Mesh;
  let server: MeshPod;
  let client: MeshPod;

  before(async () => {
    mesh = await Mesh.start({ name: 'rotation', controlPlaneArgs: ['--default-cert-ttl', String(TTL_SECONDS)] });
    const proxyEnv = { CINCH_CERT_TTL_SECONDS: String(TTL_SECONDS) };
    server = await mesh.addPod({ label: 'server', meshed: true, app: true, proxyEnv });
    client = await mesh.addPod({ label: 'client', meshed: true, proxyEnv });
  });

  after(async () => {
    if (mesh) await mesh.cleanup();
    if (mesh) assert.deepEqual(mesh.remaining(), []);
  });

  async function certState(pod: MeshPod): Promise<{ issued: number; failed: number; expiresInS: number; expiry: number }> {
    const m = await pod.metrics();
    const expiry = sumOf(m, EXPIRY);
    return { issued: sumOf(m, ROTATIONS, { result: 'success' }), failed: sumOf(m, ROTATIONS, { result: 'failure' }), expiresInS: expiry - Date.now() / 1000, expiry };
  }

  test(`${TTL_SECONDS}-second certificates, ${LOAD_MS / 1000} s of load: ≥ ${MIN_ROTATIONS} rotations per proxy and no failed request`, () =>
    mesh.explain(async () => {
      const start = { server: await certState(server), client: await certState(client) };
      for (const [who, s] of Object.entries(start)) {
        step(`${who} proxy: ${s.issued} certificate(s) so far, current one expires in ${s.expiresInS.toFixed(1)} s`);
        assert.ok(s.issued >= 1, `${who}: the first certificate is counted`);
        assert.ok(s.expiresInS > 0 && s.expiresInS <= TTL_SECONDS + 1, `${who}: the CA issued a ${TTL_SECONDS}-second certificate (expires in ${s.expiresInS.toFixed(1)} s)`);
      }

      step(`load: 2 keep-alive connections and 1 new connection per request, for ${LOAD_MS / 1000} s`);
      const watcher = setInterval(() => {
        void Promise.all([certState(server), certState(client)]).then(
          ([s, c]) => step(`  rotations so far: server ${s.issued - start.server.issued}, client ${c.issued - start.client.issued}`),
          () => undefined,
        );
      }, 30_000);
      let summary;
      try {
        summary = await client.load(
          server.url('/load'),
          { durationMs: LOAD_MS, expectBody: 'hello from server-app /load', keepAliveWorkers: 2, newConnectionWorkers: 1, keepAlivePauseMs: 10, newConnectionPauseMs: 100, reportMs: 10_000 },
          (p) => step(`  ${p.ok} ok, ${p.failed} failed, ${p.sockets} connections opened`),
        );
      } finally {
        clearInterval(watcher);
      }
      const end = { server: await certState(server), client: await certState(client) };
      const rotations = { server: end.server.issued - start.server.issued, client: end.client.issued - start.client.issued };
      const keepAlive = summary.sockets.filter((s) => s.kind === 'keepAlive');
      const longest = Math.max(...keepAlive.map((s) => (s.closed ?? Date.now()) - s.opened));
      step(
        `done: ${summary.ok} requests ok (${summary.byKind.keepAlive} keep-alive, ${summary.byKind.newConnection} new-connection), ${summary.failed} failed; ` +
          `rotations: server ${rotations.server}, client ${rotations.client}; CA request failures: server ${end.server.failed}, client ${end.client.failed}; ` +
          `keep-alive connections: ${keepAlive.length}, longest lived ${(longest / 1000).toFixed(0)} s`,
      );

      assert.deepEqual(summary.failures, [], `no request fails (${summary.failed} failed)`);
      assert.equal(summary.failed, 0);
      assert.ok(summary.byKind.keepAlive > 1000 && summary.byKind.newConnection > 300, `continuous load in both kinds: ${JSON.stringify(summary.byKind)}`);
      assert.ok(rotations.server >= MIN_ROTATIONS, `server proxy rotated ${rotations.server} times`);
      assert.ok(rotations.client >= MIN_ROTATIONS, `client proxy rotated ${rotations.client} times`);
      assert.ok(end.server.expiry > start.server.expiry + 60 && end.client.expiry > start.client.expiry + 60, 'the certificates in use are new ones');
      // The keep-alive connections of the start served to the end: rotations dropped none of them.
      assert.equal(keepAlive.length, 2, `each keep-alive worker kept its one connection through every rotation (${keepAlive.length} opened)`);
      assert.ok(longest >= LOAD_MS - 5000, `a keep-alive connection lived ${longest} ms`);
      const appSaw = server.appRequests().filter((r) => r.url === '/load').length;
      assert.equal(appSaw, summary.ok, 'the app answered each request exactly once');
    }));
});
