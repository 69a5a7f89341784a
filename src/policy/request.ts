// The offline request of `cinch authz check` (REQUEST.json): checked field by field so a mistake
// is named, then turned into the evaluator's input. The source namespace is informational only:
// policies read it from the principal, as Istio does, never from a plaintext claim.
import { parseIp } from './ip.ts';
import { compileWorkloadPolicy, type WorkloadPolicyInput } from './workload.ts';
import type { AuthzDecision, AuthzInput, AuthzRequest, PolicyOptions } from './types.ts';

const HTTP_PROTOCOLS = ['http', 'http2', 'https', 'grpc'];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export type ParsedRequest = { request: AuthzRequest; errors: [] } | { request?: undefined; errors: string[] };

export function parseAuthzRequest(json: unknown): ParsedRequest {
  const errors: string[] = [];
  if (!isObject(json)) return { errors: ['the request must be a JSON object with destination, source and (for HTTP) request'] };
  const destination = json.destination;
  const source = json.source;
  const request = json.request;

  if (!isObject(destination)) errors.push('destination is required (an object with namespace, labels and port)');
  else {
    if (typeof destination.namespace !== 'string' || destination.namespace === '') errors.push('destination.namespace is required (a string)');
    if (destination.labels !== undefined && (!isObject(destination.labels) || Object.values(destination.labels).some((v) => typeof v !== 'string'))) {
      errors.push('destination.labels must be a map of strings');
    }
    const port = destination.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) errors.push('destination.port is required (a number 1-65535)');
    if (destination.ip !== undefined && (typeof destination.ip !== 'string' || typeof parseIp(destination.ip) === 'string')) {
      errors.push('destination.ip must be an IP address');
    }
  }

  if (!isObject(source)) errors.push('source is required (an object with ip, and principal for an mTLS caller)');
  else {
    if (typeof source.ip !== 'string' || typeof parseIp(source.ip) === 'string') errors.push('source.ip is required (an IPv4 or IPv6 address)');
    if (source.principal !== undefined && source.principal !== null && typeof source.principal !== 'string') errors.push('source.principal must be a string');
    if (source.namespace !== undefined && source.namespace !== null && typeof source.namespace !== 'string') errors.push('source.namespace must be a string');
  }

  if (request !== undefined && request !== null) {
    if (!isObject(request)) errors.push('request must be an object (omit it for TCP)');
    else {
      const protocol = request.protocol ?? 'http';
      if (typeof protocol !== 'string' || ![...HTTP_PROTOCOLS, 'tcp'].includes(protocol.toLowerCase())) {
        errors.push(`request.protocol must be one of ${[...HTTP_PROTOCOLS, 'tcp'].join(', ')}`);
      } else if (protocol.toLowerCase() !== 'tcp') {
        for (const f of ['method', 'path', 'host'] as const) {
          if (typeof request[f] !== 'string' || request[f] === '') errors.push(`request.${f} is required for HTTP (a string)`);
        }
      }
      const headers = request.headers;
      if (headers !== undefined && (!isObject(headers) || Object.values(headers).some((v) => typeof v !== 'string' && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))))) {
        errors.push('request.headers must be a map of strings (or lists of strings)');
      }
      if (request.sni !== undefined && typeof request.sni !== 'string') errors.push('request.sni must be a string');
    }
  }
  if (errors.length > 0) return { errors };
  const parsed = json as unknown as AuthzRequest;
  return { request: { ...parsed, destination: { ...parsed.destination, labels: parsed.destination.labels ?? {} } }, errors: [] };
}

export function requestToInput(request: AuthzRequest): AuthzInput {
  const r = request.request;
  const isHttp = r !== undefined && (r.protocol ?? 'http').toLowerCase() !== 'tcp';
  return {
    sourceIp: request.source.ip,
    sourcePrincipal: request.source.principal ?? undefined,
    destinationPort: request.destination.port,
    destinationIp: request.destination.ip,
    sni: r?.sni,
    http: isHttp ? { method: r.method ?? '', path: r.path ?? '', host: r.host ?? '', headers: r.headers } : undefined,
  };
}

/** One offline decision: selection, PeerAuthentication and AuthorizationPolicy, as the proxy would decide. */
export function checkRequest(policies: WorkloadPolicyInput, request: AuthzRequest, options: PolicyOptions = {}): AuthzDecision {
  const workload = { namespace: request.destination.namespace, labels: request.destination.labels };
  return compileWorkloadPolicy(policies, workload, options).evaluate(requestToInput(request));
}
