// Pure: from what the informers hold (pods, services, policy objects) to a mesh snapshot, and from a
// snapshot to the ProxyConfig of one pod. No I/O here, so the config each proxy gets is unit-tested
// without a cluster, and the same inputs always give the same version (so nothing is re-pushed).
import { createHash } from 'node:crypto';
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { formatWorkloadId } from '../identity/spiffe.ts';
import { TLS_MODE_LABEL, TLS_MODE_VALUE } from '../inject/names.ts';
import {
  buildPolicySet,
  DRY_RUN_ANNOTATION,
  resolvePeerAuthentication,
  selectAuthorizationPolicies,
  selectPeerAuthentications,
  type AuthorizationPolicy,
  type ObjectMeta,
  type PeerAuthentication,
  type PolicyProblem,
} from '../policy/index.ts';
import type { MeshedEndpoint, ProxyConfig } from '../proxy/config.ts';

/** What the control plane knows of one pod (every pod, meshed or not: the stream authorizes by it). */
export interface MeshPod {
  namespace: string;
  name: string;
  uid?: string;
  serviceAccount: string;
  labels: Record<string, string>;
  /** status.podIPs (or podIP); empty while the pod has none, and for finished pods. */
  ips: string[];
  /** Carries the tls-mode label, has an IP, is not on the host network and has not finished. */
  meshed: boolean;
  /** `spiffe://<td>/ns/<ns>/sa/<sa>` of a meshed pod. */
  spiffeId?: string;
  /** The owning workload (Deployment, StatefulSet, …) by name, for metric labels; the pod name when it has none. */
  workload: string;
}

export interface MeshService {
  namespace: string;
  name: string;
  clusterIps: string[];
  selector?: Record<string, string>;
}

export interface MeshSnapshot {
  trustDomain: string;
  rootNamespace: string;
  trustBundle: readonly string[];
  /** Valid policies (CUSTOM ones included: they fail closed), by namespace. */
  policies: ReadonlyMap<string, NamespacePolicies>;
  /** Every pod by `namespace/name`. */
  pods: ReadonlyMap<string, MeshPod>;
  /** The same for every proxy: pod and service IPs of meshed workloads → identities. */
  meshedDestinations: Readonly<Record<string, MeshedEndpoint>>;
  /** Digests of the shared parts, so a proxy's version costs O(its policies), not O(mesh). */
  digests: { trustBundle: string; meshedDestinations: string };
}

export interface NamespacePolicies {
  peerAuthentications: PeerAuthentication[];
  authorizationPolicies: AuthorizationPolicy[];
}

export interface PolicyIndex {
  policies: ReadonlyMap<string, NamespacePolicies>;
  problems: PolicyProblem[];
}

// ---------------------------------------------------------------- pods and services

const FINISHED_PHASES = new Set(['Succeeded', 'Failed']);

/** Istio-style workload name: a ReplicaSet's pods belong to its Deployment (the pod-template-hash suffix dropped). */
export function workloadName(pod: V1Pod): string {
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller) ?? pod.metadata?.ownerReferences?.[0];
  const podName = pod.metadata?.name ?? '';
  if (!owner) return podName;
  const hash = pod.metadata?.labels?.['pod-template-hash'];
  if (owner.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)) return owner.name.slice(0, -hash.length - 1);
  return owner.name;
}

function podIps(pod: V1Pod): string[] {
  const listed = (pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip): ip is string => typeof ip === 'string' && ip !== '');
  if (listed.length > 0) return [...new Set(listed)];
  return pod.status?.podIP ? [pod.status.podIP] : [];
}

/**
 * What the mesh needs from a Pod object. A pod whose ServiceAccount or namespace cannot form a
 * SPIFFE ID is listed as not meshed (`problem` says why) rather than dropped.
 */
export function meshPodFromObject(pod: V1Pod, trustDomain: string): { pod?: MeshPod; problem?: string } {
  const namespace = pod.metadata?.namespace;
  const name = pod.metadata?.name;
  if (!namespace || !name) return {};
  // The ServiceAccount admission plugin fills serviceAccountName in; a pod without one runs as `default`.
  const serviceAccount = pod.spec?.serviceAccountName || pod.spec?.serviceAccount || 'default';
  const labels = { ...(pod.metadata?.labels ?? {}) };
  const finished = FINISHED_PHASES.has(pod.status?.phase ?? '');
  // A finished pod's IP may already belong to another pod.
  const ips = finished ? [] : podIps(pod);
  const out: MeshPod = { namespace, name, uid: pod.metadata?.uid, serviceAccount, labels, ips, meshed: false, workload: workloadName(pod) };
  // A host-network pod shares the node's address with every other one there: never meshed by IP.
  if (labels[TLS_MODE_LABEL] !== TLS_MODE_VALUE || ips.length === 0 || pod.spec?.hostNetwork) return { pod: out };
  try {
    out.spiffeId = formatWorkloadId({ trustDomain, namespace, serviceAccount });
    out.meshed = true;
    return { pod: out };
  } catch (err) {
    return { pod: out, problem: (err as Error).message };
  }
}

export function meshServiceFromObject(service: V1Service): MeshService | undefined {
  const namespace = service.metadata?.namespace;
  const name = service.metadata?.name;
  if (!namespace || !name) return undefined;
  const ips = service.spec?.clusterIPs?.length ? service.spec.clusterIPs : service.spec?.clusterIP ? [service.spec.clusterIP] : [];
  return { namespace, name, clusterIps: ips.filter((ip) => ip !== '' && ip !== 'None'), selector: service.spec?.selector };
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(selector)) if (labels[key] !== value) return false;
  return true;
}

/**
 * Pod IPs of meshed pods, and ClusterIPs of services whose selected pods are all meshed → who may
 * answer there. A service that also selects running pods without the proxy is left out: the
 * caller's proxy cannot know which backend a ClusterIP connection reaches, and plaintext works with
 * both kinds under PERMISSIVE (the mode a mesh migrates through). Services without a selector
 * (manual Endpoints) and headless services (no ClusterIP; callers reach pod IPs) need no entry.
 */
export function buildMeshedDestinations(pods: Iterable<MeshPod>, services: Iterable<MeshService>, clusterDomain = 'cluster.local'): Record<string, MeshedEndpoint> {
  const byNamespace = new Map<string, MeshPod[]>();
  const entries = new Map<string, MeshedEndpoint>();
  for (const pod of pods) {
    if (pod.ips.length === 0) continue;
    let list = byNamespace.get(pod.namespace);
    if (!list) byNamespace.set(pod.namespace, (list = []));
    list.push(pod);
    if (!pod.meshed || !pod.spiffeId) continue;
    for (const ip of pod.ips) {
      const existing = entries.get(ip);
      // Two pods with one IP (a pod being replaced): either may answer until the cache settles.
      if (existing) existing.identities = [...new Set([...existing.identities, pod.spiffeId])].sort();
      else entries.set(ip, { identities: [pod.spiffeId], workload: { name: pod.workload, namespace: pod.namespace } });
    }
  }
  for (const service of services) {
    if (service.clusterIps.length === 0 || !service.selector || Object.keys(service.selector).length === 0) continue;
    const selected = (byNamespace.get(service.namespace) ?? []).filter((p) => selects(service.selector!, p.labels));
    if (selected.length === 0 || selected.some((p) => !p.meshed)) continue;
    const identities = [...new Set(selected.map((p) => p.spiffeId!))].sort();
    const workloads = new Set(selected.map((p) => p.workload));
    const endpoint: MeshedEndpoint = {
      identities,
      workload: workloads.size === 1 ? { name: [...workloads][0], namespace: service.namespace } : { namespace: service.namespace },
      service: `${service.name}.${service.namespace}.svc.${clusterDomain}`,
    };
    for (const ip of service.clusterIps) entries.set(ip, endpoint);
  }
  const sorted: Record<string, MeshedEndpoint> = {};
  for (const ip of [...entries.keys()].sort()) sorted[ip] = entries.get(ip)!;
  return sorted;
}

// ---------------------------------------------------------------- policies

/**
 * Only what the policy core reads: informer objects also carry managedFields and
 * last-applied-configuration (a second copy of the object), which every proxy would receive and
 * which would change the version on edits that change nothing.
 */
function slimMetadata(meta: ObjectMeta): ObjectMeta {
  const out: ObjectMeta = { name: meta.name, namespace: meta.namespace };
  if (meta.creationTimestamp !== undefined) out.creationTimestamp = String(meta.creationTimestamp);
  const dryRun = meta.annotations?.[DRY_RUN_ANNOTATION];
  if (dryRun !== undefined) out.annotations = { [DRY_RUN_ANNOTATION]: dryRun };
  return out;
}

function byRef(a: { metadata: ObjectMeta }, b: { metadata: ObjectMeta }): number {
  const ra = `${a.metadata.namespace}/${a.metadata.name}`;
  const rb = `${b.metadata.namespace}/${b.metadata.name}`;
  return ra < rb ? -1 : ra > rb ? 1 : 0;
}

/** Validates every policy object (invalid ones are reported, never in the index) and groups the valid ones by namespace. */
export function indexPolicies(objects: readonly unknown[], rootNamespace: string): PolicyIndex {
  const set = buildPolicySet(objects, { rootNamespace });
  const policies = new Map<string, NamespacePolicies>();
  const bucket = (ns: string) => {
    let entry = policies.get(ns);
    if (!entry) policies.set(ns, (entry = { peerAuthentications: [], authorizationPolicies: [] }));
    return entry;
  };
  for (const pa of [...set.peerAuthentications].sort(byRef)) {
    bucket(pa.metadata.namespace).peerAuthentications.push({ apiVersion: pa.apiVersion, kind: pa.kind, metadata: slimMetadata(pa.metadata), spec: pa.spec });
  }
  for (const ap of [...set.authorizationPolicies].sort(byRef)) {
    bucket(ap.metadata.namespace).authorizationPolicies.push({ apiVersion: ap.apiVersion, kind: ap.kind, metadata: slimMetadata(ap.metadata), spec: ap.spec });
  }
  return { policies, problems: set.problems };
}

// ---------------------------------------------------------------- snapshot and per-pod config

/** JSON with object keys sorted, so equal content hashes equally whatever order the API server used. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export interface SnapshotInput {
  trustDomain: string;
  rootNamespace: string;
  trustBundle: readonly string[];
  pods: Iterable<MeshPod>;
  services: Iterable<MeshService>;
  policies: ReadonlyMap<string, NamespacePolicies>;
  clusterDomain?: string;
}

/**
 * Where the destination pod's resolved PeerAuthentication is DISABLE (workload-wide or per port), callers
 * must not originate mTLS: its proxy would pass the ClientHello to the app. Marks pod-IP entries only;
 * service IPs are reached on service ports, which port-level policy (keyed by target port) cannot name,
 * so they get the workload-wide answer when every selected pod agrees.
 */
export function markPlaintextDestinations(destinations: Record<string, MeshedEndpoint>, pods: Iterable<MeshPod>, policies: ReadonlyMap<string, NamespacePolicies>, rootNamespace: string): void {
  const modeOf = new Map<string, { disabled: boolean; exceptPorts?: number[] }>();
  const rootPas = policies.get(rootNamespace)?.peerAuthentications ?? [];
  for (const pod of pods) {
    if (!pod.meshed) continue;
    const pas = pod.namespace === rootNamespace ? rootPas : [...rootPas, ...(policies.get(pod.namespace)?.peerAuthentications ?? [])];
    if (pas.length === 0) continue;
    const resolved = resolvePeerAuthentication(pas, { namespace: pod.namespace, labels: pod.labels }, { rootNamespace });
    const disabled = resolved.mode === 'DISABLE';
    const exceptPorts = Object.entries(resolved.portModes)
      .filter(([, mode]) => (mode === 'DISABLE') !== disabled)
      .map(([port]) => Number(port))
      .sort((a, b) => a - b);
    if (!disabled && exceptPorts.length === 0) continue;
    const mtls = exceptPorts.length ? { disabled, exceptPorts } : { disabled };
    for (const ip of pod.ips) {
      modeOf.set(ip, mtls);
      if (destinations[ip]) destinations[ip].mtls = mtls;
    }
  }
  // Services: disabled only when every entry behind them is disabled workload-wide (checked by identity set).
  for (const endpoint of Object.values(destinations)) {
    if (!endpoint.service || endpoint.mtls) continue;
    const behind = [...pods].filter((p) => p.meshed && p.namespace === endpoint.workload?.namespace && p.spiffeId && endpoint.identities.includes(p.spiffeId));
    if (behind.length > 0 && behind.every((p) => p.ips.some((ip) => modeOf.get(ip)?.disabled && !modeOf.get(ip)?.exceptPorts))) endpoint.mtls = { disabled: true };
  }
}

export function buildSnapshot(input: SnapshotInput): MeshSnapshot {
  const pods = new Map<string, MeshPod>();
  for (const pod of input.pods) pods.set(`${pod.namespace}/${pod.name}`, pod);
  const meshedDestinations = buildMeshedDestinations(pods.values(), input.services, input.clusterDomain);
  markPlaintextDestinations(meshedDestinations, pods.values(), input.policies, input.rootNamespace);
  const trustBundle = [...input.trustBundle];
  return {
    trustDomain: input.trustDomain,
    rootNamespace: input.rootNamespace,
    trustBundle,
    policies: input.policies,
    pods,
    meshedDestinations,
    digests: { trustBundle: digest(canonicalJson(trustBundle)), meshedDestinations: digest(canonicalJson(meshedDestinations)) },
  };
}

export interface ProxyWorkload {
  namespace: string;
  name: string;
  serviceAccount: string;
  labels: Record<string, string>;
}

/**
 * The config of one pod: the policies of the root namespace and its own that select it (the proxy
 * selects again; sending only these keeps a change elsewhere in the namespace from being a push),
 * the trust bundle and every meshed destination (O(mesh) per proxy: fine at this size, the first
 * thing to scope per namespace or per outbound dependency when meshes grow).
 */
export function buildProxyConfig(snapshot: MeshSnapshot, workload: ProxyWorkload): ProxyConfig {
  const options = { rootNamespace: snapshot.rootNamespace };
  const target = { namespace: workload.namespace, labels: workload.labels };
  const scopes = [...new Set([snapshot.rootNamespace, workload.namespace])].map((ns) => snapshot.policies.get(ns));
  const peerAuthentications = selectPeerAuthentications(
    scopes.flatMap((s) => s?.peerAuthentications ?? []),
    target,
    options,
  );
  const authorizationPolicies = selectAuthorizationPolicies(
    scopes.flatMap((s) => s?.authorizationPolicies ?? []),
    target,
    options,
  );
  const own = {
    workload: { namespace: workload.namespace, name: workload.name, serviceAccount: workload.serviceAccount, labels: workload.labels },
    trustDomain: snapshot.trustDomain,
    rootNamespace: snapshot.rootNamespace,
    peerAuthentications,
    authorizationPolicies,
  };
  const version = digest(canonicalJson({ ...own, digests: snapshot.digests })).slice(0, 16);
  return { version, ...own, trustBundle: [...snapshot.trustBundle], meshedDestinations: snapshot.meshedDestinations };
}

/** The workload a pod's proxy runs as, as the config names it. */
export function proxyWorkload(pod: MeshPod): ProxyWorkload {
  return { namespace: pod.namespace, name: pod.name, serviceAccount: pod.serviceAccount, labels: pod.labels };
}
