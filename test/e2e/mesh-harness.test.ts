// The mesh harness checks itself, so the mesh tests' verdicts can be trusted: the control plane
// starts against the test API server; the pods' Kubernetes objects say what a kubelet would;
// `cinch init` really captures an app's traffic (and not the proxy uid's); the packet capture
// sees a plaintext marker when there is one and recognises a TLS handshake when there is one;
// the relay carries the proxies' traffic to the control plane's 15012; cleanup leaves nothing.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthenticationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { makeServingCert } from '../support/tls.ts';
import { APP_PORT, APP_UID, CP_IP, Mesh, PROXY_UID, captureUnsupportedReason, meshSkipReason, step, summariseWire } from './mesh.ts';
import type { MeshPod } from './mesh.ts';

const skip = meshSkipReason();
if (skip) process.stderr.write(`mesh harness e2e skipped: ${skip}\n`);
const noCapture = captureUnsupportedReason();

const TLS_PORT = 9443;

// A TLS echo server (one line back, prefixed) and a TLS client that sends one line.
const TLS_SERVER = `
import tls from 'node:tls';
import fs from 'node:fs';
const { port, key, cert } = JSON.parse(process.argv[1]);
tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (s) => {
  s.once('data', (d) => s.end('echo ' + d));
  s.on('error', () => undefined);
}).listen(port, '0.0.0.0', () => console.log('listening'));
`;
const TLS_CLIENT = `
import tls from 'node:tls';
const { host, port, line } = JSON.parse(process.argv[1]);
const s = tls.connect({ host, port, rejectUnauthorized: false }, () => s.write(line + '\\n'));
let got = '';
s.setEncoding('utf8');
s.on('data', (d) => (got += d));
s.on('end', () => console.log(JSON.stringify({ got })));
s.on('error', (e) => console.log(JSON.stringify({ error: e.code ?? e.message })));
`;
// An HTTPS GET with the mesh roots as the only trust anchors (the server's IP SAN is checked).
const HTTPS_GET = `
import https from 'node:https';
import fs from 'node:fs';
const { url, ca } = JSON.parse(process.argv[1]);
https.get(url, { ca: fs.readFileSync(ca), agent: false, timeout: 5000 }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d) => (body += d));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));
}).on('error', (e) => console.log(JSON.stringify({ error: e.code ?? e.message })));
`;

describe('mesh harness', { skip }, () => {
  let mesh: Mesh;
  let server: MeshPod;
  let client: MeshPod;
  let outsider: MeshPod;

  before(async () => {
    mesh = await Mesh.start({ name: 'harness', requireCaServer: false });
    server = await mesh.addPod({ label: 'server', meshed: false, app: true });
    // Meshed (objects and rules) but without its proxy: what init alone does is visible.
    client = await mesh.addPod({ label: 'client', meshed: true, startProxy: false });
    outsider = await mesh.addPod({ label: 'outsider', meshed: false });
  });

  after(async () => {
    if (!mesh) return;
    await mesh.cleanup();
    assert.deepEqual(mesh.remaining(), [], 'every network namespace of the mesh is gone');
    assert.equal(fs.existsSync(mesh.dir), false, 'the mesh directory is gone');
  });

  test('the control plane created its CA Secret; the roots are written for the proxies', () => {
    assert.match(mesh.trustBundle, /-----BEGIN CERTIFICATE-----/);
    assert.equal(fs.readFileSync(mesh.rootCertFile, 'utf8'), mesh.trustBundle);
    assert.equal(fs.statSync(mesh.rootCertFile).mode & 0o777, 0o644);
  });

  test('a meshed pod is a running Pod at its namespace address, with its ServiceAccount and the tls-mode label', async () => {
    const pod = await mesh.kc.makeApiClient(CoreV1Api).readNamespacedPod({ name: 'client', namespace: client.namespace });
    assert.equal(pod.status?.podIP, client.ip);
    assert.equal(pod.status?.phase, 'Running');
    assert.equal(pod.spec?.serviceAccountName, client.serviceAccount);
    assert.equal(pod.metadata?.labels?.['security.cinch.dev/tls-mode'], 'cinch');
    assert.equal(client.spiffeId, `spiffe://cluster.local/ns/${client.namespace}/sa/client`);
  });

  test('the token written for a proxy authenticates as its ServiceAccount with audience cinch-ca', async () => {
    const file = await mesh.writeToken(client.namespace, client.serviceAccount, 'check.token');
    assert.equal(fs.statSync(file).mode & 0o777, 0o644);
    const review = await mesh.kc.makeApiClient(AuthenticationV1Api).createTokenReview({ body: { spec: { token: fs.readFileSync(file, 'utf8'), audiences: ['cinch-ca'] } } });
    assert.equal(review.status?.authenticated, true, JSON.stringify(review.status));
    assert.equal(review.status?.user?.username, `system:serviceaccount:${client.namespace}:client`);
  });

  test('pods reach each other on the LAN; the app answers and records each request', async () => {
    const [res] = await outsider.request(server.url('/harness-hello'));
    assert.equal(res.status, 200, JSON.stringify(res));
    assert.equal(res.body, 'hello from server-app /harness-hello\n');
    const seen = server.appRequests().filter((r) => r.url === '/harness-hello');
    assert.equal(seen.length, 1);
    assert.equal(seen[0].remote, outsider.ip);
  });

  test('cinch init captures the app uid\'s traffic (no proxy yet: refused at 15001) and never the proxy uid\'s', async () => {
    const [app] = await client.request(server.url('/from-app-uid'));
    assert.equal(app.error, 'ECONNREFUSED', `uid ${APP_UID} must be redirected to the (absent) outbound proxy: ${JSON.stringify(app)}`);
    const res = await client.netns.nodeEval(`const r = await fetch(${JSON.stringify(server.url('/from-proxy-uid'))}); console.log(r.status);`, [], { uid: PROXY_UID });
    assert.equal(res.stdout.trim(), '200', res.stderr);
    assert.deepEqual(server.appRequests().map((r) => r.url).filter((u) => u.startsWith('/from-')), ['/from-proxy-uid']);
  });

  test('the capture sees a plaintext HTTP marker on the wire, and no TLS', { skip: noCapture }, async () => {
    const capture = await server.capture(APP_PORT);
    const [res] = await outsider.request(server.url('/plaintext-marker-5e1f'));
    assert.equal(res.status, 200);
    const wire = summariseWire(await capture.stop(), APP_PORT);
    step(`plaintext capture: ${wire.segments} segments, ${wire.connections} connection(s)`);
    assert.equal(wire.connections, 1);
    assert.ok(wire.bytes.includes('GET /plaintext-marker-5e1f HTTP/1.1'), 'the request line is visible');
    assert.ok(wire.bytes.includes('hello from server-app'), 'the response is visible');
    assert.equal(wire.clientHellos + wire.serverHellos + wire.tlsApplicationData, 0);
  });

  test('the capture recognises a TLS handshake and sees no marker inside TLS', { skip: noCapture }, async () => {
    const material = makeServingCert();
    const key = path.join(mesh.dir, 'tls.key');
    const cert = path.join(mesh.dir, 'tls.crt');
    fs.writeFileSync(key, material.key, { mode: 0o644 });
    fs.writeFileSync(cert, material.cert, { mode: 0o644 });
    const tlsServer = server.netns.spawnNodeEval(TLS_SERVER, [JSON.stringify({ port: TLS_PORT, key, cert })], { uid: APP_UID });
    await tlsServer.waitFor(/^listening$/m);
    const capture = await server.capture(TLS_PORT);
    const res = await outsider.netns.nodeEval(TLS_CLIENT, [JSON.stringify({ host: server.ip, port: TLS_PORT, line: 'tls-marker-9c2d' })], { uid: APP_UID });
    assert.deepEqual(JSON.parse(res.stdout.trim()), { got: 'echo tls-marker-9c2d\n' }, res.stderr);
    const wire = summariseWire(await capture.stop(), TLS_PORT);
    await tlsServer.stop();
    step(`TLS capture: ${wire.segments} segments, ${wire.clientHellos} ClientHello, ${wire.serverHellos} ServerHello`);
    assert.equal(wire.clientHellos, 1);
    assert.equal(wire.serverHellos, 1);
    assert.ok(wire.tlsApplicationData >= 1);
    assert.equal(wire.bytes.includes('tls-marker-9c2d'), false);
  });

  test(`the relay carries HTTPS from a pod namespace to the control plane's CA port at ${CP_IP}:15012 (its certificate names that IP)`, async () => {
    const res = await outsider.netns.nodeEval(HTTPS_GET, [JSON.stringify({ url: `https://${CP_IP}:15012/v1/trust-bundle`, ca: mesh.rootCertFile })], { uid: APP_UID });
    const out = JSON.parse(res.stdout.trim()) as { status?: number; body?: string; error?: string };
    assert.equal(out.status, 200, JSON.stringify(out));
    assert.ok(out.body?.includes(mesh.trustBundle.trim().split('\n')[1]), 'the served bundle holds the root of Secret cinch-ca');
  });
});
