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
  const healthGet = () => ({ path: HEALTH_PATH, port: HEALTH_PORT, scheme: 'HTTP' });
  const container: V1Container = {
    name: PROXY_CONTAINER_NAME,
    image: s.image,
    imagePullPolicy: s.imagePullPolicy,
    args: ['proxy'],
    env: proxyEnv(s),
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

function proxyEnv(s: SidecarSettings): V1EnvVar[] {
  const field = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });
  return [
    field(PROXY_ENV.podName, 'metadata.name'),
    field(PROXY_ENV.podNamespace, 'metadata.namespace'),
    field(PROXY_ENV.instanceIp, 'status.podIP'),
    field(PROXY_ENV.serviceAccount, 'spec.serviceAccountName'),
    { name: PROXY_ENV.caAddress, value: s.caAddress },
    { name: PROXY_ENV.trustDomain, value: s.trustDomain },
    { name: PROXY_ENV.logLevel, value: s.logLevel },
    { name: PROXY_ENV.appProbes, value: JSON.stringify(s.appProbes) },
    { name: PROXY_ENV.appContainers, value: s.appContainers.join(',') },
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

/** Requests default to limits when only the limit is given, as the API server would do. */
function resourceRequirements(r: ProxyResources): V1ResourceRequirements {
  const requests = { ...r.limits, ...r.requests };
  const limits = { ...r.limits };
  return {
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
    ...(Object.keys(requests).length > 0 ? { requests } : {}),
  };
}
