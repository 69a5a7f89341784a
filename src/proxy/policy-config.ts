// The pushed ProxyConfig, compiled once per version into what the listeners ask per connection:
// the PeerAuthentication mode of a port, an authorization decision, and whether a destination is meshed.
import { compileWorkloadPolicy, type WorkloadPolicy } from '../policy/index.ts';
import type { ProxyConfig } from './config.ts';
import type { AuthzDecision, AuthzRequest, InboundConfig, OutboundConfig, OutboundDestination, PeerAuthenticationMode } from './types.ts';

export interface CompiledProxyConfig {
  version: string;
  inbound: InboundConfig;
  outbound: OutboundConfig;
  /** AUDIT policies that matched, for logs and counters (never enforced). */
  lastAudited?: string[];
}

/** Maps the listeners' request shape to the policy core's input. Pure. */
export function toAuthzInput(request: AuthzRequest) {
  const http = request.request?.protocol === 'http' ? request.request : undefined;
  return {
    sourceIp: request.source.ip,
    sourcePrincipal: request.source.principal,
    destinationPort: request.destination.port,
    destinationIp: request.destination.ip,
    sni: request.request?.sni,
    http: http ? { method: http.method, path: http.path, host: http.host, headers: http.headers } : undefined,
  };
}

export function compileProxyConfig(config: ProxyConfig, onAudit?: (policies: string[], request: AuthzRequest) => void): CompiledProxyConfig {
  const workload = { namespace: config.workload.namespace, labels: config.workload.labels };
  const policy: WorkloadPolicy = compileWorkloadPolicy(
    { peerAuthentications: config.peerAuthentications, authorizationPolicies: config.authorizationPolicies },
    workload,
    { rootNamespace: config.rootNamespace },
  );
  const destinations = new Map(Object.entries(config.meshedDestinations));
  const inbound: InboundConfig = {
    trustDomain: config.trustDomain,
    workload: { name: config.workload.name, namespace: config.workload.namespace, labels: config.workload.labels },
    modeForPort: (port: number): PeerAuthenticationMode => {
      const resolved = policy.peerAuthentication;
      return (resolved.portModes[port] ?? resolved.mode);
    },
    authorize: (request: AuthzRequest): AuthzDecision => {
      const decision = policy.evaluate(toAuthzInput(request));
      if (decision.audited.length > 0) onAudit?.(decision.audited, request);
      return { allow: decision.decision === 'ALLOW', policy: decision.policy, reason: decision.reason };
    },
  };
  const outbound: OutboundConfig = {
    destinationFor: (ip: string, port: number): OutboundDestination => {
      const endpoint = destinations.get(ip);
      if (!endpoint || endpoint.identities.length === 0) return { meshed: false };
      // The destination disabled mTLS (PeerAuthentication DISABLE): speak plaintext, as Istio does.
      if (endpoint.mtls && endpoint.mtls.disabled !== (endpoint.mtls.exceptPorts?.includes(port) ?? false)) return { meshed: false };
      return { meshed: true, allowedSpiffeIds: endpoint.identities, workload: endpoint.workload, service: endpoint.service };
    },
  };
  return { version: config.version, inbound, outbound };
}

/** Listeners hold this; `set` swaps the compiled config so the next connection or request uses it. */
export class LiveProxyConfig {
  private compiled?: CompiledProxyConfig;
  /** Until the first config: fail closed (STRICT everywhere, deny everything, nothing meshed). */
  readonly inbound: InboundConfig;
  readonly outbound: OutboundConfig;

  constructor() {
    const current = () => this.compiled;
    this.inbound = {
      get trustDomain() {
        return current()?.inbound.trustDomain ?? '';
      },
      get workload() {
        return current()?.inbound.workload ?? { namespace: '', labels: {} };
      },
      modeForPort: (port) => current()?.inbound.modeForPort(port) ?? 'STRICT',
      authorize: (request) => current()?.inbound.authorize(request) ?? { allow: false, policy: null, reason: 'no configuration from the control plane yet' },
    };
    this.outbound = { destinationFor: (ip, port) => current()?.outbound.destinationFor(ip, port) ?? { meshed: false } };
  }

  set(compiled: CompiledProxyConfig): void {
    this.compiled = compiled;
  }

  get ready(): boolean {
    return this.compiled !== undefined;
  }

  get version(): string | undefined {
    return this.compiled?.version;
  }
}
