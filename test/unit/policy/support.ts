// Builders shared by the policy tests: objects as Kubernetes returns them, and requests with
// sensible defaults (sleep in bar calling httpbin in foo over mTLS, GET /headers).
import assert from 'node:assert/strict';
import { buildPolicySet } from '../../../src/policy/validate.ts';
import { compileWorkloadPolicy } from '../../../src/policy/workload.ts';
import type { AuthorizationPolicySpec, AuthzDecision, AuthzInput, HttpAttributes, PeerAuthenticationSpec } from '../../../src/policy/types.ts';

export const SLEEP = 'cluster.local/ns/bar/sa/sleep';
export const HTTPBIN = { namespace: 'foo', labels: { app: 'httpbin', version: 'v1' } };

export interface Meta {
  ns?: string;
  created?: string;
  annotations?: Record<string, string>;
}

export function ap(name: string, spec: AuthorizationPolicySpec | Record<string, unknown>, meta: Meta = {}): Record<string, unknown> {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: {
      name,
      namespace: meta.ns ?? 'foo',
      ...(meta.created ? { creationTimestamp: meta.created } : {}),
      ...(meta.annotations ? { annotations: meta.annotations } : {}),
    },
    spec,
  };
}

export function pa(name: string, spec: PeerAuthenticationSpec | Record<string, unknown>, meta: Meta = {}): Record<string, unknown> {
  return {
    apiVersion: 'security.istio.io/v1beta1',
    kind: 'PeerAuthentication',
    metadata: { name, namespace: meta.ns ?? 'foo', ...(meta.created ? { creationTimestamp: meta.created } : {}) },
    spec,
  };
}

export interface RequestOverrides {
  sourceIp?: string;
  principal?: string | null;
  port?: number;
  destinationIp?: string;
  sni?: string;
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string | string[]>;
}

/** An HTTP request; `principal: null` makes the caller plaintext. */
export function http(o: RequestOverrides = {}): AuthzInput {
  const h: HttpAttributes = { method: o.method ?? 'GET', path: o.path ?? '/headers', host: o.host ?? 'httpbin.foo:8000', headers: o.headers ?? {} };
  return { ...tcp(o), http: h };
}

/** A TCP connection (no HTTP attributes). */
export function tcp(o: RequestOverrides = {}): AuthzInput {
  return {
    sourceIp: o.sourceIp ?? '10.0.0.7',
    sourcePrincipal: o.principal === null ? undefined : (o.principal ?? SLEEP),
    destinationPort: o.port ?? 8000,
    destinationIp: o.destinationIp,
    sni: o.sni,
  };
}

/** Validates the objects (all must be enforceable), compiles them for httpbin and evaluates. */
export function decide(objects: Record<string, unknown>[], input: AuthzInput, workload = HTTPBIN): AuthzDecision {
  const set = buildPolicySet(objects);
  const skipped = set.problems.filter((p) => !p.enforced);
  assert.deepEqual(skipped, [], 'every test policy must be valid');
  return compileWorkloadPolicy(set, workload).evaluate(input);
}
