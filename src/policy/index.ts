// The policy core's public surface, for the control plane, the proxy and the CLI.
// Everything here is pure except load.ts (file reading), which is exported separately.
export * from './types.ts';
export {
  validatePeerAuthentication,
  validateAuthorizationPolicy,
  buildPolicySet,
  isSecurityObject,
  policyRef,
  CUSTOM_UNSUPPORTED,
  type ValidationResult,
  type PolicySet,
  type PolicyProblem,
} from './validate.ts';
export { selectAuthorizationPolicies, authorizationPolicyApplies, selectorMatches } from './select.ts';
export {
  resolvePeerAuthentication,
  selectPeerAuthentications,
  modeForPort,
  modeAndPolicyForPort,
  type ResolvedPeerAuthentication,
  type EffectiveMtlsMode,
} from './peer-authentication.ts';
export { compileAuthorization, parseIdentity, type CompiledAuthorization } from './authorization.ts';
export { compileWorkloadPolicy, type WorkloadPolicy, type WorkloadPolicyInput } from './workload.ts';
export { parseAuthzRequest, requestToInput, checkRequest, type ParsedRequest } from './request.ts';
export { normalizePath } from './path.ts';
