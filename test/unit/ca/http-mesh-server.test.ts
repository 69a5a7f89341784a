// The mesh server on 15012 (src/controlplane/mesh-server.ts) over real TLS on loopback: optional
// client certificates and the peer's SPIFFE ID, credential swaps, JSON errors, and graceful drain
// (keep-alive connections, in-flight requests, streams that end on the closing signal).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import https from 'node:https';
import { after, before, test } from 'node:test';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import express from 'express';
import { createRootCa } from '../../../src/ca/create.ts';
import { FastLeafSigner } from '../../../src/ca/fast-signer.ts';
import { loadCaMaterial } from '../../../src/ca/material.ts';
import type { CaMaterial } from '../../../src/ca/material.ts';
import { closingSignal, createMeshServer, peerSpiffeId, type MeshServer } from '../../../src/controlplane/mesh-server.ts';
import { withRawRoutes } from '../../../src/http/raw-routes.ts';
import { issueServingCertificate, type ServingCertificate } from '../../../src/controlplane/serving-cert.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { createRegistry } from '../../../src/telemetry/metrics.ts';

let ca: CaMaterial;
let otherCa: CaMaterial;
let serving: ServingCertificate;

const ready = (async () => {
  ca = loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local' })).files);
  otherCa = loadCaMaterial((await createRootCa({ trustDomain: 'other.example' })).files);
  serving = await issueServingCertificate(ca, ['localhost', '127.0.0.1']);
})();

const quietLogger = () => createLogger({ stream: new PassThrough(), level: 'error' });

async function start(routers: express.Router[]): Promise<{ mesh: MeshServer; port: number }> {
  const mesh = createMeshServer({
    key: serving.keyPem,
    cert: serving.certChainPem,
    trustBundle: ca.trustBundle,
    routers,
    logger: quietLogger(),
    registry: createRegistry(),
  });
  return { mesh, port: await mesh.listen(0, '127.0.0.1') };
}

function workloadCert(material: CaMaterial, spiffeId: string): { key: string; cert: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signed = new FastLeafSigner(material).sign({ csr: { spki: publicKey.export({ format: 'der', type: 'spki' }), keyType: 'ec-p256' }, spiffeId });
  return { key: String(privateKey.export({ format: 'pem', type: 'pkcs8' })), cert: signed.certChain.slice(0, -1).join('') };
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

function get(port: number, path: string, extra: https.RequestOptions = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path, method: body === undefined ? 'GET' : 'POST', ca: ca.trustBundle.join(''), servername: 'localhost', agent: false, ...extra },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const whoami = express.Router().get('/whoami', (req, res) => {
  const socket = req.socket as tls.TLSSocket;
  res.json({ authorized: socket.authorized, spiffeId: peerSpiffeId(req) ?? null, protocol: socket.getProtocol() });
});

const failing = express
  .Router()
  .get('/throws', () => {
    throw new Error('secret internals at /srv/app.ts:12');
  })
  .post('/echo', express.json({ limit: 100 }), (req, res) => {
    res.json(req.body);
  });

let shared: { mesh: MeshServer; port: number };
before(async () => {
  await ready;
  shared = await start([whoami, failing]);
});
after(() => shared.mesh.close(100));

test('client certificates are optional; a trusted one yields the peer’s SPIFFE ID', async () => {
  const none = JSON.parse((await get(shared.port, '/whoami')).text);
  assert.deepEqual({ ...none, protocol: undefined }, { authorized: false, spiffeId: null, protocol: undefined });
  assert.match(none.protocol, /^TLSv1\.[23]$/);

  const id = 'spiffe://cluster.local/ns/shop/sa/web';
  const trusted = JSON.parse((await get(shared.port, '/whoami', workloadCert(ca, id))).text);
  assert.equal(trusted.authorized, true);
  assert.equal(trusted.spiffeId, id);

  // Served, but not authorized: the config stream must not trust it.
  const stranger = JSON.parse((await get(shared.port, '/whoami', workloadCert(otherCa, 'spiffe://other.example/ns/shop/sa/web'))).text);
  assert.deepEqual({ authorized: stranger.authorized, spiffeId: stranger.spiffeId }, { authorized: false, spiffeId: null });
});

test('an empty trust bundle trusts no client certificate (not Node’s public roots either)', async () => {
  const { mesh, port } = await start([whoami]);
  try {
    mesh.setCredentials(serving.keyPem, serving.certChainPem, []);
    const reply = JSON.parse((await get(port, '/whoami', workloadCert(ca, 'spiffe://cluster.local/ns/a/sa/b'))).text);
    assert.deepEqual({ authorized: reply.authorized, spiffeId: reply.spiffeId }, { authorized: false, spiffeId: null });
  } finally {
    await mesh.close(100);
  }
});

test('TLS below 1.2 is refused', async () => {
  const socket = tls.connect({ host: '127.0.0.1', port: shared.port, ca: ca.trustBundle.join(''), servername: 'localhost', maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
  const [err] = (await once(socket, 'error').catch((e: unknown) => [e])) as [Error];
  assert.ok(err instanceof Error);
  socket.destroy();
});

test('unknown paths are JSON 404s; errors are JSON, never HTML or stack traces', async () => {
  const notFound = await get(shared.port, '/nope?x=1');
  assert.equal(notFound.status, 404);
  assert.match(String(notFound.headers['content-type']), /^application\/json/);
  assert.deepEqual(JSON.parse(notFound.text).error.code, 'not_found');

  const thrown = await get(shared.port, '/throws');
  assert.equal(thrown.status, 500);
  assert.deepEqual(JSON.parse(thrown.text), { error: { code: 'internal', message: 'internal error; the control plane logged the details' } });

  const badJson = await get(shared.port, '/echo', { headers: { 'content-type': 'application/json' } }, '{"a":');
  assert.equal(badJson.status, 400);
  assert.equal(JSON.parse(badJson.text).error.code, 'bad_request');
  assert.match(JSON.parse(badJson.text).error.message, /not valid JSON/);

  const tooLarge = await get(shared.port, '/echo', { headers: { 'content-type': 'application/json' } }, JSON.stringify({ a: 'x'.repeat(200) }));
  assert.equal(tooLarge.status, 413);
  assert.equal(JSON.parse(tooLarge.text).error.code, 'payload_too_large');
  for (const reply of [notFound, thrown, badJson, tooLarge]) assert.doesNotMatch(reply.text, /<html|\.ts:\d+|secret internals/i);
});

test('setCredentials swaps the serving certificate and the client trust bundle for new connections', async () => {
  const { mesh, port } = await start([whoami]);
  try {
    const newServing = await issueServingCertificate(otherCa, ['localhost', '127.0.0.1']);
    mesh.setCredentials(newServing.keyPem, newServing.certChainPem, otherCa.trustBundle);
    await assert.rejects(get(port, '/whoami'), /self-signed|unable to verify|certificate/i);
    const id = 'spiffe://other.example/ns/a/sa/b';
    const reply = await get(port, '/whoami', { ca: otherCa.trustBundle.join(''), ...workloadCert(otherCa, id) });
    assert.equal(JSON.parse(reply.text).spiffeId, id);
  } finally {
    await mesh.close(100);
  }
});

test('close(): idle keep-alive connections close, in-flight requests finish with Connection: close', async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inFlight = new Promise<void>((r) => (entered = r));
  const slow = express
    .Router()
    .get('/fast', (_req, res) => void res.json({ ok: true }))
    .get('/slow', async (_req, res) => {
      entered();
      await released;
      res.json({ ok: true });
    });
  const { mesh, port } = await start([slow]);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 2 });
  try {
    assert.equal((await get(port, '/fast', { agent })).status, 200);
    const idleSocket = Object.values(agent.freeSockets).flat()[0]!;
    assert.ok(idleSocket, 'a kept-alive idle connection');
    const idleClosed = once(idleSocket, 'close');

    const slowReply = get(port, '/slow', { agent: false });
    await inFlight;
    const closed = mesh.close(5_000);
    assert.equal(mesh.closing.aborted, true);
    await idleClosed;
    await assert.rejects(get(port, '/fast'), /ECONNREFUSED/);
    release();
    const reply = await slowReply;
    assert.equal(reply.status, 200);
    assert.equal(reply.headers.connection, 'close');
    const startedAt = Date.now();
    await closed;
    assert.ok(Date.now() - startedAt < 1_000, 'closed as soon as the last response was out');
  } finally {
    agent.destroy();
    release();
    await mesh.close(100);
  }
});

test('close(): streams end on the closing signal; a stuck response is cut after graceMs', async () => {
  let streams = 0;
  const router = express
    .Router()
    .get('/stream', (_req, res) => {
      streams++;
      res.type('application/x-ndjson').write('{"hello":1}\n');
      closingSignal(res)?.addEventListener('abort', () => res.end('{"bye":1}\n'));
    })
    .get('/stuck', (_req, res) => {
      res.write('partial');
    });
  const { mesh, port } = await start([router]);
  const stream = get(port, '/stream');
  const stuck = get(port, '/stuck').catch((err: Error) => err);
  while (streams === 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  const startedAt = Date.now();
  await mesh.close(300);
  const elapsed = Date.now() - startedAt;
  assert.ok(elapsed >= 250 && elapsed < 2_000, `the stuck response held close() for the grace period only (${elapsed} ms)`);
  assert.equal((await stream).text, '{"hello":1}\n{"bye":1}\n');
  const cut = await stuck;
  assert.ok(cut instanceof Error || cut.text === 'partial', 'the stuck response was cut');
  await mesh.close(); // idempotent
});

test('raw routes: served ahead of express for their exact URL and method, with the same metrics, JSON 500 and drain', async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inFlight = new Promise<void>((r) => (entered = r));
  let rawCalls = 0;
  const routed = express.Router().post('/hot', (_req, res) => void res.json({ via: 'express' }));
  withRawRoutes(routed, [
    {
      method: 'POST',
      path: '/hot',
      handle: async (req, res) => {
        rawCalls++;
        if (req.headers['x-fail'] === 'sync') throw new Error('secret internals at /srv/hot.ts:1');
        if (req.headers['x-wait'] === '1') {
          entered();
          await released;
        }
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"via":"raw"}');
      },
    },
  ]);
  const registry = createRegistry();
  const mesh = createMeshServer({ key: serving.keyPem, cert: serving.certChainPem, trustBundle: ca.trustBundle, routers: [routed], logger: quietLogger(), registry });
  const port = await mesh.listen(0, '127.0.0.1');
  try {
    assert.equal(JSON.parse((await get(port, '/hot', {}, '{}')).text).via, 'raw');
    assert.equal(JSON.parse((await get(port, '/hot?x=1', {}, '{}')).text).via, 'express', 'not the exact URL: express routes it');
    assert.equal(rawCalls, 1);
    const failed = await get(port, '/hot', { headers: { 'x-fail': 'sync' } }, '{}');
    assert.equal(failed.status, 500);
    assert.deepEqual(JSON.parse(failed.text), { error: { code: 'internal', message: 'internal error; the control plane logged the details' } });
    const metrics = await registry.metrics();
    assert.match(metrics, /^cinch_mesh_server_requests_total\{[^}]*route="\/hot"[^}]*code="200"[^}]*\} 2$/m);
    assert.match(metrics, /^cinch_mesh_server_requests_total\{[^}]*route="\/hot"[^}]*code="500"[^}]*\} 1$/m);

    const slowReply = get(port, '/hot', { headers: { 'x-wait': '1' } }, '{}');
    await inFlight;
    const closed = mesh.close(5_000);
    release();
    const reply = await slowReply;
    assert.equal(reply.status, 200);
    assert.equal(reply.headers.connection, 'close');
    await closed;
  } finally {
    release();
    await mesh.close(100);
  }
});
