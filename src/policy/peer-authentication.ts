// PeerAuthentication resolution for one workload, as Istio does it:
// mesh (root namespace, no selector) → namespace (no selector) → workload (selector), each
// non-UNSET mode overriding its parent, PERMISSIVE when nothing is set. At one level the oldest
// policy wins (then the name, so the outcome never depends on list order). A policy with a
// selector in the root namespace is ignored. Per-port modes come from the workload-level policy
// and are keyed by the container (target) port.
import { hasWorkloadSelector, selectorMatches } from './select.ts';
import { DEFAULT_ROOT_NAMESPACE, type MtlsMode, type PeerAuthentication, type PolicyOptions, type Workload } from './types.ts';

export type EffectiveMtlsMode = Exclude<MtlsMode, 'UNSET'>;

export interface ResolvedPeerAuthentication {
  /** Mode for ports without a port-level override. */
  mode: EffectiveMtlsMode;
  /** Port-level overrides (container port → mode); ports whose override is UNSET are left out. */
  portModes: Record<number, EffectiveMtlsMode>;
  /** `namespace/name` of the policy that set `mode`; null for the built-in PERMISSIVE default. */
  policy: string | null;
  /** `namespace/name` of the policy behind each entry of portModes. */
  portPolicies: Record<number, string>;
  /** Policies that lost a tie at their level (Istio warns and ignores them). */
  ignored: string[];
}

export interface ModeForPort {
  mode: EffectiveMtlsMode;
  policy: string | null;
}

const ref = (pa: PeerAuthentication): string => `${pa.metadata.namespace}/${pa.metadata.name}`;

function timestamp(pa: PeerAuthentication): number {
  const t = pa.metadata.creationTimestamp ? Date.parse(pa.metadata.creationTimestamp) : NaN;
  // Objects that were never stored (a YAML file) have no timestamp: they count as the newest.
  return Number.isNaN(t) ? Number.POSITIVE_INFINITY : t;
}

function olderFirst(a: PeerAuthentication, b: PeerAuthentication): number {
  const ta = timestamp(a);
  const tb = timestamp(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

/** The PeerAuthentications that can affect a workload (before the oldest-wins choice). */
export function selectPeerAuthentications(
  policies: readonly PeerAuthentication[],
  workload: Workload,
  options: PolicyOptions = {},
): PeerAuthentication[] {
  const rootNamespace = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  return policies.filter((pa) => {
    const ns = pa.metadata.namespace;
    const scoped = hasWorkloadSelector(pa.spec.selector);
    if (ns === rootNamespace) return !scoped;
    if (ns !== workload.namespace) return false;
    return !scoped || selectorMatches(pa.spec.selector, workload.labels);
  });
}

export function resolvePeerAuthentication(
  policies: readonly PeerAuthentication[],
  workload: Workload,
  options: PolicyOptions = {},
): ResolvedPeerAuthentication {
  const rootNamespace = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const mesh: PeerAuthentication[] = [];
  const namespace: PeerAuthentication[] = [];
  const workloadLevel: PeerAuthentication[] = [];
  for (const pa of selectPeerAuthentications(policies, workload, options)) {
    if (pa.metadata.namespace === rootNamespace) mesh.push(pa);
    else if (hasWorkloadSelector(pa.spec.selector)) workloadLevel.push(pa);
    else namespace.push(pa);
  }

  const resolved: ResolvedPeerAuthentication = { mode: 'PERMISSIVE', portModes: {}, policy: null, portPolicies: {}, ignored: [] };
  const pick = (level: PeerAuthentication[]): PeerAuthentication | undefined => {
    const sorted = [...level].sort(olderFirst);
    resolved.ignored.push(...sorted.slice(1).map(ref));
    return sorted[0];
  };
  const workloadWinner = pick(workloadLevel);
  for (const pa of [pick(mesh), pick(namespace), workloadWinner]) {
    const mode = pa?.spec.mtls?.mode;
    if (pa && mode && mode !== 'UNSET') {
      resolved.mode = mode;
      resolved.policy = ref(pa);
    }
  }
  if (workloadWinner) {
    for (const [port, mtls] of Object.entries(workloadWinner.spec.portLevelMtls ?? {})) {
      if (mtls.mode && mtls.mode !== 'UNSET') {
        resolved.portModes[Number(port)] = mtls.mode;
        resolved.portPolicies[Number(port)] = ref(workloadWinner);
      }
    }
  }
  return resolved;
}

export function modeForPort(resolved: ResolvedPeerAuthentication, port: number): EffectiveMtlsMode {
  return resolved.portModes[port] ?? resolved.mode;
}

/** The mode for a port and the policy that set it (for messages). */
export function modeAndPolicyForPort(resolved: ResolvedPeerAuthentication, port: number): ModeForPort {
  const portMode = resolved.portModes[port];
  if (portMode) return { mode: portMode, policy: resolved.portPolicies[port] ?? null };
  return { mode: resolved.mode, policy: resolved.policy };
}
