// injectPod: the pod in, the injected pod and the JSONPatch that produces it out. Pure.
//
// Order of containers (why):
// - native sidecar: initContainers = [cinch-init, cinch-proxy (restartPolicy Always), ...app inits].
//   The rules go in first, then the proxy starts and its startupProbe holds everything after it
//   until it is ready, so the app's own init containers already run inside the mesh.
// - classic: initContainers = [...app inits, cinch-init]; containers = [cinch-proxy, ...apps].
//   No proxy runs during the init phase, so cinch-init goes last: app init containers that fetch
//   something over the network would otherwise be redirected to a proxy that is not there yet.
//   The proxy is the first regular container because the kubelet starts containers in order;
//   kubectl.kubernetes.io/default-container keeps `kubectl logs/exec` on the app.
import type { Operation } from 'fast-json-patch';
import type { V1Container, V1ObjectMeta, V1Pod, V1PodSpec, V1Volume } from '@kubernetes/client-node';
import { invalidAnnotation, parseOverrides, unknownCinchAnnotations, type PodOverrides } from './annotations.ts';
import { requestAboveLimit, type InjectionConfig, type ProxyResources } from './config.ts';
import { InjectionError } from './errors.ts';
import {
  ANNOTATION,
  CINCH_CONTAINER_NAMES,
  CINCH_VOLUME_NAMES,
  DEFAULT_CONTAINER_ANNOTATION,
  INIT_CONTAINER_NAME,
  PROMETHEUS_PATH_ANNOTATION,
  PROMETHEUS_PORT_ANNOTATION,
  PROMETHEUS_SCRAPE_ANNOTATION,
  PROXY_CONTAINER_NAME,
  RESERVED_PORTS,
  STATS_PATH,
  STATUS_ANNOTATION,
  STATUS_PORT,
  TLS_MODE_LABEL,
  TLS_MODE_VALUE,
} from './names.ts';
import { diffMap, diffNamedList } from './patch.ts';
import { rewriteProbes, type AppProbes, type OriginalProbes } from './probes.ts';
import { formatStatus, parseStatus, stripInjection, type InjectionStatus, type PodParts } from './status.ts';
import { cinchVolumes, initContainer, proxyContainer, type SidecarSettings } from './template.ts';

export interface InjectionContext {
  config: InjectionConfig;
  /** Whether the API server and kubelets run native sidecars (decided by the caller from versions); used when config.nativeSidecar is `auto`. */
  nativeSidecarSupported: boolean;
}

export interface InjectionResult {
  /** RFC 6902 operations against the pod as given; empty when the pod is already injected exactly so. */
  patch: Operation[];
  /** The pod after the patch. Shares unchanged parts (managedFields included) with the input: do not mutate either. */
  pod: V1Pod;
  /** What this injection added, as written to cinch.dev/status. */
  status: InjectionStatus;
  /** Whether the proxy was injected as a native sidecar. */
  native: boolean;
  /** Things worth telling the user that do not stop injection (AdmissionResponse.warnings). */
  warnings: string[];
}

/**
 * Inject the sidecar into `pod`. Call shouldInject first: this function does not look at labels.
 * An already-injected pod (cinch.dev/status) is first stripped of exactly what its status lists,
 * so injecting twice gives the same pod. Throws InjectionError on an invalid annotation, a name
 * collision, an untrustworthy status or a pod without containers.
 */
export function injectPod(pod: V1Pod, ctx: InjectionContext): InjectionResult {
  const metadata: V1ObjectMeta = pod.metadata ?? {};
  const spec: V1PodSpec | undefined = pod.spec;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) throw new InjectionError('invalid_pod', 'the pod has no containers');
  const annotationsIn = metadata.annotations ?? undefined;
  const overrides = parseOverrides(annotationsIn);
  const warnings = unknownCinchAnnotations(annotationsIn).map((key) => `unknown annotation ${key} ignored`);

  let base: PodParts = {
    annotations: annotationsIn,
    labels: metadata.labels ?? undefined,
    initContainers: spec.initContainers ?? undefined,
    containers: spec.containers,
    volumes: spec.volumes ?? undefined,
  };
  const previous = annotationsIn?.[STATUS_ANNOTATION];
  if (previous !== undefined) base = stripInjection(base, parseStatus(previous));
  refuseCollisions(base);
  if (base.containers.length === 0) throw new InjectionError('invalid_pod', 'the pod has no containers besides the ones Cinch injected');

  const { config } = ctx;
  const native = overrides.nativeSidecar ?? (config.nativeSidecar === 'auto' ? ctx.nativeSidecarSupported : config.nativeSidecar === 'true');
  const rewrite = overrides.rewriteProbes ?? config.rewriteProbes;

  // Probes: the app containers always; the app's own native sidecars only when ours starts before them.
  const appProbes: AppProbes = {};
  const originalProbes: Record<string, OriginalProbes> = {};
  const rewriteAll = (list: V1Container[], applies: (c: V1Container) => boolean): V1Container[] =>
    list.map((container) => {
      if (!rewrite || !applies(container)) return container;
      const result = rewriteProbes(container, appProbes, warnings);
      if (result.originals) originalProbes[container.name] = result.originals;
      return result.container;
    });
  const appInits = rewriteAll(base.initContainers ?? [], (c) => native && c.restartPolicy === 'Always');
  const apps = rewriteAll(base.containers, () => true);

  const settings: SidecarSettings = {
    image: overrides.proxyImage ?? config.proxyImage,
    imagePullPolicy: config.imagePullPolicy,
    resources: proxyResources(config.resources, overrides),
    caAddress: config.caAddress,
    trustDomain: config.trustDomain,
    logLevel: overrides.logLevel ?? config.logLevel,
    tokenExpirationSeconds: config.tokenExpirationSeconds,
    capture: {
      includeInboundPorts: overrides.includeInboundPorts ?? '*',
      excludeInboundPorts: overrides.excludeInboundPorts ?? [],
      excludeOutboundPorts: overrides.excludeOutboundPorts ?? [],
      includeOutboundCidrs: overrides.includeOutboundCidrs ?? '*',
      excludeOutboundCidrs: overrides.excludeOutboundCidrs ?? [],
    },
    native,
    appProbes,
    appContainers: apps.map((c) => c.name),
  };
  const init = initContainer(settings);
  const proxy = proxyContainer(settings);
  const initContainers = native ? [init, proxy, ...appInits] : [...appInits, init];
  const containers = native ? apps : [proxy, ...apps];
  const addedVolumes = cinchVolumes(settings);
  const volumes: V1Volume[] = [...(base.volumes ?? []), ...addedVolumes];

  const annotations: Record<string, string> = { ...base.annotations };
  const addedAnnotations: string[] = [];
  const addAnnotation = (key: string, value: string): void => {
    annotations[key] = value;
    addedAnnotations.push(key);
  };
  if (annotations[DEFAULT_CONTAINER_ANNOTATION] === undefined) addAnnotation(DEFAULT_CONTAINER_ANNOTATION, apps[0].name);
  // The app's own scrape settings win whole: adding our port next to its path would break both.
  const prometheusKeys = [PROMETHEUS_SCRAPE_ANNOTATION, PROMETHEUS_PORT_ANNOTATION, PROMETHEUS_PATH_ANNOTATION];
  if (prometheusKeys.every((key) => annotations[key] === undefined)) {
    addAnnotation(PROMETHEUS_SCRAPE_ANNOTATION, 'true');
    addAnnotation(PROMETHEUS_PORT_ANNOTATION, String(STATUS_PORT));
    addAnnotation(PROMETHEUS_PATH_ANNOTATION, STATS_PATH);
  }
  const labels: Record<string, string> = { ...base.labels };
  const addedLabels: string[] = [];
  if (labels[TLS_MODE_LABEL] === undefined) {
    labels[TLS_MODE_LABEL] = TLS_MODE_VALUE;
    addedLabels.push(TLS_MODE_LABEL);
  }
  const status: InjectionStatus = {
    version: 1,
    initContainers: native ? [INIT_CONTAINER_NAME, PROXY_CONTAINER_NAME] : [INIT_CONTAINER_NAME],
    containers: native ? [] : [PROXY_CONTAINER_NAME],
    volumes: addedVolumes.map((v) => v.name),
    annotations: addedAnnotations,
    labels: addedLabels,
    probes: originalProbes,
  };
  annotations[STATUS_ANNOTATION] = formatStatus(status);

  warnings.push(...reservedPortWarnings(apps), ...jobWarnings(spec, native));

  const patch: Operation[] = [];
  if (pod.metadata === undefined || pod.metadata === null) {
    patch.push({ op: 'add', path: '/metadata', value: { labels, annotations } });
  } else {
    diffMap('/metadata/labels', metadata.labels, labels, patch);
    diffMap('/metadata/annotations', metadata.annotations, annotations, patch);
  }
  diffNamedList('/spec/initContainers', spec.initContainers, initContainers, patch);
  diffNamedList('/spec/containers', spec.containers, containers, patch);
  diffNamedList('/spec/volumes', spec.volumes, volumes, patch);

  const injected: V1Pod = { ...pod, metadata: { ...metadata, labels, annotations }, spec: { ...spec, initContainers, containers, volumes } };
  return { patch, pod: injected, status, native, warnings };
}

/** Never overwrite: an app container or volume that already uses one of our names is an error. */
function refuseCollisions(parts: PodParts): void {
  const clash = (kind: string, list: { name: string }[] | undefined, names: ReadonlySet<string>): void => {
    const found = list?.find((item) => names.has(item.name));
    if (found) {
      throw new InjectionError('name_collision', `the pod already has ${kind} named ${found.name}, which Cinch injects; rename it (Cinch never overwrites it)`);
    }
  };
  clash('an init container', parts.initContainers, CINCH_CONTAINER_NAMES);
  clash('a container', parts.containers, CINCH_CONTAINER_NAMES);
  clash('a volume', parts.volumes, CINCH_VOLUME_NAMES);
}

/** Config resources with the per-pod annotations on top; a request above its limit names the annotation that caused it. */
function proxyResources(fromConfig: ProxyResources, o: PodOverrides): ProxyResources {
  const resources: ProxyResources = { requests: { ...fromConfig.requests }, limits: { ...fromConfig.limits } };
  if (o.proxyCpu !== undefined) resources.requests.cpu = o.proxyCpu;
  if (o.proxyMemory !== undefined) resources.requests.memory = o.proxyMemory;
  if (o.proxyCpuLimit !== undefined) resources.limits.cpu = o.proxyCpuLimit;
  if (o.proxyMemoryLimit !== undefined) resources.limits.memory = o.proxyMemoryLimit;
  const bad = requestAboveLimit(resources);
  if (bad) {
    const [requestKey, limitKey] = bad === 'cpu' ? (['proxyCpu', 'proxyCpuLimit'] as const) : (['proxyMemory', 'proxyMemoryLimit'] as const);
    const blamed = o[requestKey] !== undefined ? requestKey : limitKey;
    throw invalidAnnotation(ANNOTATION[blamed], o[blamed] ?? '', `${bad} request ${resources.requests[bad]} is above the limit ${resources.limits[bad]}`);
  }
  return resources;
}

function reservedPortWarnings(apps: V1Container[]): string[] {
  const warnings: string[] = [];
  for (const container of apps) {
    for (const port of container.ports ?? []) {
      if (RESERVED_PORTS.has(port.containerPort)) warnings.push(`container ${container.name}: port ${port.containerPort} is used by the Cinch proxy`);
    }
  }
  return warnings;
}

function jobWarnings(spec: V1PodSpec, native: boolean): string[] {
  if (native || (spec.restartPolicy !== 'Never' && spec.restartPolicy !== 'OnFailure')) return [];
  return [`restartPolicy ${spec.restartPolicy}: the proxy is a regular container and keeps the pod running after the app exits; use native sidecars (${ANNOTATION.nativeSidecar}: "true"), or end the job's command with curl -fsS -X POST http://127.0.0.1:15020/quitquitquit`];
}
