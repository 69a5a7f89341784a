// Tells people about policies Cinch refuses (or enforces differently than written) without
// touching the valid ones: a log line, a gauge, and a Warning Event on the object, which is where
// `kubectl describe` shows it. Reports are deduplicated, so informer re-lists and rebuilds are quiet.
import { createHash } from 'node:crypto';
import { CoreV1Api, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import { Gauge, type Registry } from 'prom-client';
import { CUSTOM_UNSUPPORTED, type PolicyProblem } from '../policy/index.ts';
import type { Logger } from '../telemetry/logger.ts';

export const INVALID_POLICY_REASON = 'InvalidPolicy';
export const POLICY_WARNING_REASON = 'PolicyWarning';
const EVENT_SOURCE = 'cinch-control-plane';
const MAX_EVENT_MESSAGE = 1024;
const RETRY_AFTER_MS = 30_000;

/** What the reporter needs of the object a problem is about (for involvedObject). */
export interface PolicyObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
}

export interface PolicyStatusOptions {
  logger: Logger;
  registry: Registry;
  /** Events are off when absent (offline use, unit tests). */
  kc?: KubeConfig;
  /** reportingInstance of the Events (the replica). */
  instance?: string;
}

/** Pure: the Event body for a problem; its name is derived from the object and the messages so every replica creates the same one. */
export function policyEvent(problem: PolicyProblem, object: PolicyObjectRef, instance: string, now = new Date()): CoreV1Event {
  const invalid = problem.errors.length > 0;
  const custom = problem.errors.some((e) => e.includes(CUSTOM_UNSUPPORTED));
  const lead = !invalid
    ? 'Cinch enforces this policy with warnings: '
    : problem.enforced
      ? custom
        ? 'Cinch does not support this policy (CUSTOM needs an extension provider); it denies what the policy matches: '
        : 'Cinch enforces this policy only in part: '
      : 'Cinch refused this policy; it is not enforced: ';
  let message = lead + [...problem.errors, ...problem.warnings].join('; ');
  if (message.length > MAX_EVENT_MESSAGE) message = `${message.slice(0, MAX_EVENT_MESSAGE - 1)}…`;
  const key = createHash('sha256')
    .update(JSON.stringify([object.uid ?? '', object.generation ?? object.resourceVersion ?? '', problem.errors, problem.warnings]))
    .digest('hex')
    .slice(0, 16);
  return {
    metadata: { name: `${object.name.slice(0, 200)}.${key}`, namespace: object.namespace },
    involvedObject: {
      apiVersion: object.apiVersion,
      kind: object.kind,
      namespace: object.namespace,
      name: object.name,
      uid: object.uid,
      resourceVersion: object.resourceVersion,
    },
    type: 'Warning',
    reason: invalid ? INVALID_POLICY_REASON : POLICY_WARNING_REASON,
    message,
    source: { component: EVENT_SOURCE },
    reportingComponent: `cinch.dev/${EVENT_SOURCE}`,
    reportingInstance: instance,
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
}

export class PolicyStatusReporter {
  /** `kind/ns/name` → signature of what was last reported for it. */
  private readonly reported = new Map<string, string>();
  /** Event names created (or found already there), and failed ones with when to try again. */
  private readonly events = new Map<string, number>();
  private readonly gauge: Gauge<'kind' | 'enforced'>;
  private readonly core?: CoreV1Api;
  private readonly opts: PolicyStatusOptions;

  constructor(opts: PolicyStatusOptions) {
    this.opts = opts;
    this.core = opts.kc?.makeApiClient(CoreV1Api);
    this.gauge = new Gauge({
      name: 'cinch_policy_invalid',
      help: 'Policies with validation errors, by kind; enforced="true" for those still enforced (without their rules in error; CUSTOM fails closed), "false" for those skipped.',
      labelNames: ['kind', 'enforced'],
      registers: [opts.registry],
    });
  }

  /**
   * The full current list of problems (after every rebuild); `objectFor` finds the object a
   * problem is about. New or changed problems are logged and get an Event; fixed ones are logged once.
   */
  update(problems: readonly PolicyProblem[], objectFor: (problem: PolicyProblem) => PolicyObjectRef | undefined): void {
    this.gauge.reset();
    for (const kind of ['PeerAuthentication', 'AuthorizationPolicy']) {
      this.gauge.set({ kind, enforced: 'true' }, 0);
      this.gauge.set({ kind, enforced: 'false' }, 0);
    }
    const seen = new Set<string>();
    for (const problem of problems) {
      const object = objectFor(problem);
      const key = `${problem.kind}/${problem.ref}`;
      seen.add(key);
      if (problem.errors.length > 0) this.gauge.inc({ kind: problem.kind, enforced: String(problem.enforced) });
      const signature = JSON.stringify([object?.uid, object?.generation ?? object?.resourceVersion, problem.errors, problem.warnings]);
      if (this.reported.get(key) !== signature) {
        this.reported.set(key, signature);
        const fields = { kind: problem.kind, policy: problem.ref, errors: problem.errors, warnings: problem.warnings, enforced: problem.enforced };
        if (problem.errors.length > 0) {
          this.opts.logger.warn(problem.enforced ? 'policy has errors; enforced without what is in error (CUSTOM: denies what it matches)' : 'invalid policy refused; the valid ones still apply', fields);
        } else {
          this.opts.logger.info('policy accepted with warnings', fields);
        }
      }
      if (object) this.emitEvent(problem, object);
    }
    for (const key of [...this.reported.keys()]) {
      if (seen.has(key)) continue;
      this.reported.delete(key);
      this.opts.logger.info('policy problem resolved (fixed or deleted)', { policy: key });
    }
  }

  private emitEvent(problem: PolicyProblem, object: PolicyObjectRef): void {
    if (!this.core) return;
    const event = policyEvent(problem, object, this.opts.instance ?? EVENT_SOURCE);
    const name = `${object.namespace}/${event.metadata.name}`;
    const state = this.events.get(name);
    // 0: created or pending; a time: failed, try again after it.
    if (state !== undefined && (state === 0 || Date.now() < state)) return;
    // Event names of objects whose problems changed are not needed any more; keep the map bounded.
    if (this.events.size > 10_000) this.events.clear();
    this.events.set(name, 0);
    this.core.createNamespacedEvent({ namespace: object.namespace, body: event }).then(
      () => undefined,
      (err: { code?: number; message?: string }) => {
        // Another replica (or an earlier run of this one) already reported exactly this.
        if (err.code === 409) return;
        this.events.set(name, Date.now() + RETRY_AFTER_MS);
        this.opts.logger.warn('could not create an Event for a policy problem', { policy: problem.ref, code: err.code, err: err.message });
      },
    );
  }
}
