// The sidecar template: cinch-init, cinch-proxy and their volumes, as plain objects.
// Every field the API server would default is written out, so that an injected pod read back
// from the API server (reinvocation, re-injection) renders to exactly the same objects and the
// patch for it is empty.
import type { V1Container, V1EnvVar, V1ResourceRequirements, V1Volume } from '@kubernetes/client-node';
import type { ImagePullPolicy, ProxyResources } from './config.ts';
import {
  ALWAYS_EXCLUDED_INBOUND_PORTS,
  CA_ROOT_CONFIGMAP,
  HEALTH_PATH,
  HEALTH_PORT,
  INBOUND_CAPTURE_PORT,
  INIT_CONTAINER_NAME,
  INIT_FLAG,
  MOUNT_PATH,
  OUTBOUND_CAPTURE_PORT,
  PROXY_CONTAINER_NAME,
  PROXY_ENV,
  PROXY_UID,
  STATUS_PORT,
  TOKEN_AUDIENCE,
  VOLUME,
} from './names.ts';
import type { AppProbes } from './probes.ts';
import type { LogLevel } from './values.ts';

export interface CaptureSettings {
  includeInboundPorts: number[] | '*';
  excludeInboundPorts: number[];
  excludeOutboundPorts: number[];
  includeOutboundCidrs: string[] | '*';
  excludeOutboundCidrs: string[];
}

/** Everything the template needs, already merged from config and annotations. */
export interface SidecarSettings {
  image: string;
  imagePullPolicy: ImagePullPolicy;
  resources: ProxyResources;
  caAddress: string;
  trustDomain: string;
  logLevel: LogLevel;
  tokenExpirationSeconds: number;
  capture: CaptureSettings;
  native: boolean;
  appProbes: AppProbes;
  appContainers: string[];
}

const TERMINATION_DEFAULTS = { terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'FallbackToLogsOnError' } as const;
const DEFAULT_MODE = 0o644; // the API server's default for configMap, projected and downwardAPI volumes

/** The arguments of `cinch init`; `--flag=value` keeps an empty list as one argument. */
export function initArgs(capture: CaptureSettings): string[] {
  const list = (value: readonly (number | string)[] | '*'): string => (value === '*' ? '*' : value.join(','));
  const excludeInbound = [...ALWAYS_EXCLUDED_INBOUND_PORTS, ...capture.excludeInboundPorts.filter((p) => !ALWAYS_EXCLUDED_INBOUND_PORTS.includes(p))];
  const args = [
    'init',
    `${INIT_FLAG.inboundPorts}=${list(capture.includeInboundPorts)}`,
    `${INIT_FLAG.excludeInboundPorts}=${list(excludeInbound)}`,
  ];
  if (capture.excludeOutboundPorts.length > 0) args.push(`${INIT_FLAG.excludeOutboundPorts}=${list(capture.excludeOutboundPorts)}`);
  args.push(`${INIT_FLAG.includeOutboundCidrs}=${list(capture.includeOutboundCidrs)}`);
  if (capture.excludeOutboundCidrs.length > 0) args.push(`${INIT_FLAG.excludeOutboundCidrs}=${list(capture.excludeOutboundCidrs)}`);
  args.push(`${INIT_FLAG.proxyUid}=${PROXY_UID}`, `${INIT_FLAG.inboundPort}=${INBOUND_CAPTURE_PORT}`, `${INIT_FLAG.outboundPort}=${OUTBOUND_CAPTURE_PORT}`);
  return args;
}

/**
 * cinch-init installs the iptables rules: root with NET_ADMIN and NET_RAW only. The container-level
 * securityContext wins over the pod's (runAsNonRoot: true there would otherwise stop it).
 */
export function initContainer(s: SidecarSettings): V1Container {
  return {
    name: INIT_CONTAINER_NAME,
    image: s.image,
    imagePullPolicy: s.imagePullPolicy,
    args: initArgs(s.capture),
    env: [{ name: PROXY_ENV.logLevel, value: s.logLevel }],
    resources: resourceRequirements(s.resources),
    securityContext: {
      runAsUser: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
    ...TERMINATION_DEFAULTS,
  };
}

export function proxyContainer(s: SidecarSettings): V1Container {
  return proxyContainerWith(s, JSON.stringify(s.appProbes), s.appContainers.join(','));
}

/** The proxy with its two pod-specific env values given as text (CINCH_APP_PROBES, CINCH_APP_CONTAINERS). */
function proxyContainerWith(s: SidecarSettings, appProbes: string, appContainers: string): V1Container {
  const healthGet = () => ({ path: HEALTH_PATH, port: HEALTH_PORT, scheme: 'HTTP' });
  const container: V1Container = {
    name: PROXY_CONTAINER_NAME,
    image: s.image,
    imagePullPolicy: s.imagePullPolicy,
    args: ['proxy'],
    env: proxyEnv(s, appProbes, appContainers),
    ports: [
      { name: 'http-stats', containerPort: STATUS_PORT, protocol: 'TCP' },
      { name: 'http-health', containerPort: HEALTH_PORT, protocol: 'TCP' },
    ],
    resources: resourceRequirements(s.resources),
    securityContext: {
      runAsUser: PROXY_UID,
      runAsGroup: PROXY_UID,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      privileged: false,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    },
    // Startup: up to 10 minutes for the first certificate (as Istio); as a native sidecar it also holds back
    // the app containers until the proxy is ready. Readiness: taken out of endpoints after a minute of failures.
    startupProbe: { httpGet: healthGet(), timeoutSeconds: 3, periodSeconds: 1, successThreshold: 1, failureThreshold: 600 },
    readinessProbe: { httpGet: healthGet(), timeoutSeconds: 3, periodSeconds: 15, successThreshold: 1, failureThreshold: 4 },
    volumeMounts: [
      { name: VOLUME.token, mountPath: MOUNT_PATH.token, readOnly: true },
      { name: VOLUME.caRoot, mountPath: MOUNT_PATH.caRoot, readOnly: true },
      { name: VOLUME.credentials, mountPath: MOUNT_PATH.credentials },
      { name: VOLUME.podinfo, mountPath: MOUNT_PATH.podinfo, readOnly: true },
    ],
    ...TERMINATION_DEFAULTS,
  };
  // A native sidecar: an init container that keeps running (KEP-753).
  if (s.native) container.restartPolicy = 'Always';
  return container;
}

function proxyEnv(s: SidecarSettings, appProbes: string, appContainers: string): V1EnvVar[] {
  const field = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });
  return [
    field(PROXY_ENV.podName, 'metadata.name'),
    field(PROXY_ENV.podNamespace, 'metadata.namespace'),
    field(PROXY_ENV.instanceIp, 'status.podIP'),
    field(PROXY_ENV.serviceAccount, 'spec.serviceAccountName'),
    { name: PROXY_ENV.caAddress, value: s.caAddress },
    { name: PROXY_ENV.trustDomain, value: s.trustDomain },
    { name: PROXY_ENV.logLevel, value: s.logLevel },
    { name: PROXY_ENV.appProbes, value: appProbes },
    { name: PROXY_ENV.appContainers, value: appContainers },
  ];
}

export function cinchVolumes(s: SidecarSettings): V1Volume[] {
  return [
    {
      name: VOLUME.token,
      projected: {
        sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: s.tokenExpirationSeconds, path: 'token' } }],
        defaultMode: DEFAULT_MODE,
      },
    },
    { name: VOLUME.caRoot, configMap: { name: CA_ROOT_CONFIGMAP, defaultMode: DEFAULT_MODE } },
    // tmpfs: the private key never reaches the node's disk.
    { name: VOLUME.credentials, emptyDir: { medium: 'Memory' } },
    {
      name: VOLUME.podinfo,
      downwardAPI: {
        items: [
          { path: 'labels', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.labels' } },
          { path: 'annotations', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.annotations' } },
        ],
        defaultMode: DEFAULT_MODE,
      },
    },
  ];
}

// --- Rendering with remembered JSON text ---
//
// Everything above depends on the settings alone, except the proxy's CINCH_APP_PROBES and
// CINCH_APP_CONTAINERS, which depend on the pod. So the JSON text of cinch-init, of the volumes and
// of cinch-proxy around those two values is rendered once per distinct settings (in practice: one
// per config version and mode, a few more for pods with override annotations), and each pod gets
// fresh objects together with their text (for patchToJson).

export interface RenderedSidecar {
  init: V1Container;
  proxy: V1Container;
  volumes: V1Volume[];
  /** The exact JSON.stringify text of each object above. */
  texts: Map<object, string>;
}

interface CompiledTemplate {
  init: string;
  volumes: string[];
  /** cinch-proxy's text split around the JSON of its two pod-specific env values. */
  proxy: [before: string, between: string, after: string] | undefined;
}

const compiledTemplates = new Map<string, CompiledTemplate>();
/** Distinct settings seen; past this (a flood of per-pod overrides) the cache starts over rather than grow. */
const MAX_COMPILED_TEMPLATES = 64;
// Stand-ins for the pod-specific values while rendering the text; a NUL cannot occur in any setting (all validated).
const APP_PROBES_MARK = '\u0000cinch:app-probes\u0000';
const APP_CONTAINERS_MARK = '\u0000cinch:app-containers\u0000';

/** Everything the template reads but the two pod-specific values, as one string (NUL-separated; no setting contains a NUL). */
export function templateKey(s: SidecarSettings): string {
  const c = s.capture;
  const r: ProxyResources = s.resources;
  const list = (value: readonly (number | string)[] | '*'): string => (value === '*' ? '*' : `[${value.join(',')}]`);
  return [
    s.image,
    s.imagePullPolicy,
    // Whole, key order included: it decides the order of the rendered fields.
    JSON.stringify(r),
    s.caAddress,
    s.trustDomain,
    s.logLevel,
    s.tokenExpirationSeconds,
    list(c.includeInboundPorts),
    list(c.excludeInboundPorts),
    list(c.excludeOutboundPorts),
    list(c.includeOutboundCidrs),
    list(c.excludeOutboundCidrs),
    s.native,
  ].join('\u0000');
}

/** cinch-init, cinch-proxy and the volumes, exactly as initContainer/proxyContainer/cinchVolumes render them, with their JSON text. */
export function renderSidecar(s: SidecarSettings): RenderedSidecar {
  const key = templateKey(s);
  let compiled = compiledTemplates.get(key);
  if (compiled === undefined) {
    if (compiledTemplates.size >= MAX_COMPILED_TEMPLATES) compiledTemplates.clear();
    compiled = compileTemplate(s);
    compiledTemplates.set(key, compiled);
  }
  const appProbes = JSON.stringify(s.appProbes);
  const appContainers = s.appContainers.join(',');
  const init = initContainer(s);
  const proxy = proxyContainerWith(s, appProbes, appContainers);
  const volumes = cinchVolumes(s);
  const texts = new Map<object, string>([[init, compiled.init]]);
  if (compiled.proxy) {
    const [before, between, after] = compiled.proxy;
    texts.set(proxy, before + JSON.stringify(appProbes) + between + JSON.stringify(appContainers) + after);
  }
  for (let i = 0; i < volumes.length; i++) texts.set(volumes[i], compiled.volumes[i]);
  return { init, proxy, volumes, texts };
}

function compileTemplate(s: SidecarSettings): CompiledTemplate {
  const proxyText = JSON.stringify(proxyContainerWith(s, APP_PROBES_MARK, APP_CONTAINERS_MARK));
  const [before, rest, ...more] = proxyText.split(JSON.stringify(APP_PROBES_MARK));
  const [between, after, ...more2] = rest === undefined ? [] : rest.split(JSON.stringify(APP_CONTAINERS_MARK));
  const splitCleanly = rest !== undefined && after !== undefined && more.length === 0 && more2.length === 0;
  return {
    init: JSON.stringify(initContainer(s)),
    volumes: cinchVolumes(s).map((volume) => JSON.stringify(volume)),
    proxy: splitCleanly ? [before, between, after] : undefined,
  };
}

/** Requests default to limits when only the limit is given, as the API server would do. */
function resourceRequirements(r: ProxyResources): V1ResourceRequirements {
  const requests = { ...r.limits, ...r.requests };
  const limits = { ...r.limits };
  return {
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
    ...(Object.keys(requests).length > 0 ? { requests } : {}),
  };
}
