// SPIFFE IDs (spiffe/spiffe standards/SPIFFE-ID.md) and the Kubernetes workload form
// `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>` that Cinch issues.
// Policies name peers by "principal": the same ID without the `spiffe://` prefix (as Istio does).

export const SPIFFE_PREFIX = 'spiffe://';
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const MAX_TRUST_DOMAIN_BYTES = 255;
/** Longest ID a SPIFFE implementation must support; longer IDs are refused rather than half-supported. */
export const MAX_SPIFFE_ID_BYTES = 2048;

const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const PATH_SEGMENT_CHARS = /^[A-Za-z0-9._-]+$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export class SpiffeIdError extends Error {
  override readonly name = 'SpiffeIdError';
}

export interface SpiffeId {
  readonly trustDomain: string;
  /** '' for a trust-domain ID (signing certs), otherwise '/seg/seg…'. */
  readonly path: string;
}

export interface WorkloadIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Why `trustDomain` is not a valid SPIFFE trust domain, or undefined if it is. */
export function trustDomainProblem(trustDomain: string): string | undefined {
  if (trustDomain === '') return 'trust domain is empty';
  if (Buffer.byteLength(trustDomain) > MAX_TRUST_DOMAIN_BYTES) return `trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`;
  if (!TRUST_DOMAIN_CHARS.test(trustDomain)) {
    return `trust domain ${JSON.stringify(trustDomain)} may contain only lowercase letters, digits, '.', '-' and '_'`;
  }
  return undefined;
}

export function assertTrustDomain(trustDomain: string): void {
  const problem = trustDomainProblem(trustDomain);
  if (problem) throw new SpiffeIdError(problem);
}

export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}

export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && DNS1123_SUBDOMAIN.test(value);
}

/** Parses any SPIFFE ID by the standard's rules; throws SpiffeIdError saying which rule failed. */
export function parseSpiffeId(id: string): SpiffeId {
  const shown = JSON.stringify(id.length > 80 ? `${id.slice(0, 80)}…` : id);
  if (Buffer.byteLength(id) > MAX_SPIFFE_ID_BYTES) throw new SpiffeIdError(`SPIFFE ID is longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
  if (!id.startsWith(SPIFFE_PREFIX)) throw new SpiffeIdError(`${shown} is not a SPIFFE ID: it must start with "spiffe://"`);
  const rest = id.slice(SPIFFE_PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  // Userinfo, port, query and fragment all show up as characters the trust domain or path may not hold.
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem) throw new SpiffeIdError(`${shown}: ${tdProblem}`);
  if (path !== '') {
    const segments = path.slice(1).split('/');
    for (const segment of segments) {
      if (segment === '') throw new SpiffeIdError(`${shown}: path has an empty segment or a trailing '/'`);
      if (segment === '.' || segment === '..') throw new SpiffeIdError(`${shown}: path may not contain '.' or '..' segments`);
      if (!PATH_SEGMENT_CHARS.test(segment)) {
        throw new SpiffeIdError(`${shown}: path segment ${JSON.stringify(segment)} may contain only letters, digits, '.', '-' and '_'`);
      }
    }
  }
  return { trustDomain, path };
}

export function isSpiffeId(id: string): boolean {
  try {
    parseSpiffeId(id);
    return true;
  } catch {
    return false;
  }
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>`; refuses names Kubernetes itself would refuse. */
export function formatWorkloadId(identity: WorkloadIdentity): string {
  assertTrustDomain(identity.trustDomain);
  if (!isDns1123Label(identity.namespace)) {
    throw new SpiffeIdError(`namespace ${JSON.stringify(identity.namespace)} is not a valid Kubernetes namespace name (DNS-1123 label, at most 63 characters)`);
  }
  if (!isDns1123Subdomain(identity.serviceAccount)) {
    throw new SpiffeIdError(
      `service account ${JSON.stringify(identity.serviceAccount)} is not a valid Kubernetes name (DNS-1123 subdomain, at most 253 characters)`,
    );
  }
  return `${SPIFFE_PREFIX}${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

/** Parses exactly `spiffe://<td>/ns/<ns>/sa/<sa>`, as Istio does; any other path is refused. */
export function parseWorkloadId(id: string): WorkloadIdentity {
  const { trustDomain, path } = parseSpiffeId(id);
  const segments = path.split('/').slice(1);
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    throw new SpiffeIdError(`${JSON.stringify(id)} is not a workload ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>`);
  }
  return { trustDomain, namespace: segments[1], serviceAccount: segments[3] };
}

/** The principal form used by AuthorizationPolicy: the SPIFFE ID without `spiffe://`. */
export function toPrincipal(spiffeId: string): string {
  parseSpiffeId(spiffeId);
  return spiffeId.slice(SPIFFE_PREFIX.length);
}

export function principalToSpiffeId(principal: string): string {
  const id = `${SPIFFE_PREFIX}${principal}`;
  parseSpiffeId(id);
  return id;
}
