// Which policies apply to a workload, as Istio decides it for sidecars.
import { DEFAULT_ROOT_NAMESPACE, type AuthorizationPolicy, type PolicyOptions, type Workload, type WorkloadSelector } from './types.ts';

/** matchLabels is a subset of the workload's labels; an absent or empty selector selects everything. */
export function selectorMatches(selector: WorkloadSelector | undefined, labels: Record<string, string>): boolean {
  const wanted = selector?.matchLabels;
  if (!wanted) return true;
  for (const [key, value] of Object.entries(wanted)) {
    if (labels[key] !== value) return false;
  }
  return true;
}

export function hasWorkloadSelector(selector: WorkloadSelector | undefined): boolean {
  return selector?.matchLabels !== undefined && Object.keys(selector.matchLabels).length > 0;
}

/**
 * An AuthorizationPolicy applies to a workload in its own namespace (every namespace from the
 * root namespace) when its selector matches. Policies attached with targetRef(s) are for
 * gateways and waypoints, which sidecars ignore.
 */
export function authorizationPolicyApplies(policy: AuthorizationPolicy, workload: Workload, options: PolicyOptions = {}): boolean {
  const rootNamespace = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const ns = policy.metadata.namespace;
  if (ns !== workload.namespace && ns !== rootNamespace) return false;
  if (policy.spec.targetRef || (policy.spec.targetRefs && policy.spec.targetRefs.length > 0)) return false;
  return selectorMatches(policy.spec.selector, workload.labels);
}

export function selectAuthorizationPolicies(
  policies: readonly AuthorizationPolicy[],
  workload: Workload,
  options: PolicyOptions = {},
): AuthorizationPolicy[] {
  return policies.filter((p) => authorizationPolicyApplies(p, workload, options));
}
