// The AdmissionReview response encoder: the text it builds by concatenation must be the document
// reviewResponse describes, byte for byte, for every kind of answer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeReviewResponse, type AdmissionReview, type MutationResult } from '../../../src/webhook/admission.ts';

/** The reference: the response as an object, serialised the plain way (what the server did before it built the text). */
function reviewResponse(review: AdmissionReview, result: MutationResult | { kind: 'allow' }) {
  const response: Record<string, unknown> = { uid: review.request.uid, allowed: result.kind !== 'refuse' };
  if (result.kind === 'patch' && result.patch.length > 0) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(result.patch)).toString('base64');
  }
  if (result.kind === 'patch' && result.warnings?.length) response.warnings = result.warnings;
  if (result.kind === 'refuse') response.status = { code: 400, reason: 'BadRequest', message: result.message };
  return { apiVersion: review.apiVersion, kind: 'AdmissionReview', response };
}


const reviewOf = (uid: string, apiVersion: AdmissionReview['apiVersion'] = 'admission.k8s.io/v1'): AdmissionReview => ({
  apiVersion,
  kind: 'AdmissionReview',
  request: { uid },
});

const results: (MutationResult | { kind: 'allow' })[] = [
  { kind: 'allow' },
  { kind: 'skip', reason: 'not_enabled' },
  { kind: 'patch', reason: 'namespace_enabled', patch: [] },
  { kind: 'patch', reason: 'namespace_enabled', patch: [], warnings: ['only a warning'] },
  { kind: 'patch', reason: 'namespace_enabled', patch: [{ op: 'add', path: '/metadata/labels', value: { a: 'b' } }] },
  {
    kind: 'patch',
    reason: 'pod_enabled',
    patch: [
      { op: 'add', path: '/metadata/annotations/cinch.dev~1status', value: '{"version":1,"probes":{"web":{"livenessProbe":{"httpGet":{"path":"/ünïcode ✓ \\"q\\""}}}}}' },
      { op: 'replace', path: '/spec/containers/0/livenessProbe', value: { httpGet: { path: '/app-health/web/livez', port: 15020, scheme: 'HTTP' }, timeoutSeconds: 1 } },
      { op: 'remove', path: '/spec/volumes/3' },
      { op: 'add', path: '/spec/initContainers', value: [{ name: 'cinch-init', args: ['init', '--x=\u2028\u0000'], env: undefined }] },
    ],
    warnings: ['container web: port 15020 is used by the Cinch proxy', 'quote " and backslash \\'],
  },
  { kind: 'refuse', reason: 'invalid_annotation', message: 'invalid annotation cinch.dev/proxy-cpu="lots \\"of\\" cpu ✗": not a quantity' },
];

test('encodeReviewResponse is JSON.stringify(reviewResponse(...)) for every kind of answer, v1 and v1beta1', () => {
  for (const apiVersion of ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const) {
    for (const uid of ['705ab4f5-6393-11e8-b7cc-42010a800002', 'odd "uid" \\ ✓']) {
      for (const result of results) {
        const review = reviewOf(uid, apiVersion);
        assert.equal(encodeReviewResponse(review, result), JSON.stringify(reviewResponse(review, result)), `${apiVersion} ${uid} ${JSON.stringify(result)}`);
      }
    }
  }
});

test('the patch travels as base64 of its UTF-8 JSON and decodes to the operations', () => {
  const result = results[5] as Extract<MutationResult, { kind: 'patch' }>;
  const parsed = JSON.parse(encodeReviewResponse(reviewOf('u1'), result));
  assert.equal(parsed.response.patchType, 'JSONPatch');
  assert.match(parsed.response.patch, /^[A-Za-z0-9+/]+=*$/);
  assert.deepEqual(JSON.parse(Buffer.from(parsed.response.patch, 'base64').toString('utf8')), JSON.parse(JSON.stringify(result.patch)));
  assert.deepEqual(parsed.response.warnings, result.warnings);
  assert.equal(parsed.response.uid, 'u1');
  assert.equal(parsed.response.allowed, true);
});

test('a refusal carries allowed:false and a 400 status with the message; a skip carries nothing else', () => {
  const refused = JSON.parse(encodeReviewResponse(reviewOf('u2'), results[6]));
  assert.deepEqual(refused.response, { uid: 'u2', allowed: false, status: { code: 400, reason: 'BadRequest', message: (results[6] as { message: string }).message } });
  const skipped = JSON.parse(encodeReviewResponse(reviewOf('u3', 'admission.k8s.io/v1beta1'), { kind: 'skip', reason: 'x' }));
  assert.deepEqual(skipped, { apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', response: { uid: 'u3', allowed: true } });
});
