// Everything a proxy enforces for its workload, compiled once: the resolved PeerAuthentication
// and the applicable AuthorizationPolicies. `evaluate` is what runs per connection or request,
// and what `cinch authz check` runs offline, so both decide the same way.
import { compileAuthorization, type CompiledAuthorization } from './authorization.ts';
import { modeAndPolicyForPort, resolvePeerAuthentication, type ResolvedPeerAuthentication } from './peer-authentication.ts';
import { selectAuthorizationPolicies } from './select.ts';
import type { AuthorizationPolicy, AuthzDecision, AuthzInput, PeerAuthentication, PolicyOptions, Workload } from './types.ts';

export interface WorkloadPolicy {
  workload: Workload;
  peerAuthentication: ResolvedPeerAuthentication;
  authorization: CompiledAuthorization;
  /** PeerAuthentication first (plaintext on a STRICT port is refused), then AuthorizationPolicy. */
  evaluate(input: AuthzInput): AuthzDecision;
}

export interface WorkloadPolicyInput {
  peerAuthentications: readonly PeerAuthentication[];
  authorizationPolicies: readonly AuthorizationPolicy[];
}

export function compileWorkloadPolicy(policies: WorkloadPolicyInput, workload: Workload, options: PolicyOptions = {}): WorkloadPolicy {
  const peerAuthentication = resolvePeerAuthentication(policies.peerAuthentications, workload, options);
  const authorization = compileAuthorization(selectAuthorizationPolicies(policies.authorizationPolicies, workload, options));
  const evaluate = (input: AuthzInput): AuthzDecision => {
    const { mode, policy } = modeAndPolicyForPort(peerAuthentication, input.destinationPort);
    const plaintext = input.sourcePrincipal === undefined || input.sourcePrincipal === '';
    if (mode === 'STRICT' && plaintext) {
      return {
        decision: 'DENY',
        policy,
        reason: `plaintext connection refused: PeerAuthentication ${policy ?? '(unknown)'} requires mTLS (STRICT) on port ${input.destinationPort}`,
        audited: [],
        dryRun: [],
      };
    }
    if (mode === 'DISABLE' && !plaintext) {
      // With mTLS disabled the proxy does not terminate TLS, so no peer identity reaches the policy.
      const decision = authorization.evaluate({ ...input, sourcePrincipal: undefined });
      return { ...decision, reason: `${decision.reason} (mTLS is disabled on port ${input.destinationPort} by PeerAuthentication ${policy ?? '(unknown)'}, so the source has no principal)` };
    }
    return authorization.evaluate(input);
  };
  return { workload, peerAuthentication, authorization, evaluate };
}
