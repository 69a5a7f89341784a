// Offline injection of Kubernetes manifests (`cinch inject`): find the pod (template) in each
// supported kind, inject it, put it back. Pure; the CLI does the reading and writing.
//
// Offline the user has asked for injection, so the namespace label is not consulted; the pod's
// own opt-out label, hostNetwork and the system namespaces are still honoured.
import type { V1Pod } from '@kubernetes/client-node';
import { shouldInject, type InjectionReason } from './decision.ts';
import { injectPod, type InjectionContext } from './inject.ts';
import { INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL } from './names.ts';

/** Where each kind keeps its pod template. */
const TEMPLATE_PATHS: Record<string, readonly string[]> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

const SKIP_EXPLANATION: Record<InjectionReason, string> = {
  host_network: 'uses hostNetwork',
  opt_out: `has the label ${INJECT_LABEL}=${INJECT_DISABLED}`,
  system_namespace: 'is in the system namespace <ns>',
  not_enabled: 'is not enabled',
  injected: 'is injected',
};

export interface ManifestResult {
  /** The manifest with the sidecar, or the input object itself when nothing was injected. */
  object: unknown;
  /** How many pods (templates) were injected. */
  injected: number;
  /** One line each, prefixed with the object's kind/name. */
  warnings: string[];
}

type Json = Record<string, unknown>;

/** Inject one manifest (a List's items one by one). Throws InjectionError, with the object's kind/name prefixed, on an invalid pod. */
export function injectManifest(manifest: unknown, ctx: InjectionContext): ManifestResult {
  if (!isObject(manifest) || typeof manifest.kind !== 'string') return { object: manifest, injected: 0, warnings: [] };
  const kind = manifest.kind;
  if (kind === 'List' || (kind.endsWith('List') && Array.isArray(manifest.items))) {
    if (!Array.isArray(manifest.items)) return { object: manifest, injected: 0, warnings: [] };
    let injected = 0;
    const warnings: string[] = [];
    const items = manifest.items.map((item) => {
      const result = injectManifest(item, ctx);
      injected += result.injected;
      warnings.push(...result.warnings);
      return result.object;
    });
    return injected > 0 ? { object: { ...manifest, items }, injected, warnings } : { object: manifest, injected, warnings };
  }
  const path = kind === 'Pod' ? [] : TEMPLATE_PATHS[kind];
  if (!path) return { object: manifest, injected: 0, warnings: [] };
  const template = getPath(manifest, path);
  const label = `${kind}/${nameOf(manifest)}`;
  if (!isObject(template)) return { object: manifest, injected: 0, warnings: [`${label}: no pod template found; left unchanged`] };

  const pod = { metadata: template.metadata, spec: template.spec } as V1Pod;
  const namespace = (isObject(manifest.metadata) && typeof manifest.metadata.namespace === 'string' && manifest.metadata.namespace) || '';
  const decision = shouldInject(pod, { name: namespace, labels: { [INJECT_LABEL]: INJECT_ENABLED } });
  if (!decision.inject) {
    const why = SKIP_EXPLANATION[decision.reason].replace('<ns>', namespace);
    return { object: manifest, injected: 0, warnings: [`${label}: not injected: the pod ${why}`] };
  }
  let result;
  try {
    result = injectPod(pod, ctx);
  } catch (err) {
    if (err instanceof Error) err.message = `${label}: ${err.message}`;
    throw err;
  }
  const injectedTemplate: Json = { ...template, metadata: result.pod.metadata, spec: result.pod.spec };
  return { object: setPath(manifest, path, injectedTemplate), injected: 1, warnings: result.warnings.map((w) => `${label}: ${w}`) };
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nameOf(manifest: Json): string {
  const metadata = isObject(manifest.metadata) ? manifest.metadata : {};
  return typeof metadata.name === 'string' ? metadata.name : typeof metadata.generateName === 'string' ? `${metadata.generateName}*` : '<unnamed>';
}

function getPath(object: Json, path: readonly string[]): unknown {
  let current: unknown = object;
  for (const key of path) current = isObject(current) ? current[key] : undefined;
  return current;
}

/** A copy of `object` with `value` at `path`, copying only the objects along the path. */
function setPath(object: Json, path: readonly string[], value: Json): Json {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  return { ...object, [head]: setPath(object[head] as Json, rest, value) };
}
