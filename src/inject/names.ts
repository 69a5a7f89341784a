// The contract between the injector, the proxy (`cinch proxy`) and the init container (`cinch init`):
// names, ports, mount paths, environment variables and flags. The proxy and init commands import
// these constants so the template and the code that reads it cannot drift apart.

// --- Labels and annotations (DESIGN "Names") ---

export const INJECT_LABEL = 'cinch.dev/inject';
export const INJECT_ENABLED = 'enabled';
export const INJECT_DISABLED = 'disabled';

/** JSON record of what injection added (see InjectionStatus); its presence marks an injected pod. */
export const STATUS_ANNOTATION = 'cinch.dev/status';

/**
 * Added to every injected pod so that outbound proxies (and `cinch check`) can tell a meshed
 * endpoint from a plaintext one by its labels, as Istio's `security.istio.io/tlsMode` does.
 * A label rather than an annotation because label selectors and EndpointSlice watches can see it.
 */
export const TLS_MODE_LABEL = 'security.cinch.dev/tls-mode';
export const TLS_MODE_VALUE = 'cinch';

export const ANNOTATION = {
  proxyImage: 'cinch.dev/proxy-image',
  proxyCpu: 'cinch.dev/proxy-cpu',
  proxyMemory: 'cinch.dev/proxy-memory',
  proxyCpuLimit: 'cinch.dev/proxy-cpu-limit',
  proxyMemoryLimit: 'cinch.dev/proxy-memory-limit',
  logLevel: 'cinch.dev/log-level',
  nativeSidecar: 'cinch.dev/native-sidecar',
  rewriteProbes: 'cinch.dev/rewrite-probes',
  includeInboundPorts: 'traffic.cinch.dev/include-inbound-ports',
  excludeInboundPorts: 'traffic.cinch.dev/exclude-inbound-ports',
  excludeOutboundPorts: 'traffic.cinch.dev/exclude-outbound-ports',
  includeOutboundCidrs: 'traffic.cinch.dev/include-outbound-cidrs',
  excludeOutboundCidrs: 'traffic.cinch.dev/exclude-outbound-cidrs',
} as const;

export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';
export const PROMETHEUS_SCRAPE_ANNOTATION = 'prometheus.io/scrape';
export const PROMETHEUS_PORT_ANNOTATION = 'prometheus.io/port';
export const PROMETHEUS_PATH_ANNOTATION = 'prometheus.io/path';

/** Namespaces that are never injected, whatever their labels say. */
export const SYSTEM_NAMESPACES: ReadonlySet<string> = new Set(['kube-system', 'kube-public', 'kube-node-lease']);

// --- Containers and volumes ---

export const INIT_CONTAINER_NAME = 'cinch-init';
export const PROXY_CONTAINER_NAME = 'cinch-proxy';
export const CINCH_CONTAINER_NAMES: ReadonlySet<string> = new Set([INIT_CONTAINER_NAME, PROXY_CONTAINER_NAME]);

export const VOLUME = {
  token: 'cinch-token',
  caRoot: 'cinch-ca-root',
  credentials: 'cinch-credentials',
  podinfo: 'cinch-podinfo',
} as const;
export const CINCH_VOLUME_NAMES: ReadonlySet<string> = new Set(Object.values(VOLUME));

/** ConfigMap with the trust bundle, present in every meshed namespace (DESIGN "Names"). */
export const CA_ROOT_CONFIGMAP = 'cinch-ca-root-cert';
export const CA_ROOT_KEY = 'root-cert.pem';
export const TOKEN_AUDIENCE = 'cinch-ca';

// --- Where the proxy finds things (mount paths inside cinch-proxy) ---

export const MOUNT_PATH = {
  token: '/var/run/cinch/token',
  caRoot: '/var/run/cinch/ca-root',
  credentials: '/var/run/cinch/credentials',
  podinfo: '/var/run/cinch/podinfo',
} as const;

/** Projected ServiceAccount token, audience `cinch-ca`; the kubelet rewrites it before expiry, so re-read it per CSR. */
export const TOKEN_FILE = `${MOUNT_PATH.token}/token`;
/** Trust bundle PEM (may hold several roots). */
export const CA_ROOT_FILE = `${MOUNT_PATH.caRoot}/${CA_ROOT_KEY}`;
/** In-memory (tmpfs) directory, writable by the proxy only: private key and certificate chain never touch disk. */
export const CREDENTIALS_DIR = MOUNT_PATH.credentials;
/** Downward API files in Kubernetes' `key="value"` line format; updated by the kubelet when labels change. */
export const PODINFO_LABELS_FILE = `${MOUNT_PATH.podinfo}/labels`;
export const PODINFO_ANNOTATIONS_FILE = `${MOUNT_PATH.podinfo}/annotations`;

// --- Ports and ids (DESIGN "Ports") ---

export const PROXY_UID = 1337;
export const OUTBOUND_CAPTURE_PORT = 15001;
export const INBOUND_CAPTURE_PORT = 15006;
export const STATUS_PORT = 15020;
export const HEALTH_PORT = 15021;
export const HEALTH_PATH = '/healthz/ready';
export const STATS_PATH = '/stats/prometheus';
/** The proxy's own listeners that must stay reachable without interception (kubelet probes, Prometheus). */
export const ALWAYS_EXCLUDED_INBOUND_PORTS: readonly number[] = [STATUS_PORT, HEALTH_PORT];
/** Ports an app must not listen on, since the proxy owns them. */
export const RESERVED_PORTS: ReadonlySet<number> = new Set([OUTBOUND_CAPTURE_PORT, INBOUND_CAPTURE_PORT, STATUS_PORT, HEALTH_PORT]);

// --- Environment of cinch-proxy ---

export const PROXY_ENV = {
  podName: 'POD_NAME',
  podNamespace: 'POD_NAMESPACE',
  instanceIp: 'INSTANCE_IP',
  serviceAccount: 'SERVICE_ACCOUNT',
  caAddress: 'CINCH_CA_ADDRESS',
  trustDomain: 'CINCH_TRUST_DOMAIN',
  logLevel: 'CINCH_LOG_LEVEL',
  /** JSON AppProbes: rewritten path → original probe, ports resolved to numbers. */
  appProbes: 'CINCH_APP_PROBES',
  /** Comma-separated names of the app containers (every regular container but the proxy). */
  appContainers: 'CINCH_APP_CONTAINERS',
} as const;

// --- Flags of `cinch init` filled in by the template (always written `--flag=value`, so an empty list stays one argument) ---

export const INIT_FLAG = {
  /** `*` (all), empty (no inbound capture) or a comma-separated port list. */
  inboundPorts: '--inbound-ports',
  /** Comma-separated; always starts with 15020,15021. */
  excludeInboundPorts: '--exclude-inbound-ports',
  /** Comma-separated; omitted when empty. */
  excludeOutboundPorts: '--exclude-outbound-ports',
  /** `*` (all), empty (no outbound capture) or comma-separated CIDRs. */
  includeOutboundCidrs: '--include-outbound-cidrs',
  /** Comma-separated CIDRs; omitted when empty. */
  excludeOutboundCidrs: '--exclude-outbound-cidrs',
  proxyUid: '--proxy-uid',
  inboundPort: '--inbound-port',
  outboundPort: '--outbound-port',
} as const;

// --- Rewritten probes ---

export type ProbeKind = 'livenessProbe' | 'readinessProbe' | 'startupProbe';
export const PROBE_KINDS: readonly ProbeKind[] = ['livenessProbe', 'readinessProbe', 'startupProbe'];
const PROBE_SUFFIX: Record<ProbeKind, string> = { livenessProbe: 'livez', readinessProbe: 'readyz', startupProbe: 'startupz' };

/** Path on STATUS_PORT that the kubelet calls instead of the app's own probe. */
export function appHealthPath(container: string, kind: ProbeKind): string {
  return `/app-health/${container}/${PROBE_SUFFIX[kind]}`;
}
/** What the proxy's status server should accept (and nothing else), as in Istio's pilot-agent. */
export const APP_HEALTH_PATH_PATTERN = /^\/app-health\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/(livez|readyz|startupz)$/;
