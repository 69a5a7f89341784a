// Injection config: what the control plane's ConfigMap says about the sidecar template.
//
// ConfigMap layout: one key, `config.yaml`, holding a YAML mapping (every field optional, unknown
// fields refused so a typo is reported instead of silently ignored):
//
//   proxyImage: cinch:0.1.0
//   imagePullPolicy: IfNotPresent          # Always | IfNotPresent | Never
//   resources:
//     requests: { cpu: 100m, memory: 128Mi }
//     limits: { cpu: "2", memory: 1Gi }
//   caAddress: cinch.cinch-system.svc:15012
//   trustDomain: cluster.local
//   nativeSidecar: auto                    # auto | true | false
//   tokenExpirationSeconds: 3600           # projected token for the CA, >= 600
//   logLevel: info                         # error | warn | info | debug
//   rewriteProbes: true
//
// One YAML key rather than flat keys because resources nest, and a single document can be
// validated (and reported on) as a whole.
import { parse as parseYaml } from 'yaml';
import { InjectionConfigError } from './errors.ts';
import { parseImage, parseLogLevel, parseQuantity, type LogLevel } from './values.ts';

export const CONFIG_KEY = 'config.yaml';

export type NativeSidecarMode = 'auto' | 'true' | 'false';
export type ImagePullPolicy = 'Always' | 'IfNotPresent' | 'Never';

export interface ResourceList {
  cpu?: string;
  memory?: string;
}

export interface ProxyResources {
  requests: ResourceList;
  limits: ResourceList;
}

export interface InjectionConfig {
  proxyImage: string;
  imagePullPolicy: ImagePullPolicy;
  resources: ProxyResources;
  caAddress: string;
  trustDomain: string;
  /** `auto`: native sidecar when the cluster supports it (the webhook's nativeSidecarSupported). */
  nativeSidecar: NativeSidecarMode;
  tokenExpirationSeconds: number;
  logLevel: LogLevel;
  rewriteProbes: boolean;
}

/** The kubelet and API server refuse projected tokens that live less than 10 minutes. */
export const MIN_TOKEN_EXPIRATION_SECONDS = 600;

export const DEFAULT_INJECTION_CONFIG: Readonly<InjectionConfig> = Object.freeze({
  proxyImage: 'cinch:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  // Istio's defaults: enough for a few hundred rps, limits that stop a runaway proxy starving the app.
  resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
  caAddress: 'cinch.cinch-system.svc:15012',
  trustDomain: 'cluster.local',
  nativeSidecar: 'auto',
  // Short-lived (the token is only shown to the CA); 3600 rather than 3607, which API servers silently extend to a year.
  tokenExpirationSeconds: 3600,
  logLevel: 'info',
  rewriteProbes: true,
});

const FIELDS = ['proxyImage', 'imagePullPolicy', 'resources', 'caAddress', 'trustDomain', 'nativeSidecar', 'tokenExpirationSeconds', 'logLevel', 'rewriteProbes'];

/** Parse a ConfigMap's `data`. Throws InjectionConfigError naming the field; never returns a half-valid config. */
export function parseInjectionConfig(data: Readonly<Record<string, string>> | undefined): InjectionConfig {
  const text = data?.[CONFIG_KEY];
  if (text === undefined) throw new InjectionConfigError(CONFIG_KEY, 'missing key in the ConfigMap data');
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new InjectionConfigError(CONFIG_KEY, `invalid YAML: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (doc === null || doc === undefined) return { ...DEFAULT_INJECTION_CONFIG, resources: copyResources(DEFAULT_INJECTION_CONFIG.resources) };
  const raw = asMapping(doc, CONFIG_KEY);
  for (const key of Object.keys(raw)) {
    if (!FIELDS.includes(key)) throw new InjectionConfigError(key, `unknown field (expected one of ${FIELDS.join(', ')})`);
  }
  const d = DEFAULT_INJECTION_CONFIG;
  const config: InjectionConfig = {
    proxyImage: optional(raw, 'proxyImage', d.proxyImage, (v, f) => checked(parseImage(str(v, f)), f)),
    imagePullPolicy: optional(raw, 'imagePullPolicy', d.imagePullPolicy, (v, f) => oneOf(str(v, f), ['Always', 'IfNotPresent', 'Never'] as const, f)),
    resources: raw.resources === undefined ? copyResources(d.resources) : parseResources(raw.resources),
    caAddress: optional(raw, 'caAddress', d.caAddress, (v, f) => parseHostPort(str(v, f), f)),
    trustDomain: optional(raw, 'trustDomain', d.trustDomain, (v, f) => parseTrustDomain(str(v, f), f)),
    // YAML reads `true` as a boolean; accept it as well as the string.
    nativeSidecar: optional(raw, 'nativeSidecar', d.nativeSidecar, (v, f) => oneOf(typeof v === 'boolean' ? String(v) : str(v, f), ['auto', 'true', 'false'] as const, f)),
    tokenExpirationSeconds: optional(raw, 'tokenExpirationSeconds', d.tokenExpirationSeconds, (v, f) => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new InjectionConfigError(f, 'expected a whole number of seconds');
      if (v < MIN_TOKEN_EXPIRATION_SECONDS) throw new InjectionConfigError(f, `must be at least ${MIN_TOKEN_EXPIRATION_SECONDS}`);
      return v;
    }),
    logLevel: optional(raw, 'logLevel', d.logLevel, (v, f) => checked(parseLogLevel(str(v, f)), f)),
    rewriteProbes: optional(raw, 'rewriteProbes', d.rewriteProbes, (v, f) => {
      if (typeof v !== 'boolean') throw new InjectionConfigError(f, 'expected true or false');
      return v;
    }),
  };
  return config;
}

/** Check requests <= limits; shared with the per-pod annotations. Returns the first offending resource name. */
export function requestAboveLimit(resources: ProxyResources): 'cpu' | 'memory' | undefined {
  for (const name of ['cpu', 'memory'] as const) {
    const request = resources.requests[name];
    const limit = resources.limits[name];
    if (request === undefined || limit === undefined) continue;
    const r = parseQuantity(request);
    const l = parseQuantity(limit);
    if (r.ok && l.ok && r.value > l.value) return name;
  }
  return undefined;
}

function parseResources(value: unknown): ProxyResources {
  const raw = asMapping(value, 'resources');
  const resources: ProxyResources = { requests: {}, limits: {} };
  for (const key of Object.keys(raw)) {
    if (key !== 'requests' && key !== 'limits') throw new InjectionConfigError(`resources.${key}`, 'unknown field (expected requests, limits)');
    const list = asMapping(raw[key], `resources.${key}`);
    for (const [name, quantity] of Object.entries(list)) {
      const field = `resources.${key}.${name}`;
      if (name !== 'cpu' && name !== 'memory') throw new InjectionConfigError(field, 'unknown resource (expected cpu, memory)');
      // YAML reads `cpu: 2` as a number; Kubernetes accepts both.
      const text = typeof quantity === 'number' ? String(quantity) : str(quantity, field);
      checked(parseQuantity(text), field);
      resources[key][name] = text;
    }
  }
  const bad = requestAboveLimit(resources);
  if (bad) throw new InjectionConfigError(`resources.requests.${bad}`, `request ${resources.requests[bad]} is above the limit ${resources.limits[bad]}`);
  return resources;
}

function copyResources(r: ProxyResources): ProxyResources {
  return { requests: { ...r.requests }, limits: { ...r.limits } };
}

function parseHostPort(text: string, field: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : 0;
  if (!match || port < 1 || port > 65535) throw new InjectionConfigError(field, `"${text}" is not host:port (e.g. cinch.cinch-system.svc:15012)`);
  return text;
}

/** SPIFFE trust domain: lowercase letters, digits, dots, dashes and underscores. */
function parseTrustDomain(text: string, field: string): string {
  if (!/^[a-z0-9._-]{1,255}$/.test(text)) throw new InjectionConfigError(field, `"${text}" is not a SPIFFE trust domain (lowercase letters, digits, ".", "-", "_")`);
  return text;
}

// --- helpers: each names the field it complains about ---

function optional<K extends keyof InjectionConfig>(
  raw: Record<string, unknown>,
  field: K,
  fallback: InjectionConfig[K],
  parse: (value: unknown, field: string) => InjectionConfig[K],
): InjectionConfig[K] {
  const value = raw[field];
  return value === undefined || value === null ? fallback : parse(value, field);
}

function asMapping(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InjectionConfigError(field, 'expected a mapping');
  return value as Record<string, unknown>;
}

function str(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new InjectionConfigError(field, 'expected a string');
  return value;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], field: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new InjectionConfigError(field, `"${value}" is not one of ${allowed.join(', ')}`);
  return value as T;
}

function checked<T>(parsed: { ok: true; value: T } | { ok: false; reason: string }, field: string): T {
  if (!parsed.ok) throw new InjectionConfigError(field, parsed.reason);
  return parsed.value;
}
