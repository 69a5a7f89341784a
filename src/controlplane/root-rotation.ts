// `cinch ca rotate` against a cluster: reads Secret cinch-ca, checks the phase's precondition (the trust
// bundle's distribution from fresh lists, the waiting periods from the state annotation), and writes
// the next Secret with its resourceVersion, so two concurrent runs cannot both apply a phase.
import { X509Certificate } from 'node:crypto';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { createRootCa } from '../ca/create.ts';
import { CA_CERT_FILE, ROOT_CERT_FILE, loadCaMaterial, type CaFiles } from '../ca/material.ts';
import {
  DEFAULT_GRACE_SECONDS,
  ROTATION_ANNOTATION,
  RotationError,
  addRoot,
  checkPrecondition,
  dropOldRoots,
  formatRotationState,
  nextPhase,
  parseRotationState,
  rootsOf,
  switchSigning,
  trustDomainOf,
  type BundleCheck,
  type PhaseResult,
  type RotationPhase,
  type RotationState,
} from '../ca/rotation.ts';
import { decodePem } from '../ca/pem.ts';
import { CA_SECRET, decodeSecretData } from './ca-store.ts';
import { checkTrustBundleDistribution } from './trust-bundle.ts';

export interface RotateOptions {
  namespace: string;
  phase: RotationPhase | 'auto';
  dryRun?: boolean;
  /** New CA material in the cacerts layout (a plugged-in root + intermediate); else a self-signed root is made. */
  next?: CaFiles;
  /** For a generated root's subject; default: the current root's O=, else cluster.local. */
  trustDomain?: string;
  /** Recorded at add; later phases use the larger of the recorded and this one. */
  maxCertTtlSeconds?: number;
  graceSeconds?: number;
  now?: () => Date;
  /** Secret name (tests). */
  secretName?: string;
}

export type StepOutcome = 'applied' | 'would-apply' | 'done' | 'blocked';

export interface RotateStep {
  readonly phase: RotationPhase;
  readonly outcome: StepOutcome;
  readonly message: string;
  readonly readyAt?: Date;
}

export interface RotateReport {
  readonly steps: RotateStep[];
  readonly state: RotationState | undefined;
  /** Roots in root-cert.pem after the run (fingerprint prefix, subject, expiry). */
  readonly roots: { fingerprint: string; subject: string; notAfter: string }[];
  /** True when nothing could be done because a precondition is not met. */
  readonly blocked: boolean;
}

export const DEFAULT_MAX_CERT_TTL_SECONDS = 86_400;

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

export async function rotateRoot(kc: KubeConfig, opts: RotateOptions): Promise<RotateReport> {
  const core = kc.makeApiClient(CoreV1Api);
  const name = opts.secretName ?? CA_SECRET;
  const now = opts.now ?? (() => new Date());
  let secret: V1Secret;
  try {
    secret = await core.readNamespacedSecret({ name, namespace: opts.namespace });
  } catch (err) {
    if (statusCode(err) === 404) throw new RotationError(`Secret ${opts.namespace}/${name} not found: the control plane creates it on first start (or pass --namespace)`);
    throw err;
  }
  let data = decodeSecretData(secret);
  let state = parseRotationState(secret.metadata?.annotations?.[ROTATION_ANNOTATION]);
  const steps: RotateStep[] = [];
  let phase: RotationPhase | undefined = opts.phase === 'auto' ? nextPhase(state) : opts.phase;
  if (!phase) {
    steps.push({ phase: 'drop', outcome: 'done', message: `the last rotation completed at ${state?.droppedAt}; start another with --phase add` });
  }

  while (phase) {
    const bundle: BundleCheck | undefined = phase === 'switch' && state?.phase === 'added' ? await checkTrustBundleDistribution(kc, [data[ROOT_CERT_FILE]]) : undefined;
    const effective = state && opts.maxCertTtlSeconds && opts.maxCertTtlSeconds > state.maxCertTtlSeconds ? { ...state, maxCertTtlSeconds: opts.maxCertTtlSeconds } : state;
    const pre = checkPrecondition(phase, { state: effective, now: now(), bundle });
    if (pre.status !== 'ready') {
      steps.push({ phase, outcome: pre.status, message: pre.message, readyAt: pre.status === 'blocked' ? pre.readyAt : undefined });
      break;
    }
    const result: PhaseResult = await applyPhase(phase, data, effective, now(), opts);
    if (opts.dryRun) {
      steps.push({ phase, outcome: 'would-apply', message: result.summary });
      break;
    }
    secret = await writeSecret(core, secret, result);
    data = result.data;
    state = result.state;
    steps.push({ phase, outcome: 'applied', message: result.summary });
    phase = opts.phase === 'auto' ? nextPhase(state) : undefined;
  }

  const last = steps[steps.length - 1];
  return {
    steps,
    state,
    roots: rootSummary(data[ROOT_CERT_FILE]),
    blocked: last?.outcome === 'blocked' && !steps.some((s) => s.outcome === 'applied'),
  };
}

async function applyPhase(phase: RotationPhase, data: Record<string, string>, state: RotationState | undefined, now: Date, opts: RotateOptions): Promise<PhaseResult> {
  switch (phase) {
    case 'add': {
      const next = opts.next ?? (await generateRoot(data, opts.trustDomain));
      return addRoot(data, next, { now, maxCertTtlSeconds: opts.maxCertTtlSeconds ?? DEFAULT_MAX_CERT_TTL_SECONDS, graceSeconds: opts.graceSeconds ?? DEFAULT_GRACE_SECONDS });
    }
    case 'switch':
      return switchSigning(data, state!, now);
    case 'drop':
      return dropOldRoots(data, state!, now);
  }
}

/** A new self-signed root in the layout the control plane creates; refused for a plugged-in intermediate. */
async function generateRoot(data: Record<string, string>, trustDomain: string | undefined): Promise<CaFiles> {
  const current = loadCaMaterial(data);
  if (current.chain.length > 1) {
    throw new RotationError(
      'the CA signs with an intermediate (a plugged-in CA), whose root key is not in the cluster: create the new root and intermediate with `cinch ca init --intermediate --dir certs-next` and pass --from-dir certs-next',
    );
  }
  const created = await createRootCa({ trustDomain: trustDomain ?? trustDomainOf(data[CA_CERT_FILE]) ?? 'cluster.local', keyType: current.keyType });
  return created.files;
}

async function writeSecret(core: CoreV1Api, secret: V1Secret, result: PhaseResult): Promise<V1Secret> {
  const body: V1Secret = {
    ...secret,
    metadata: { ...secret.metadata, annotations: { ...(secret.metadata?.annotations ?? {}), [ROTATION_ANNOTATION]: formatRotationState(result.state) } },
    data: Object.fromEntries(Object.entries(result.data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
  delete body.stringData;
  try {
    return await core.replaceNamespacedSecret({ name: secret.metadata!.name!, namespace: secret.metadata!.namespace!, body });
  } catch (err) {
    if (statusCode(err) === 409) throw new RotationError('Secret cinch-ca changed while rotating (another `cinch ca rotate`?); nothing was written by this step: run again');
    throw err;
  }
}

function rootSummary(rootCertPem: string): RotateReport['roots'] {
  const blocks = decodePem(rootCertPem);
  return rootsOf(rootCertPem).map((fp, i) => {
    const cert = new X509Certificate(blocks[i].der);
    return { fingerprint: fp, subject: cert.subject.replace(/\n/g, ', '), notAfter: cert.validToDate.toISOString() };
  });
}
