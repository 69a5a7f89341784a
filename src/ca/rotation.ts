// Root rotation without restarting pods, as three phases over the data of Secret cinch-ca:
//   add    — root-cert.pem holds the old roots and the new one; the new signing material waits in
//            next-*.pem; signing continues with the old root.
//   switch — once every namespace's trust bundle holds both roots and every workload has renewed
//            since (one max certificate lifetime: proxies take peer roots from their CA responses),
//            the new material becomes ca-cert.pem/ca-key.pem/cert-chain.pem.
//   drop   — once every certificate signed by the old root has expired (one max lifetime after the
//            switch), the old roots leave root-cert.pem.
// The state (phase, timestamps, fingerprints, waiting periods) is a JSON annotation on the Secret, so
// every phase is idempotent and a run can stop anywhere and resume. Pure: data in, data out.
import { X509Certificate } from 'node:crypto';
import { CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE, loadCaMaterial } from './material.ts';
import type { CaFiles } from './material.ts';
import { decodePem, encodePem } from './pem.ts';

export const ROTATION_ANNOTATION = 'cinch.dev/root-rotation';
export const NEXT_CA_CERT_FILE = 'next-ca-cert.pem';
export const NEXT_CA_KEY_FILE = 'next-ca-key.pem';
export const NEXT_CERT_CHAIN_FILE = 'next-cert-chain.pem';
const NEXT_FILES = [NEXT_CA_CERT_FILE, NEXT_CA_KEY_FILE, NEXT_CERT_CHAIN_FILE] as const;

/** Time for every control-plane replica and kubelet to see a Secret or ConfigMap change. */
export const DEFAULT_GRACE_SECONDS = 300;

export type RotationPhase = 'add' | 'switch' | 'drop';
export const ROTATION_PHASES: readonly RotationPhase[] = ['add', 'switch', 'drop'];

export interface RotationState {
  readonly version: 1;
  /** The last phase completed. */
  readonly phase: 'added' | 'switched' | 'dropped';
  /** SHA-256 fingerprints (hex) of the roots being replaced, and of the new ones. */
  readonly oldRoots: readonly string[];
  readonly newRoots: readonly string[];
  /** The longest workload certificate lifetime: how long each waiting period lasts. */
  readonly maxCertTtlSeconds: number;
  readonly graceSeconds: number;
  readonly addedAt: string;
  readonly switchedAt?: string;
  readonly droppedAt?: string;
}

export class RotationError extends Error {
  override readonly name = 'RotationError';
}

/** Secret data, decoded: the four cacerts files plus, during a rotation, the next-*.pem files. */
export type SecretFiles = Readonly<Record<string, string>>;

export function fingerprint(der: Uint8Array): string {
  return new X509Certificate(der).fingerprint256.replace(/:/g, '').toLowerCase();
}

function certBlocks(pem: string, what: string): Buffer[] {
  const blocks = decodePem(pem);
  for (const b of blocks) if (b.label !== 'CERTIFICATE') throw new RotationError(`${what} holds a "${b.label}" block where only certificates belong`);
  return blocks.map((b) => b.der);
}

/** The fingerprints of the roots in a root-cert.pem, in file order. */
export function rootsOf(rootCertPem: string): string[] {
  return certBlocks(rootCertPem, ROOT_CERT_FILE).map(fingerprint);
}

export function parseRotationState(text: string | undefined): RotationState | undefined {
  if (text === undefined || text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new RotationError(`annotation ${ROTATION_ANNOTATION} is not JSON; fix or remove it`);
  }
  const s = value as Partial<RotationState> | null;
  const stringList = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  const time = (v: unknown) => v === undefined || (typeof v === 'string' && !Number.isNaN(Date.parse(v)));
  if (
    !s ||
    s.version !== 1 ||
    !['added', 'switched', 'dropped'].includes(s.phase as string) ||
    !stringList(s.oldRoots) ||
    !stringList(s.newRoots) ||
    !Number.isSafeInteger(s.maxCertTtlSeconds) ||
    !Number.isSafeInteger(s.graceSeconds) ||
    typeof s.addedAt !== 'string' ||
    ![s.addedAt, s.switchedAt, s.droppedAt].every(time) ||
    (s.phase !== 'added' && s.switchedAt === undefined) ||
    (s.phase === 'dropped' && s.droppedAt === undefined)
  ) {
    throw new RotationError(`annotation ${ROTATION_ANNOTATION} is not a rotation state this version understands: ${text.slice(0, 200)}`);
  }
  return s as RotationState;
}

export function formatRotationState(state: RotationState): string {
  return JSON.stringify(state);
}

/** The phase `auto` runs next: none when no rotation has begun (auto starts one) or after a completed one. */
export function nextPhase(state: RotationState | undefined): RotationPhase | undefined {
  if (!state) return 'add';
  return state.phase === 'added' ? 'switch' : state.phase === 'switched' ? 'drop' : undefined;
}

/** When the waiting period after the add (before switch) or after the switch (before drop) ends. */
export function readyAt(state: RotationState, phase: 'switch' | 'drop'): Date {
  const from = phase === 'switch' ? state.addedAt : state.switchedAt;
  if (!from) throw new RotationError(`rotation state has no ${phase === 'switch' ? 'addedAt' : 'switchedAt'}`);
  return new Date(Date.parse(from) + (state.maxCertTtlSeconds + state.graceSeconds) * 1000);
}

/** How far every namespace's trust bundle is: the controller's DistributionStatus, or a fresh list's. */
export interface BundleCheck {
  readonly complete: boolean;
  readonly missing: readonly string[];
  readonly stale: readonly string[];
}

export type Precondition =
  | { readonly status: 'ready' }
  /** Already done: running the phase again changes nothing. */
  | { readonly status: 'done'; readonly message: string }
  /** Not now: the message says what to do or wait for. */
  | { readonly status: 'blocked'; readonly message: string; readonly readyAt?: Date };

export interface PreconditionContext {
  readonly state: RotationState | undefined;
  readonly now: Date;
  /** Only `switch` needs it: the distribution of the Secret's current root-cert.pem. */
  readonly bundle?: BundleCheck;
}

function list(names: readonly string[]): string {
  return names.length > 5 ? `${names.slice(0, 5).join(', ')} and ${names.length - 5} more` : names.join(', ');
}

function duration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

export function checkPrecondition(phase: RotationPhase, ctx: PreconditionContext): Precondition {
  const { state, now } = ctx;
  switch (phase) {
    case 'add':
      if (state?.phase === 'added') return { status: 'done', message: `the new root was added at ${state.addedAt}; next: switch` };
      if (state?.phase === 'switched') {
        return {
          status: 'blocked',
          message: `a rotation is still in progress (signing switched to the new root at ${state.switchedAt}); finish it with --phase drop (possible from ${readyAt(state, 'drop').toISOString()}) before adding another root`,
        };
      }
      return { status: 'ready' };
    case 'switch': {
      if (!state || state.phase === 'dropped') return { status: 'blocked', message: 'no rotation in progress: add the new root first (--phase add)' };
      if (state.phase === 'switched') return { status: 'done', message: `signing switched to the new root at ${state.switchedAt}; next: drop` };
      const waits: string[] = [];
      const bundle = ctx.bundle;
      if (!bundle) waits.push('the trust bundle distribution has not been checked');
      else if (!bundle.complete) {
        const parts = [
          bundle.missing.length > 0 ? `missing in ${list(bundle.missing)}` : '',
          bundle.stale.length > 0 ? `not yet both roots in ${list(bundle.stale)}` : '',
        ].filter(Boolean);
        waits.push(`for ConfigMap cinch-ca-root-cert to hold both roots in every namespace (${parts.join('; ')}): the control plane's trust-bundle controller writes it; is the control plane running?`);
      }
      const at = readyAt(state, 'switch');
      if (now < at) {
        waits.push(
          `until ${at.toISOString()} (one max certificate lifetime, ${duration(state.maxCertTtlSeconds)}, + ${duration(state.graceSeconds)} after the add), so every workload has renewed and trusts the new root`,
        );
      }
      if (waits.length > 0) return { status: 'blocked', message: `not switching yet: wait ${waits.join(', and ')}`, readyAt: now < at ? at : undefined };
      return { status: 'ready' };
    }
    case 'drop': {
      if (!state) return { status: 'blocked', message: 'no rotation in progress: start one with --phase add' };
      if (state.phase === 'dropped') return { status: 'done', message: `the old root was dropped at ${state.droppedAt}; the rotation is complete` };
      if (state.phase === 'added') return { status: 'blocked', message: 'signing still uses the old root: run --phase switch first' };
      const at = readyAt(state, 'drop');
      if (now < at) {
        return {
          status: 'blocked',
          message: `not dropping the old root yet: certificates it signed may be in use until ${at.toISOString()} (one max certificate lifetime, ${duration(state.maxCertTtlSeconds)}, + ${duration(state.graceSeconds)} after the switch)`,
          readyAt: at,
        };
      }
      return { status: 'ready' };
    }
  }
}

export interface PhaseResult {
  readonly data: Record<string, string>;
  readonly state: RotationState;
  readonly summary: string;
}

function withoutNext(data: SecretFiles): Record<string, string> {
  const out = { ...data };
  for (const name of NEXT_FILES) delete out[name];
  return out;
}

/** Throws (CaMaterialError naming the check) unless the result is material the control plane would load. */
function mustLoad(data: SecretFiles, now: Date): void {
  loadCaMaterial(data, now);
}

/** Phase 1: root-cert.pem gets the new roots (after the old ones); the new signing material waits in next-*.pem. */
export function addRoot(data: SecretFiles, next: CaFiles, opts: { now: Date; maxCertTtlSeconds: number; graceSeconds?: number }): PhaseResult {
  const current = loadCaMaterial(data, opts.now);
  const incoming = loadCaMaterial(next, opts.now);
  const oldBlocks = certBlocks(data[ROOT_CERT_FILE], ROOT_CERT_FILE);
  const oldRoots = oldBlocks.map(fingerprint);
  const newBlocks = certBlocks(next[ROOT_CERT_FILE], `new ${ROOT_CERT_FILE}`).filter((der) => !oldRoots.includes(fingerprint(der)));
  if (newBlocks.length === 0) throw new RotationError('the new material has no root that is not already in the bundle: nothing to rotate to');
  const issuingRoot = fingerprint(incoming.chain[incoming.chain.length - 1]);
  if (oldRoots.includes(issuingRoot)) throw new RotationError('the new signing certificate chains to a root already in use; that is an intermediate change, which needs no root rotation');
  const merged = [...oldBlocks, ...newBlocks].map((der) => encodePem('CERTIFICATE', der)).join('');
  const out: Record<string, string> = {
    ...withoutNext(data),
    [ROOT_CERT_FILE]: merged,
    [NEXT_CA_CERT_FILE]: next[CA_CERT_FILE],
    [NEXT_CA_KEY_FILE]: next[CA_KEY_FILE],
    [NEXT_CERT_CHAIN_FILE]: next[CERT_CHAIN_FILE],
  };
  mustLoad(out, opts.now);
  const state: RotationState = {
    version: 1,
    phase: 'added',
    oldRoots,
    newRoots: newBlocks.map(fingerprint),
    maxCertTtlSeconds: opts.maxCertTtlSeconds,
    graceSeconds: opts.graceSeconds ?? DEFAULT_GRACE_SECONDS,
    addedAt: opts.now.toISOString(),
  };
  return {
    data: out,
    state,
    summary: `root-cert.pem now holds ${oldBlocks.length + newBlocks.length} roots (new: ${state.newRoots.map((f) => f.slice(0, 16)).join(', ')}); signing continues with ${current.signingCert.subject.replace(/\n/g, ', ')}`,
  };
}

/** Phase 2: the waiting next-*.pem become the signing material; root-cert.pem keeps both roots. */
export function switchSigning(data: SecretFiles, state: RotationState, now: Date): PhaseResult {
  const missing = NEXT_FILES.filter((name) => typeof data[name] !== 'string');
  if (missing.length > 0) throw new RotationError(`the Secret lacks ${missing.join(', ')} although the rotation state says the root was added; start over with --phase add after removing annotation ${ROTATION_ANNOTATION}`);
  const out = withoutNext(data);
  out[CA_CERT_FILE] = data[NEXT_CA_CERT_FILE];
  out[CA_KEY_FILE] = data[NEXT_CA_KEY_FILE];
  out[CERT_CHAIN_FILE] = data[NEXT_CERT_CHAIN_FILE];
  mustLoad(out, now);
  const material = loadCaMaterial(out, now);
  const top = fingerprint(material.chain[material.chain.length - 1]);
  if (!state.newRoots.includes(top)) throw new RotationError('the waiting signing material does not chain to the new root');
  return {
    data: out,
    state: { ...state, phase: 'switched', switchedAt: now.toISOString() },
    summary: `signing switched to ${material.signingCert.subject.replace(/\n/g, ', ')}; root-cert.pem still holds the old root`,
  };
}

/** Phase 3: the old roots leave root-cert.pem. */
export function dropOldRoots(data: SecretFiles, state: RotationState, now: Date): PhaseResult {
  const blocks = certBlocks(data[ROOT_CERT_FILE], ROOT_CERT_FILE);
  const keep = blocks.filter((der) => !state.oldRoots.includes(fingerprint(der)));
  if (keep.length === 0) throw new RotationError('dropping the old roots would leave root-cert.pem empty');
  const out = withoutNext(data);
  out[ROOT_CERT_FILE] = keep.map((der) => encodePem('CERTIFICATE', der)).join('');
  mustLoad(out, now);
  return {
    data: out,
    state: { ...state, phase: 'dropped', droppedAt: now.toISOString() },
    summary: `root-cert.pem now holds ${keep.length} root${keep.length === 1 ? '' : 's'}; ${blocks.length - keep.length} old root${blocks.length - keep.length === 1 ? '' : 's'} dropped`,
  };
}

/** The trust domain in a root's subject (O=<trust domain>, as cinch creates it), if it has one. */
export function trustDomainOf(certPem: string): string | undefined {
  const [der] = certBlocks(certPem, 'certificate');
  if (!der) return undefined;
  const subject = (new X509Certificate(der).subject as string | undefined) ?? '';
  return /^O=(.+)$/m.exec(subject)?.[1];
}
