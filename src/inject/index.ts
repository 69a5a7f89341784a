// The injection core's public face: the webhook and `cinch inject` import from here.
export { shouldInject, INJECTION_REASONS, type InjectionDecision, type InjectionReason, type NamespaceInfo } from './decision.ts';
export { injectPod, type InjectionContext, type InjectionResult } from './inject.ts';
export {
  parseInjectionConfig,
  DEFAULT_INJECTION_CONFIG,
  CONFIG_KEY,
  MIN_TOKEN_EXPIRATION_SECONDS,
  type InjectionConfig,
  type NativeSidecarMode,
  type ImagePullPolicy,
  type ProxyResources,
  type ResourceList,
} from './config.ts';
export { parseOverrides, type PodOverrides } from './annotations.ts';
export { InjectionError, InjectionConfigError, type InjectionErrorCode } from './errors.ts';
export { parseStatus, type InjectionStatus } from './status.ts';
export type { AppProbe, AppProbes } from './probes.ts';
export { escapePointer } from './patch.ts';
export * from './names.ts';
export { injectManifest, type ManifestResult } from './manifests.ts';
