// Validation of Istio-format policies at `kubectl apply` (POST /validate): the same checks the control plane
// runs on what it watches, answered before the object is stored, so a typo is refused with its field named
// instead of being left out of enforcement later. Pure.
import { CUSTOM_UNSUPPORTED, validateAuthorizationPolicy, validatePeerAuthentication } from '../policy/validate.ts';
import { SECURITY_GROUP, type PolicyOptions } from '../policy/types.ts';
import type { AdmissionRequest } from './admission.ts';

export type PolicyAdmission = { kind: 'allow'; reason: string; warnings?: string[] } | { kind: 'refuse'; reason: string; message: string };

/** The API server truncates longer warnings; each is cut here so the cut is visible. */
const MAX_WARNING = 250;

export function admitPolicy(request: AdmissionRequest, options: PolicyOptions = {}): PolicyAdmission {
  const kind = request.kind?.kind;
  if (request.kind?.group !== SECURITY_GROUP || (kind !== 'PeerAuthentication' && kind !== 'AuthorizationPolicy')) return { kind: 'allow', reason: 'not_a_policy' };
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return { kind: 'allow', reason: 'not_create_or_update' };
  const object = request.object;
  // An object on its way out (finalizers being removed) is never held back by what is wrong with it.
  const meta = (object as { metadata?: { deletionTimestamp?: unknown } } | undefined)?.metadata;
  if (meta?.deletionTimestamp) return { kind: 'allow', reason: 'being_deleted' };
  const result = kind === 'PeerAuthentication' ? validatePeerAuthentication(object, options) : validateAuthorizationPolicy(object, options);
  const ref = `${request.namespace ?? '?'}/${request.name ?? '?'}`;
  // CUSTOM is accepted as Istio accepts it without a provider: enforced as a deny of what it matches (a warning says so).
  const custom = result.errors.filter((e) => e.includes(CUSTOM_UNSUPPORTED));
  const errors = result.errors.filter((e) => !e.includes(CUSTOM_UNSUPPORTED));
  if (errors.length > 0) {
    return { kind: 'refuse', reason: 'invalid', message: `${kind} ${ref} is invalid for Cinch: ${errors.join('; ')}` };
  }
  const warnings = [...custom, ...result.warnings].map((w) => (w.length > MAX_WARNING ? `${w.slice(0, MAX_WARNING - 1)}…` : w));
  return { kind: 'allow', reason: warnings.length > 0 ? 'valid_with_warnings' : 'valid', ...(warnings.length > 0 ? { warnings } : {}) };
}
