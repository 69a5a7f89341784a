// Kubernetes CSR API signer `cinch.dev/workload` (certificates.k8s.io/v1), leader-elected.
//
// What the signer documents, as the CSR API asks of a custom signer:
// - Trust distribution: the roots are in ConfigMap cinch-ca-root-cert (key root-cert.pem) in every
//   namespace but kube-public and kube-node-lease; status.certificate also ends with the root.
// - Permitted subjects: ServiceAccounts only. The certificate names `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`
//   of the requester (spec.username), never an identity taken from the CSR. A CSR may name no SAN or
//   only that ID; anything else fails with IdentityMismatch even when a human approved it.
// - Extensions and usages: the CA API's leaf profile whatever the request asks: empty subject, one
//   critical URI SAN, not a CA, digitalSignature (+keyEncipherment for RSA), serverAuth + clientAuth.
// - Lifetime: spec.expirationSeconds (Kubernetes 1.22+) clamped to the CA's maximum (24 h by default),
//   else the default (1 h); never past the issuing chain's expiry.
// - CA certificates: never issued.
// Auto-approval: a request from a ServiceAccount whose CSR's only SAN is that ServiceAccount's SPIFFE ID
// and whose usages are within {digital signature, key encipherment, server auth, client auth}. Anything
// else waits for a human (`kubectl certificate approve`), and is then signed or marked Failed.
import { CertificatesV1Api, type KubeConfig, type V1CertificateSigningRequest, type V1CertificateSigningRequestCondition } from '@kubernetes/client-node';
import { Counter, type Registry } from 'prom-client';
import { checkCsr } from '../ca/csr.ts';
import type { CheckedCsr } from '../ca/csr.ts';
import { CaError, type CaErrorCode } from '../ca/errors.ts';
import { FastLeafSigner } from '../ca/fast-signer.ts';
import type { CaMaterial } from '../ca/material.ts';
import type { TtlPolicy } from '../ca/profile.ts';
import { SpiffeIdError, formatWorkloadId } from '../identity/spiffe.ts';
import { runInformer, type RunningInformer } from '../kube/informer.ts';
import type { Logger } from '../telemetry/logger.ts';
import { WorkQueue, type WorkQueueOptions } from './trust-bundle.ts';

export const CINCH_SIGNER_NAME = 'cinch.dev/workload';
/** Usages a request may ask for and still be approved automatically (the leaf profile covers them). */
export const AUTO_APPROVE_USAGES: readonly string[] = ['digital signature', 'key encipherment', 'server auth', 'client auth'];

const SA_PREFIX = 'system:serviceaccount:';
const SA_GROUP = 'system:serviceaccounts';

/** The Failed condition's reason for each CSR refusal (ca_expired is not one: it is retried, not failed). */
export const FAILED_REASONS: Readonly<Record<Exclude<CaErrorCode, 'ca_expired'>, string>> = {
  bad_csr: 'InvalidRequest',
  csr_too_large: 'InvalidRequest',
  weak_key: 'WeakKey',
  identity_mismatch: 'IdentityMismatch',
  bad_ttl: 'InvalidExpiration',
  bad_identity: 'InvalidIdentity',
};

export type CsrDecision =
  /** Nothing to do: another signer's, already issued, denied or failed. */
  | { readonly action: 'skip'; readonly why: string }
  /** Left pending for a human; no condition is written. */
  | { readonly action: 'wait'; readonly why: string }
  /** Approve it ourselves, then sign. */
  | { readonly action: 'approve'; readonly spiffeId: string; readonly csr: CheckedCsr }
  /** Approved (by us or a human): sign. */
  | { readonly action: 'sign'; readonly spiffeId: string; readonly csr: CheckedCsr }
  /** Approved but impossible to sign: set a Failed condition. */
  | { readonly action: 'fail'; readonly reason: string; readonly message: string };

/** The ServiceAccount behind `system:serviceaccount:<ns>:<sa>`, when the groups agree. */
export function serviceAccountOf(username: string | undefined, groups: readonly string[] | undefined): { namespace: string; name: string } | undefined {
  if (!username?.startsWith(SA_PREFIX) || !(groups ?? []).includes(SA_GROUP)) return undefined;
  const parts = username.slice(SA_PREFIX.length).split(':');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  return { namespace: parts[0], name: parts[1] };
}

function hasCondition(csr: V1CertificateSigningRequest, type: string): boolean {
  return (csr.status?.conditions ?? []).some((c) => c.type === type && c.status === 'True');
}

/** spec.request is base64 in JSON (the API's `[]byte`); client-node leaves it so. */
function requestPem(csr: V1CertificateSigningRequest): string {
  return Buffer.from(csr.spec?.request ?? '', 'base64').toString('utf8');
}

/** The decision table: pure, given the object and the trust domain. */
export function decideCsr(csr: V1CertificateSigningRequest, trustDomain: string): CsrDecision {
  if (csr.spec?.signerName !== CINCH_SIGNER_NAME) return { action: 'skip', why: `signer is ${csr.spec?.signerName ?? '(none)'}` };
  if (csr.status?.certificate) return { action: 'skip', why: 'already issued' };
  if (hasCondition(csr, 'Denied')) return { action: 'skip', why: 'denied' };
  if (hasCondition(csr, 'Failed')) return { action: 'skip', why: 'failed' };
  const approved = hasCondition(csr, 'Approved');
  const refuse = (reason: string, message: string): CsrDecision => (approved ? { action: 'fail', reason, message } : { action: 'wait', why: message });

  const sa = serviceAccountOf(csr.spec.username, csr.spec.groups);
  if (!sa) return refuse('NotServiceAccount', `requester ${JSON.stringify(csr.spec.username ?? '')} is not a ServiceAccount; ${CINCH_SIGNER_NAME} issues ServiceAccount identities only`);
  let spiffeId: string;
  try {
    spiffeId = formatWorkloadId({ trustDomain, namespace: sa.namespace, serviceAccount: sa.name });
  } catch (err) {
    if (err instanceof SpiffeIdError) return refuse(FAILED_REASONS.bad_identity, err.message);
    throw err;
  }
  let checked: CheckedCsr;
  try {
    checked = checkCsr(requestPem(csr), spiffeId);
  } catch (err) {
    if (err instanceof CaError && err.code !== 'ca_expired') return refuse(FAILED_REASONS[err.code], err.message);
    throw err;
  }
  if (approved) return { action: 'sign', spiffeId, csr: checked };

  if (checked.sans.length !== 1) return { action: 'wait', why: `the CSR names no SAN; auto-approval needs exactly the requester's SPIFFE ID ${spiffeId}` };
  const usages = csr.spec.usages ?? [];
  const extra = usages.filter((u) => !AUTO_APPROVE_USAGES.includes(u));
  if (usages.length === 0 || extra.length > 0) {
    return { action: 'wait', why: `usages ${JSON.stringify(usages)} are not within ${AUTO_APPROVE_USAGES.join(', ')}` };
  }
  return { action: 'approve', spiffeId, csr: checked };
}

function condition(type: 'Approved' | 'Failed', reason: string, message: string): V1CertificateSigningRequestCondition {
  const now = new Date();
  return { type, status: 'True', reason, message, lastUpdateTime: now, lastTransitionTime: now };
}

export interface CsrSignerOptions {
  trustDomain: string;
  /** The CA API's TTL policy (--default-cert-ttl, --max-cert-ttl). */
  ttl?: TtlPolicy;
  logger: Logger;
  registry?: Registry;
  queue?: WorkQueueOptions;
}

interface Running {
  informer: RunningInformer<V1CertificateSigningRequest>;
  queue: WorkQueue;
}

export class CsrSigner {
  readonly #kc: KubeConfig;
  readonly #api: CertificatesV1Api;
  readonly #opts: CsrSignerOptions;
  readonly #outcomes?: Counter<'outcome'>;
  #signer: FastLeafSigner | undefined;
  #running: Running | undefined;
  /** CSRs whose "waits for a human" was logged, so a resync does not repeat it. */
  readonly #toldWaiting = new Set<string>();

  constructor(kc: KubeConfig, opts: CsrSignerOptions) {
    this.#kc = kc;
    this.#api = kc.makeApiClient(CertificatesV1Api);
    this.#opts = opts;
    if (opts.registry) {
      this.#outcomes = new Counter({
        name: 'cinch_csr_signer_requests_total',
        help: `CertificateSigningRequests for ${CINCH_SIGNER_NAME} by outcome (approved, issued, failed, pending).`,
        labelNames: ['outcome'],
        registers: [opts.registry],
      });
    }
  }

  /** Starts watching and signing with `material`; resolves once the CSR cache is filled. */
  async start(material: CaMaterial): Promise<void> {
    this.setMaterial(material);
    if (this.#running) return;
    const log = this.#opts.logger;
    const queue = new WorkQueue((name) => this.#process(name), {
      concurrency: 4,
      ...this.#opts.queue,
      onError: (name, err, retryInMs) => log.warn('could not process CertificateSigningRequest; retrying', { csr: name, retryInMs, err }),
    });
    const enqueue = (csr: V1CertificateSigningRequest) => {
      if (csr.metadata?.name && csr.spec?.signerName === CINCH_SIGNER_NAME) queue.add(csr.metadata.name);
    };
    // The API server filters by signer (spec.signerName is a CSR field selector since 1.18); the check in
    // decideCsr keeps us right if it ever did not. runInformer takes no field selector, so it rides in the path.
    const fieldSelector = `spec.signerName=${CINCH_SIGNER_NAME}`;
    const informer = runInformer<V1CertificateSigningRequest>(
      this.#kc,
      `/apis/certificates.k8s.io/v1/certificatesigningrequests?fieldSelector=${encodeURIComponent(fieldSelector)}`,
      () => this.#api.listCertificateSigningRequest({ fieldSelector }),
      { add: enqueue, update: enqueue, delete: (csr) => this.#toldWaiting.delete(csr.metadata?.name ?? '') },
      log,
    );
    const running: Running = { informer, queue };
    this.#running = running;
    await informer.synced;
    if (this.#running === running) log.info('CSR signer started', { signerName: CINCH_SIGNER_NAME, requests: informer.list().length });
  }

  /** New CA material (reload, rotation): later signatures use it. */
  setMaterial(material: CaMaterial): void {
    this.#signer = new FastLeafSigner(material, { ttl: this.#opts.ttl });
  }

  async stop(): Promise<void> {
    const running = this.#running;
    if (!running) return;
    this.#running = undefined;
    await Promise.all([running.informer.stop(), running.queue.stop()]);
  }

  /** Resolves when no request is queued or being processed (for tests). */
  async idle(): Promise<void> {
    await this.#running?.queue.idle();
  }

  async #process(name: string): Promise<void> {
    const csr = this.#running?.informer.get(name);
    if (!csr) return;
    const decision = decideCsr(csr, this.#opts.trustDomain);
    const log = this.#opts.logger;
    switch (decision.action) {
      case 'skip':
        return;
      case 'wait':
        if (!this.#toldWaiting.has(name)) {
          this.#toldWaiting.add(name);
          this.#outcomes?.inc({ outcome: 'pending' });
          log.info('CertificateSigningRequest left for a human to approve or deny', { csr: name, requester: csr.spec.username, why: decision.why });
        }
        return;
      case 'fail':
        return this.#fail(csr, decision.reason, decision.message);
      case 'approve': {
        const message = `${decision.spiffeId} requested by its own ServiceAccount, with usages within the workload profile`;
        const body: V1CertificateSigningRequest = { ...csr, status: { ...csr.status, conditions: [...(csr.status?.conditions ?? []), condition('Approved', 'AutoApproved', message)] } };
        const approved = await this.#api.replaceCertificateSigningRequestApproval({ name, body });
        this.#outcomes?.inc({ outcome: 'approved' });
        log.info('CertificateSigningRequest approved', { csr: name, identity: decision.spiffeId });
        return this.#sign(approved, decision.spiffeId, decision.csr);
      }
      case 'sign':
        return this.#sign(csr, decision.spiffeId, decision.csr);
    }
  }

  async #sign(csr: V1CertificateSigningRequest, spiffeId: string, checked: CheckedCsr): Promise<void> {
    const signer = this.#signer;
    if (!signer) throw new Error('no CA material yet');
    const name = csr.metadata!.name!;
    let leaf;
    try {
      leaf = signer.sign({ csr: checked, spiffeId, ttlSeconds: csr.spec.expirationSeconds, overMaxTtl: 'clamp' });
    } catch (err) {
      // An expired CA is an outage to fix, not the request's fault: retry (with backoff) instead of failing it.
      if (err instanceof CaError && err.code !== 'ca_expired') return this.#fail(csr, FAILED_REASONS[err.code], err.message);
      throw err;
    }
    const body: V1CertificateSigningRequest = { ...csr, status: { ...csr.status, certificate: Buffer.from(leaf.certChain.join('')).toString('base64') } };
    // The resourceVersion in the body makes a concurrent writer's change (another leader, a human) a 409,
    // retried against the newer object, so a certificate is never written twice.
    await this.#api.replaceCertificateSigningRequestStatus({ name, body });
    this.#outcomes?.inc({ outcome: 'issued' });
    this.#opts.logger.info('CertificateSigningRequest signed', { csr: name, identity: spiffeId, serial: leaf.serialNumber, notAfter: leaf.notAfter.toISOString() });
  }

  async #fail(csr: V1CertificateSigningRequest, reason: string, message: string): Promise<void> {
    const name = csr.metadata!.name!;
    const body: V1CertificateSigningRequest = { ...csr, status: { ...csr.status, conditions: [...(csr.status?.conditions ?? []), condition('Failed', reason, message)] } };
    await this.#api.replaceCertificateSigningRequestStatus({ name, body });
    this.#outcomes?.inc({ outcome: 'failed' });
    this.#opts.logger.warn('CertificateSigningRequest failed', { csr: name, requester: csr.spec.username, reason, message });
  }
}
