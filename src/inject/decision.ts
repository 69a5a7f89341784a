// Should this pod get the sidecar? The DESIGN's label rules, in the order that gives the most
// useful reason: hard exclusions first (system namespace, hostNetwork), then the pod's own
// opt-out, then the opt-ins. Labels only, never annotations, because the MutatingWebhookConfiguration's
// namespaceSelector/objectSelector can see only labels and must agree with this function:
//   namespace webhook: namespace cinch.dev/inject In [enabled],     pod cinch.dev/inject NotIn [disabled]
//   object webhook:    namespace cinch.dev/inject NotIn [enabled],  pod cinch.dev/inject In [enabled]
// (so a pod label opts in even in a namespace labelled `disabled`; any other value is ignored).
import type { V1Pod } from '@kubernetes/client-node';
import { INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL, SYSTEM_NAMESPACES } from './names.ts';

export interface NamespaceInfo {
  name: string;
  labels?: Readonly<Record<string, string>>;
}

/** Stable, low-cardinality strings, fit for a metric label. */
export type InjectionReason =
  | 'injected' // opted in by namespace or pod label
  | 'system_namespace' // kube-system, kube-public, kube-node-lease
  | 'host_network' // iptables would rewrite the node's own network
  | 'opt_out' // pod label cinch.dev/inject=disabled
  | 'not_enabled'; // neither the namespace nor the pod opted in

export interface InjectionDecision {
  inject: boolean;
  reason: InjectionReason;
}

export const INJECTION_REASONS: readonly InjectionReason[] = ['injected', 'system_namespace', 'host_network', 'opt_out', 'not_enabled'];

export function shouldInject(pod: V1Pod, namespace: NamespaceInfo): InjectionDecision {
  if (SYSTEM_NAMESPACES.has(namespace.name)) return { inject: false, reason: 'system_namespace' };
  if (pod.spec?.hostNetwork === true) return { inject: false, reason: 'host_network' };
  const podLabel = pod.metadata?.labels?.[INJECT_LABEL];
  if (podLabel === INJECT_DISABLED) return { inject: false, reason: 'opt_out' };
  if (namespace.labels?.[INJECT_LABEL] === INJECT_ENABLED || podLabel === INJECT_ENABLED) return { inject: true, reason: 'injected' };
  return { inject: false, reason: 'not_enabled' };
}
