// The webhook's protocol over real HTTPS on loopback. The injector here is a test double on purpose:
// these tests are about AdmissionReview handling; the real injector is tested in test/unit/inject and
// end to end against the API server in test/integration.
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, test } from 'node:test';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { createRegistry } from '../../../src/telemetry/metrics.ts';
import type { MutationResult } from '../../../src/webhook/admission.ts';
import { createWebhookServer, type WebhookServer } from '../../../src/webhook/server.ts';
import { makeServingCert } from '../../support/tls.ts';

const tlsMaterial = makeServingCert();
const registry = createRegistry();
let webhook: WebhookServer;
let port: number;
let nextResult: MutationResult = { kind: 'skip', reason: 'not_enabled' };

before(async () => {
  webhook = createWebhookServer({
    ...tlsMaterial,
    registry,
    logger: createLogger({ stream: new PassThrough(), level: 'error' }),
    bodyLimit: '64kb',
    mutate: () => nextResult,
  });
  port = await webhook.listen(0, '127.0.0.1');
});
after(() => webhook.close(100));

function post(body: string | Buffer, contentType = 'application/json', path = '/inject'): Promise<{ status: number; json: any; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path, method: 'POST', ca: tlsMaterial.ca, headers: { 'content-type': contentType }, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json, text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const review = (request: Record<string, unknown>, apiVersion = 'admission.k8s.io/v1') =>
  JSON.stringify({ apiVersion, kind: 'AdmissionReview', request });
const podCreate = (extra: Record<string, unknown> = {}) => ({
  uid: 'uid-1',
  kind: { group: '', version: 'v1', kind: 'Pod' },
  resource: { group: '', version: 'v1', resource: 'pods' },
  operation: 'CREATE',
  namespace: 'foo',
  object: { metadata: { generateName: 'web-' }, spec: { containers: [{ name: 'app', image: 'app' }] } },
  ...extra,
});

test('a patch comes back base64 JSONPatch with the request uid echoed', async () => {
  nextResult = { kind: 'patch', reason: 'injected', patch: [{ op: 'add', path: '/metadata/annotations', value: { a: 'b' } }] };
  const res = await post(review(podCreate()));
  assert.equal(res.status, 200);
  assert.equal(res.json.apiVersion, 'admission.k8s.io/v1');
  assert.equal(res.json.kind, 'AdmissionReview');
  assert.equal(res.json.response.uid, 'uid-1');
  assert.equal(res.json.response.allowed, true);
  assert.equal(res.json.response.patchType, 'JSONPatch');
  assert.deepEqual(JSON.parse(Buffer.from(res.json.response.patch, 'base64').toString()), nextResult.kind === 'patch' ? nextResult.patch : null);
});

test('v1beta1 reviews are answered in v1beta1', async () => {
  nextResult = { kind: 'skip', reason: 'not_enabled' };
  const res = await post(review(podCreate({ uid: 'b1' }), 'admission.k8s.io/v1beta1'));
  assert.equal(res.json.apiVersion, 'admission.k8s.io/v1beta1');
  assert.equal(res.json.response.uid, 'b1');
  assert.equal(res.json.response.allowed, true);
  assert.equal(res.json.response.patch, undefined);
});

test('a refusal is allowed:false with the message', async () => {
  nextResult = { kind: 'refuse', reason: 'invalid_annotation', message: 'annotation cinch.dev/proxy-cpu: invalid quantity "lots"' };
  const res = await post(review(podCreate()));
  assert.equal(res.status, 200);
  assert.equal(res.json.response.allowed, false);
  assert.match(res.json.response.status.message, /cinch\.dev\/proxy-cpu.*lots/);
});

test('anything but a pod CREATE is allowed without a patch and never reaches the injector', async () => {
  nextResult = { kind: 'refuse', reason: 'x', message: 'must not be called' };
  for (const request of [
    podCreate({ operation: 'UPDATE' }),
    podCreate({ operation: 'CREATE', subResource: 'ephemeralcontainers' }),
    podCreate({ kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }),
    podCreate({ operation: 'DELETE', object: null }),
  ]) {
    const res = await post(review(request));
    assert.equal(res.status, 200);
    assert.equal(res.json.response.allowed, true, JSON.stringify(request));
    assert.equal(res.json.response.patch, undefined);
  }
});

test('malformed input gets a precise status and message', async () => {
  const notJson = await post('{"apiVersion": ', 'application/json');
  assert.equal(notJson.status, 400);
  assert.match(notJson.json.error.message, /not valid JSON/);

  const wrongType = await post('apiVersion: v1', 'application/yaml');
  assert.equal(wrongType.status, 415);
  assert.match(wrongType.json.error.message, /content-type must be application\/json/);

  const notReview = await post(JSON.stringify({ apiVersion: 'v1', kind: 'Pod' }));
  assert.equal(notReview.status, 400);
  assert.match(notReview.json.error.message, /kind must be "AdmissionReview"/);

  const noUid = await post(review({ operation: 'CREATE' }));
  assert.equal(noUid.status, 400);
  assert.match(noUid.json.error.message, /request\.uid is missing/);

  const array = await post('[]');
  assert.equal(array.status, 400);

  const huge = await post(review(podCreate({ object: { metadata: { annotations: { big: 'x'.repeat(100_000) } } } })));
  assert.equal(huge.status, 413);
  assert.equal(huge.json.error.code, 'payload_too_large');

  const unknownPath = await post(review(podCreate()), 'application/json', '/mutate');
  assert.equal(unknownPath.status, 404);
});

test('metrics count results by reason', async () => {
  const text = await registry.metrics();
  assert.match(text, /cinch_injection_requests_total\{result="injected",reason="injected"\} [1-9]/);
  assert.match(text, /cinch_injection_requests_total\{result="refused",reason="invalid_annotation"\} [1-9]/);
  assert.match(text, /cinch_injection_requests_total\{result="ignored",reason="not_pod_create"\} [1-9]/);
  assert.match(text, /cinch_injection_requests_total\{result="invalid",reason="payload_too_large"\} 1/);
  assert.match(text, /cinch_injection_duration_seconds_bucket\{le="0.001",result="injected"\}/);
});

test('shutdown lets an in-flight review finish', async () => {
  const second = createWebhookServer({
    ...tlsMaterial,
    registry: createRegistry(),
    logger: createLogger({ stream: new PassThrough(), level: 'error' }),
    mutate: async () => {
      await new Promise((r) => setTimeout(r, 300));
      return { kind: 'skip', reason: 'slow' };
    },
  });
  const p = await second.listen(0, '127.0.0.1');
  const inflight = new Promise<number>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: p, path: '/inject', method: 'POST', ca: tlsMaterial.ca, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(review(podCreate()));
  });
  await new Promise((r) => setTimeout(r, 100));
  const closed = second.close(5000);
  assert.equal(await inflight, 200);
  await closed;
});
