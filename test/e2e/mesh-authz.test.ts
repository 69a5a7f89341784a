// AuthorizationPolicy enforced by the server's proxy, end to end in network namespaces (issue 6):
// a DENY reaches the proxy and refuses the client with 403 `RBAC: access denied` within 1 s of the
// API call, and its deletion lets the client in again within 1 s; `spec: {}` denies everything; an
// ALLOW on the client's CA-issued identity lets the client in and not a plaintext outsider. Refused
// requests never reach the app.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Mesh, meshSkipReason, step, sumOf } from './mesh.ts';
import type { MeshPod, Watch } from './mesh.ts';

const skip = meshSkipReason();
if (skip) process.stderr.write(`mesh authorization e2e skipped: ${skip}\n`);

const DENIED_BODY = 'RBAC: access denied';
/** Issue 6: each proxy receives what applies to it within 1 s of a change. */
const PROPAGATION_MS = 1000;

describe('AuthorizationPolicy enforced by the proxy in network namespaces', { skip }, () => {
  let mesh: Mesh;
  let server: MeshPod;
  let client: MeshPod;
  let outsider: MeshPod;

  before(async () => {
    mesh = await Mesh.start({ name: 'authz' });
    server = await mesh.addPod({ label: 'server', meshed: true, app: true });
    client = await mesh.addPod({ label: 'client', meshed: true });
    outsider = await mesh.addPod({ label: 'outsider', meshed: false });
  });

  after(async () => {
    if (mesh) await mesh.cleanup();
    if (mesh) assert.deepEqual(mesh.remaining(), []);
  });

  /** Starts a watcher and waits for its first answer (200): the baseline before a change. */
  async function watching(from: MeshPod, path: string): Promise<Watch> {
    const watch = from.watch(server.url(path), { intervalMs: 50, durationMs: 30_000 });
    const first = await watch.waitForLine(() => true, 10_000);
    assert.equal(first.status, 200, `${from.label} ${path} before the change: ${JSON.stringify(first)}`);
    return watch;
  }

  /** Time from `since` until the watcher's first answer, started after `since`, that has `status`. */
  async function until(watch: Watch, status: number, since: number, what: string): Promise<number> {
    const line = await watch.waitForLine((l) => l.t0 >= since && l.status === status, 5000);
    const ms = line.t - since;
    step(`${what}: ${status} ${ms} ms after the API call returned`);
    if (status === 403) assert.equal(line.body, DENIED_BODY);
    return ms;
  }

  test('DENY → 403 "RBAC: access denied" within 1 s; other paths still allowed; deleted → allowed again within 1 s', () =>
    mesh.explain(async () => {
      const watch = await watching(client, '/private/data');
      let deniedMs: number;
      let allowedMs: number;
      try {
        await mesh.applyPolicy('AuthorizationPolicy', server.namespace, 'deny-private', {
          action: 'DENY',
          rules: [{ from: [{ source: { principals: [client.principal] } }], to: [{ operation: { methods: ['GET'], paths: ['/private/*'] } }] }],
        });
        const applied = Date.now();
        deniedMs = await until(watch, 403, applied, 'DENY applied');

        const [pub] = await client.request(server.url('/public'));
        assert.equal(pub.status, 200, `a path the DENY does not name: ${JSON.stringify(pub)}`);
        const [outsiderPrivate] = await outsider.request(server.url('/private/data'));
        assert.equal(outsiderPrivate.status, 200, `the DENY names the client's principal only: ${JSON.stringify(outsiderPrivate)}`);

        await mesh.deletePolicy('AuthorizationPolicy', server.namespace, 'deny-private');
        const deleted = Date.now();
        allowedMs = await until(watch, 200, deleted, 'DENY deleted');
      } finally {
        await watch.stop();
      }
      // Every 403 was decided by the proxy: the app saw exactly the client's requests that got 200.
      const lines = watch.lines();
      const answered200 = lines.filter((l) => l.status === 200).length;
      const denied = lines.filter((l) => l.status === 403).length;
      const failed = lines.filter((l) => l.status !== 200 && l.status !== 403);
      step(`watcher: ${lines.length} requests, ${answered200} × 200, ${denied} × 403, ${failed.length} other`);
      assert.deepEqual(failed, [], 'nothing but 200 and 403');
      assert.ok(denied >= 1);
      const appSaw = server.appRequests().filter((r) => r.url === '/private/data').length;
      assert.equal(appSaw, answered200 + 1, 'the app saw each allowed /private/data request (and the outsider\'s), none of the denied');
      assert.ok(deniedMs <= PROPAGATION_MS, `DENY enforced ${deniedMs} ms after the change (limit ${PROPAGATION_MS})`);
      assert.ok(allowedMs <= PROPAGATION_MS, `deletion enforced ${allowedMs} ms after the change (limit ${PROPAGATION_MS})`);

      const metrics = await server.metrics();
      const counted = sumOf(metrics, 'istio_requests_total', { reporter: 'destination', response_code: '403', source_principal: client.spiffeId });
      assert.ok(counted >= denied, `istio_requests_total counts the 403s (${counted} of ${denied})`);
      const logged = server.proxy!.stderr + server.proxy!.stdout;
      assert.match(logged, new RegExp(`${server.namespace}/deny-private|"${server.namespace}".*"deny-private"|"deny-private".*"${server.namespace}"`), 'the DENY decision is logged with the policy namespace/name');
    }));

  test('spec: {} in the namespace denies everything, meshed or not; deleted → allowed again', () =>
    mesh.explain(async () => {
      const watch = await watching(client, '/anything');
      try {
        await mesh.applyPolicy('AuthorizationPolicy', server.namespace, 'allow-nothing', {});
        await until(watch, 403, Date.now(), 'spec: {} applied');
        const path = `/nothing-${randomBytes(3).toString('hex')}`;
        const [fromClient] = await client.request(server.url(path));
        const [fromOutsider] = await outsider.request(server.url(path));
        assert.deepEqual([fromClient.status, fromClient.body], [403, DENIED_BODY]);
        assert.deepEqual([fromOutsider.status, fromOutsider.body], [403, DENIED_BODY]);
        assert.equal(server.appRequests().some((r) => r.url === path), false, 'no denied request reached the app');
        await mesh.deletePolicy('AuthorizationPolicy', server.namespace, 'allow-nothing');
        await until(watch, 200, Date.now(), 'spec: {} deleted');
      } finally {
        await watch.stop();
      }
    }));

  test('ALLOW with the client\'s CA-issued principal lets the client in, not the plaintext outsider', () =>
    mesh.explain(async () => {
      const watch = await watching(outsider, '/allow-watch');
      try {
        step(`ALLOW principals: [${client.principal}]`);
        await mesh.applyPolicy('AuthorizationPolicy', server.namespace, 'allow-client', {
          action: 'ALLOW',
          rules: [{ from: [{ source: { principals: [client.principal] } }] }],
        });
        await until(watch, 403, Date.now(), 'ALLOW applied (outsider)');
      } finally {
        await watch.stop();
      }
      const path = `/allow-${randomBytes(3).toString('hex')}`;
      const fromClient = await client.request(server.url(path), { count: 2, keepAlive: true });
      for (const r of fromClient) assert.equal(r.status, 200, JSON.stringify(r));
      const [fromOutsider] = await outsider.request(server.url(path));
      assert.deepEqual([fromOutsider.status, fromOutsider.body], [403, DENIED_BODY]);
      assert.equal(server.appRequests().filter((r) => r.url === path).length, 2, 'only the client\'s requests reached the app');

      // A principal the CA never issued to the client: the client is denied too.
      await mesh.applyPolicy('AuthorizationPolicy', server.namespace, 'allow-someone-else', {
        action: 'ALLOW',
        rules: [{ from: [{ source: { principals: [`${mesh.trustDomain}/ns/${client.namespace}/sa/someone-else`] } }] }],
      });
      await mesh.deletePolicy('AuthorizationPolicy', server.namespace, 'allow-client');
      const clientWatch = client.watch(server.url('/allow-check'), { intervalMs: 50, durationMs: 5000, stopStatus: 403 });
      const line = await clientWatch.waitForLine((l) => l.status === 403, 5000);
      await clientWatch.stop();
      assert.equal(line.body, DENIED_BODY);
      await mesh.deletePolicy('AuthorizationPolicy', server.namespace, 'allow-someone-else');
    }));
});
