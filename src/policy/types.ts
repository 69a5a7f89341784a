// Istio's security API (security.istio.io v1 and v1beta1) as Kubernetes returns the objects,
// and the request attributes the evaluator looks at. Field names follow the CRDs exactly,
// so an Istio user's YAML parses into these types unchanged.

export const SECURITY_GROUP = 'security.istio.io';
export const SECURITY_API_VERSIONS: readonly string[] = ['security.istio.io/v1', 'security.istio.io/v1beta1'];

/** The mesh root namespace: policies there apply mesh-wide (Istio's meshConfig.rootNamespace). */
export const DEFAULT_ROOT_NAMESPACE = 'cinch-system';

/** Annotation that evaluates an AuthorizationPolicy in shadow mode (never enforced). */
export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';

export interface PolicyOptions {
  /** Mesh root namespace; defaults to `cinch-system`. */
  rootNamespace?: string;
}

export interface ObjectMeta {
  name: string;
  namespace: string;
  creationTimestamp?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
}

export interface WorkloadSelector {
  matchLabels?: Record<string, string>;
}

export interface PolicyTargetReference {
  group?: string;
  kind: string;
  name: string;
  namespace?: string;
}

// ---- PeerAuthentication ----

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';
export const MTLS_MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

export interface MutualTls {
  mode?: MtlsMode;
}

export interface PeerAuthenticationSpec {
  selector?: WorkloadSelector;
  mtls?: MutualTls;
  /** Keys are container (target) port numbers as strings, as JSON/YAML maps have them. */
  portLevelMtls?: Record<string, MutualTls>;
}

export interface PeerAuthentication {
  apiVersion: string;
  kind: 'PeerAuthentication';
  metadata: ObjectMeta;
  spec: PeerAuthenticationSpec;
}

// ---- AuthorizationPolicy ----

export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
export const AUTHORIZATION_ACTIONS: readonly AuthorizationAction[] = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'];

export interface Source {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}

export interface Operation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

export interface Condition {
  key: string;
  values?: string[];
  notValues?: string[];
}

export interface Rule {
  from?: { source: Source }[];
  to?: { operation: Operation }[];
  when?: Condition[];
}

export interface AuthorizationPolicySpec {
  selector?: WorkloadSelector;
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  action?: AuthorizationAction;
  provider?: { name?: string };
  rules?: Rule[];
}

export interface AuthorizationPolicy {
  apiVersion: string;
  kind: 'AuthorizationPolicy';
  metadata: ObjectMeta;
  spec: AuthorizationPolicySpec;
}

export type SecurityPolicy = PeerAuthentication | AuthorizationPolicy;

// ---- Workloads and requests ----

/** What selection needs to know about a workload: where it runs and its pod labels. */
export interface Workload {
  namespace: string;
  labels: Record<string, string>;
}

/** HTTP attributes of one request; absent for TCP traffic. */
export interface HttpAttributes {
  method: string;
  /** As received (`:path`); the evaluator strips the query and normalizes it. */
  path: string;
  /** `:authority` / Host, with or without a port. */
  host: string;
  /** Header names in any case; repeated headers as arrays (Node's IncomingHttpHeaders fits). */
  headers?: Record<string, string | string[] | undefined>;
}

/** Everything the evaluator matches on, for one connection (TCP) or one request (HTTP). */
export interface AuthzInput {
  /** Packet source address (IPv4, IPv6, or IPv4-mapped IPv6 as Node reports it). */
  sourceIp: string;
  /** Peer identity from the mTLS certificate (`<td>/ns/<ns>/sa/<sa>`, `spiffe://` optional); absent for plaintext. */
  sourcePrincipal?: string;
  destinationPort: number;
  destinationIp?: string;
  /** TLS server name the client asked for, if any. */
  sni?: string;
  http?: HttpAttributes;
}

/** The offline request of `cinch authz check` (REQUEST.json in DESIGN.md). */
export interface AuthzRequest {
  destination: { namespace: string; labels: Record<string, string>; port: number; ip?: string };
  source: { principal?: string; namespace?: string; ip: string };
  request?: {
    protocol: string;
    method?: string;
    path?: string;
    host?: string;
    headers?: Record<string, string | string[]>;
    sni?: string;
  };
}

export type Decision = 'ALLOW' | 'DENY';

export interface AuthzDecision {
  decision: Decision;
  /** `namespace/name` of the deciding policy, or null when no single policy decided. */
  policy: string | null;
  /** Human-readable explanation naming the policy and what matched. */
  reason: string;
  /** AUDIT policies that matched (`namespace/name`): to be logged and counted, never enforced. */
  audited: string[];
  /** Dry-run (`istio.io/dry-run: "true"`) policies and whether they matched; never enforced. */
  dryRun: { policy: string; action: AuthorizationAction; matched: boolean }[];
}
