// Leader election on a coordination.k8s.io/v1 Lease, for the controllers that must run once
// (trust-bundle distribution, CSR signer, webhook caBundle). Optimistic concurrency on the Lease's
// resourceVersion makes takeover race-safe: of two candidates replacing the same version, one wins.
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../telemetry/logger.ts';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  /** How long a lease is honoured after its last renewal. */
  leaseDurationSeconds?: number;
  /** How often the leader renews and candidates retry. */
  retryPeriodMs?: number;
  /** The leader steps down when it could not renew for this long (less than the lease duration). */
  renewDeadlineMs?: number;
  logger: Logger;
  /** Called when this process becomes leader; the signal aborts when it stops leading. */
  onStartedLeading: (signal: AbortSignal) => void;
  onStoppedLeading?: () => void;
}

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly opts: Required<Omit<LeaderElectionOptions, 'onStoppedLeading'>> & Pick<LeaderElectionOptions, 'onStoppedLeading'>;
  private leading: AbortController | undefined;
  private lastRenew = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(kc: KubeConfig, options: LeaderElectionOptions) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.opts = { leaseDurationSeconds: 15, retryPeriodMs: 2000, renewDeadlineMs: 10_000, ...options };
  }

  get isLeader(): boolean {
    return this.leading !== undefined;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  /**
   * Stops campaigning; a leader releases the lease so another replica takes over at once.
   * `release: false` leaves the lease to expire, as a crashed process would.
   */
  async stop({ release = true }: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.leading) {
      this.stepDown('stopping');
      if (!release) return;
      try {
        const lease = await this.api.readNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace });
        if (lease.spec?.holderIdentity === this.opts.identity) {
          lease.spec.holderIdentity = undefined;
          lease.spec.leaseDurationSeconds = 1;
          await this.api.replaceNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace, body: lease });
        }
      } catch (err) {
        this.opts.logger.warn('could not release the lease', { lease: this.opts.name, err });
      }
    }
  }

  private schedule(): void {
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.opts.retryPeriodMs);
  }

  private stepDown(why: string): void {
    if (!this.leading) return;
    this.opts.logger.info('stopped leading', { lease: this.opts.name, why });
    this.leading.abort(why);
    this.leading = undefined;
    this.opts.onStoppedLeading?.();
  }

  private async tick(): Promise<void> {
    try {
      if (await this.tryAcquireOrRenew()) {
        this.lastRenew = Date.now();
        if (!this.leading && !this.stopped) {
          this.leading = new AbortController();
          this.opts.logger.info('started leading', { lease: this.opts.name, identity: this.opts.identity });
          this.opts.onStartedLeading(this.leading.signal);
        }
      } else {
        this.stepDown('another replica holds the lease');
      }
    } catch (err) {
      this.opts.logger.warn('lease update failed', { lease: this.opts.name, err });
      if (this.leading && Date.now() - this.lastRenew > this.opts.renewDeadlineMs) this.stepDown('could not renew before the deadline');
    }
    this.schedule();
  }

  private spec(lease?: V1Lease) {
    const now = new V1MicroTime();
    const keep = lease?.spec?.holderIdentity === this.opts.identity;
    return {
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: this.opts.leaseDurationSeconds,
      acquireTime: keep && lease?.spec?.acquireTime ? lease.spec.acquireTime : now,
      renewTime: now,
      leaseTransitions: (lease?.spec?.leaseTransitions ?? 0) + (keep || !lease ? 0 : 1),
    };
  }

  /** True when this process holds the lease after the call. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { name, namespace, identity } = this.opts;
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      try {
        await this.api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: this.spec() } });
        return true;
      } catch (createErr) {
        if (statusCode(createErr) === 409) return false; // another replica created it first
        throw createErr;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity;
    const renewedAt = spec.renewTime ? new Date(spec.renewTime).getTime() : 0;
    const expired = renewedAt + (spec.leaseDurationSeconds ?? this.opts.leaseDurationSeconds) * 1000 < Date.now();
    if (holder && holder !== identity && !expired) return false;
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: this.spec(lease) } });
      return true;
    } catch (err) {
      if (statusCode(err) === 409) return false; // someone else updated it between our read and write
      throw err;
    }
  }
}
