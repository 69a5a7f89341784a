// AdmissionReview in and out (admission.k8s.io v1 and v1beta1), as pure functions.
import type { V1Pod } from '@kubernetes/client-node';

export const ADMISSION_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;
type AdmissionVersion = (typeof ADMISSION_VERSIONS)[number];

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { group?: string; version?: string; resource?: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation?: string;
  dryRun?: boolean;
  object?: unknown;
}

export interface AdmissionReview {
  apiVersion: AdmissionVersion;
  kind: 'AdmissionReview';
  request: AdmissionRequest;
}

export type JsonPatchOperation = { op: string; path: string; value?: unknown; from?: string };

/** What the injector decided for one pod. */
export type MutationResult =
  | { kind: 'patch'; patch: JsonPatchOperation[]; reason: string; warnings?: string[] }
  | { kind: 'skip'; reason: string }
  | { kind: 'refuse'; reason: string; message: string };

export class BadReviewError extends Error {}

/** Checks the shape of a parsed body; throws BadReviewError with the field at fault. */
export function parseAdmissionReview(body: unknown): AdmissionReview {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadReviewError('body must be a JSON object (an AdmissionReview)');
  const review = body as Record<string, unknown>;
  if (review.kind !== 'AdmissionReview') throw new BadReviewError(`kind must be "AdmissionReview", got ${JSON.stringify(review.kind)}`);
  if (!ADMISSION_VERSIONS.includes(review.apiVersion as AdmissionVersion)) {
    throw new BadReviewError(`apiVersion must be one of ${ADMISSION_VERSIONS.join(', ')}, got ${JSON.stringify(review.apiVersion)}`);
  }
  const request = review.request;
  if (typeof request !== 'object' || request === null) throw new BadReviewError('request is missing');
  const uid = (request as Record<string, unknown>).uid;
  if (typeof uid !== 'string' || uid === '') throw new BadReviewError('request.uid is missing');
  return body as AdmissionReview;
}

/** Only a pod's own CREATE is ours; everything else (updates, subresources, other kinds) is allowed untouched. */
export function isPodCreate(request: AdmissionRequest): boolean {
  const kind = request.kind;
  const isPodKind = kind ? (kind.group ?? '') === '' && kind.kind === 'Pod' : request.resource?.resource === 'pods' && (request.resource.group ?? '') === '';
  return isPodKind && request.operation === 'CREATE' && !request.subResource && typeof request.object === 'object' && request.object !== null;
}

export function podOf(request: AdmissionRequest): V1Pod {
  return request.object as V1Pod;
}

/** A pod created by a controller has only generateName; the request's namespace is authoritative. */
export function podDisplayName(request: AdmissionRequest): string {
  const pod = podOf(request);
  return pod.metadata?.name || request.name || (pod.metadata?.generateName ? `${pod.metadata.generateName}<generated>` : '<unnamed>');
}

/**
 * The AdmissionReview response as JSON text (uid echoed, allowed, the patch as base64 JSONPatch,
 * warnings, or a 400 status for a refusal), built by concatenation so that the one large part, the
 * patch, is serialised once and base64-encoded once: base64 needs no JSON escaping, so it is spliced
 * in as it is instead of being scanned again by a second JSON.stringify (and again by the framework).
 */
export function encodeReviewResponse(review: AdmissionReview, result: MutationResult | { kind: 'allow'; warnings?: string[] }): string {
  let response = `{"uid":${JSON.stringify(review.request.uid)},"allowed":${result.kind !== 'refuse'}`;
  if (result.kind === 'patch' && result.patch.length > 0) response += `,"patchType":"JSONPatch","patch":"${base64Json(result.patch)}"`;
  if ((result.kind === 'patch' || result.kind === 'allow') && result.warnings?.length) response += `,"warnings":${JSON.stringify(result.warnings)}`;
  if (result.kind === 'refuse') {
    response += `,"status":${JSON.stringify({ code: 400, reason: 'BadRequest', message: result.message })}`;
  }
  return `{"apiVersion":${JSON.stringify(review.apiVersion)},"kind":"AdmissionReview","response":${response}}}`;
}

/** base64 of the UTF-8 JSON text of `value`; the only alphabet is [A-Za-z0-9+/=], safe inside a JSON string as is. */
function base64Json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64');
}
