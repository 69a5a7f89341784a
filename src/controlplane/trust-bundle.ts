// Trust-bundle distribution: ConfigMap cinch-ca-root-cert (key root-cert.pem, every mesh root) in every
// namespace but kube-public and kube-node-lease. Leader-elected; created for new namespaces, repaired
// when edited or deleted, rewritten when the roots change. Rotation asks `distributed(roots)` before it
// switches signing to a new root, so the check is exact: every namespace, exactly these roots.
import { X509Certificate } from 'node:crypto';
import { CoreV1Api, type KubeConfig, type V1ConfigMap, type V1Namespace } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { decodePem, encodePem } from '../ca/pem.ts';
import { runInformer, type RunningInformer } from '../kube/informer.ts';
import type { Logger } from '../telemetry/logger.ts';

export const TRUST_BUNDLE_CONFIGMAP = 'cinch-ca-root-cert';
export const TRUST_BUNDLE_KEY = 'root-cert.pem';
export const TRUST_BUNDLE_LABELS: Readonly<Record<string, string>> = { 'app.kubernetes.io/managed-by': 'cinch', 'cinch.dev/trust-bundle': 'true' };
/** kube-public is world-readable and kube-node-lease holds only node heartbeats: no workloads to trust anything. */
export const EXCLUDED_NAMESPACES: readonly string[] = ['kube-public', 'kube-node-lease'];

// ----- pure part -----

/** Whether `ns` should hold the bundle: not excluded, and not being deleted (writes there fail with 403). */
export function wantsTrustBundle(ns: V1Namespace): boolean {
  const name = ns.metadata?.name;
  if (!name || EXCLUDED_NAMESPACES.includes(name)) return false;
  return !ns.metadata?.deletionTimestamp && ns.status?.phase !== 'Terminating';
}

/**
 * The ConfigMap value for a set of roots: every certificate re-encoded the same way, duplicates
 * dropped, in the order given (old roots first during rotation), so equal roots give equal bytes.
 */
export function trustBundlePem(rootsPem: readonly string[]): string {
  const seen = new Set<string>();
  let out = '';
  for (const text of rootsPem) {
    for (const block of decodePem(text)) {
      if (block.label !== 'CERTIFICATE') throw new Error(`a trust bundle holds certificates only, found a "${block.label}" block`);
      const key = block.der.toString('base64');
      if (seen.has(key)) continue;
      seen.add(key);
      out += encodePem('CERTIFICATE', block.der);
    }
  }
  if (out === '') throw new Error('a trust bundle needs at least one root');
  return out;
}

/** SHA-256 fingerprints (hex) of the certificates in a bundle, sorted; undefined when the text is not a bundle. */
export function rootFingerprints(bundlePem: string | undefined): string[] | undefined {
  if (bundlePem === undefined) return undefined;
  try {
    const blocks = decodePem(bundlePem);
    if (blocks.length === 0 || blocks.some((b) => b.label !== 'CERTIFICATE')) return undefined;
    return [...new Set(blocks.map((b) => new X509Certificate(b.der).fingerprint256.replace(/:/g, '').toLowerCase()))].sort();
  } catch {
    return undefined;
  }
}

function sameRoots(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((fp, i) => fp === b[i]);
}

/** What is wrong with a namespace's ConfigMap: absent, or not exactly our data and labels. */
export function configMapDrift(cm: V1ConfigMap | undefined, bundlePem: string): 'missing' | 'stale' | undefined {
  if (!cm) return 'missing';
  const data = cm.data ?? {};
  if (Object.keys(data).length !== 1 || data[TRUST_BUNDLE_KEY] !== bundlePem) return 'stale';
  if (Object.keys(cm.binaryData ?? {}).length > 0) return 'stale';
  const labels = cm.metadata?.labels ?? {};
  if (Object.entries(TRUST_BUNDLE_LABELS).some(([k, v]) => labels[k] !== v)) return 'stale';
  return undefined;
}

/** The ConfigMap as it should be; an existing one keeps its other labels and annotations. */
export function desiredConfigMap(namespace: string, bundlePem: string, existing?: V1ConfigMap): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      ...(existing?.metadata ?? {}),
      name: TRUST_BUNDLE_CONFIGMAP,
      namespace,
      labels: { ...(existing?.metadata?.labels ?? {}), ...TRUST_BUNDLE_LABELS },
    },
    data: { [TRUST_BUNDLE_KEY]: bundlePem },
  };
}

export interface DistributionStatus {
  /** Namespaces that should hold the bundle. */
  readonly namespaces: number;
  /** Namespaces whose ConfigMap holds exactly the roots. */
  readonly current: number;
  /** Namespaces without the ConfigMap. */
  readonly missing: readonly string[];
  /** Namespaces whose ConfigMap holds other roots (or no valid bundle). */
  readonly stale: readonly string[];
  readonly complete: boolean;
}

/** Whether every namespace that should hold the bundle holds exactly `rootsPem` (order and formatting aside). */
export function distributionStatus(namespaces: readonly V1Namespace[], configMaps: readonly V1ConfigMap[], rootsPem: readonly string[]): DistributionStatus {
  const want = rootFingerprints(trustBundlePem(rootsPem)) ?? [];
  const byNamespace = new Map<string, V1ConfigMap>();
  for (const cm of configMaps) {
    if (cm.metadata?.name === TRUST_BUNDLE_CONFIGMAP && cm.metadata.namespace) byNamespace.set(cm.metadata.namespace, cm);
  }
  const missing: string[] = [];
  const stale: string[] = [];
  let total = 0;
  for (const ns of namespaces) {
    if (!wantsTrustBundle(ns)) continue;
    total++;
    const name = ns.metadata!.name!;
    const cm = byNamespace.get(name);
    if (!cm) missing.push(name);
    else if (!sameRoots(rootFingerprints(cm.data?.[TRUST_BUNDLE_KEY]), want)) stale.push(name);
  }
  missing.sort();
  stale.sort();
  return { namespaces: total, current: total - missing.length - stale.length, missing, stale, complete: missing.length === 0 && stale.length === 0 };
}

/** The same check from fresh lists, for callers without the controller's caches (`cinch ca rotate`). */
export async function checkTrustBundleDistribution(kc: KubeConfig, rootsPem: readonly string[]): Promise<DistributionStatus> {
  const core = kc.makeApiClient(CoreV1Api);
  const [namespaces, configMaps] = await Promise.all([
    core.listNamespace(),
    core.listConfigMapForAllNamespaces({ fieldSelector: `metadata.name=${TRUST_BUNDLE_CONFIGMAP}` }),
  ]);
  return distributionStatus(namespaces.items, configMaps.items, rootsPem);
}

// ----- work queue -----

export interface WorkQueueOptions {
  /** Keys handled at once (one key is never handled twice at the same time). */
  concurrency?: number;
  /** First retry delay after a failure; doubles per consecutive failure of that key. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Overall rate of handler runs (token bucket), so a burst of events cannot hammer the API server. */
  qps?: number;
  burst?: number;
  onError?: (key: string, err: unknown, retryInMs: number) => void;
}

/**
 * A rate-limited work queue with client-go's semantics: a key queued twice is handled once, a key
 * added while it is being handled is handled again afterwards, a failed key is retried with per-key
 * exponential backoff, and an overall token bucket caps the rate.
 */
export class WorkQueue {
  readonly #handler: (key: string) => Promise<void>;
  readonly #opts: Required<Omit<WorkQueueOptions, 'onError'>> & Pick<WorkQueueOptions, 'onError'>;
  readonly #queue: string[] = [];
  readonly #queued = new Set<string>();
  readonly #active = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #retryTimers = new Map<string, NodeJS.Timeout>();
  #tokens: number;
  #refilledAt = Date.now();
  #tokenTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  #pumpScheduled = false;
  #idleWaiters: Array<() => void> = [];

  constructor(handler: (key: string) => Promise<void>, options: WorkQueueOptions = {}) {
    this.#handler = handler;
    this.#opts = { concurrency: 4, baseDelayMs: 250, maxDelayMs: 30_000, qps: 50, burst: 200, ...options };
    this.#tokens = this.#opts.burst;
  }

  /** Keys waiting (not counting those in a handler or waiting for a retry). */
  get length(): number {
    return this.#queue.length;
  }

  add(key: string): void {
    if (this.#stopped) return;
    if (this.#active.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#queue.push(key);
    // Deferred, so a synchronous burst (a list, setRoots) coalesces before any handler starts.
    if (!this.#pumpScheduled) {
      this.#pumpScheduled = true;
      queueMicrotask(() => {
        this.#pumpScheduled = false;
        this.#pump();
      });
    }
  }

  /** Adds `key` after `delayMs`; an earlier pending retry of the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#stopped || this.#retryTimers.has(key)) return;
    const timer = setTimeout(() => {
      this.#retryTimers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.#retryTimers.set(key, timer);
  }

  /** Resolves when nothing is queued or running (pending retries do not count). */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Drops everything queued and waits for the running handlers to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#retryTimers.values()) clearTimeout(timer);
    this.#retryTimers.clear();
    clearTimeout(this.#tokenTimer);
    this.#queue.length = 0;
    this.#queued.clear();
    this.#dirty.clear();
    await this.idle();
  }

  #isIdle(): boolean {
    return this.#queue.length === 0 && this.#active.size === 0;
  }

  #takeToken(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.#opts.burst, this.#tokens + ((now - this.#refilledAt) / 1000) * this.#opts.qps);
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #pump(): void {
    while (!this.#stopped && this.#active.size < this.#opts.concurrency && this.#queue.length > 0) {
      if (!this.#takeToken()) {
        if (!this.#tokenTimer) {
          const waitMs = Math.ceil(((1 - this.#tokens) / this.#opts.qps) * 1000);
          this.#tokenTimer = setTimeout(() => {
            this.#tokenTimer = undefined;
            this.#pump();
          }, waitMs);
          this.#tokenTimer.unref();
        }
        return;
      }
      const key = this.#queue.shift()!;
      this.#queued.delete(key);
      this.#active.add(key);
      void this.#run(key);
    }
  }

  async #run(key: string): Promise<void> {
    try {
      await this.#handler(key);
      this.#failures.delete(key);
      const pending = this.#retryTimers.get(key);
      if (pending) {
        clearTimeout(pending);
        this.#retryTimers.delete(key);
      }
    } catch (err) {
      const failures = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, failures);
      const delay = Math.min(this.#opts.baseDelayMs * 2 ** (failures - 1), this.#opts.maxDelayMs);
      this.#opts.onError?.(key, err, delay);
      this.addAfter(key, delay);
    } finally {
      this.#active.delete(key);
      if (this.#dirty.delete(key)) this.add(key);
      this.#pump();
      if (this.#isIdle()) for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
  }
}

// ----- controller -----

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

export interface TrustBundleControllerOptions {
  logger: Logger;
  registry?: Registry;
  /** Full re-check of every namespace, a safety net under the watches. */
  resyncMs?: number;
  queue?: WorkQueueOptions;
}

interface Running {
  namespaces: RunningInformer<V1Namespace>;
  configMaps: RunningInformer<V1ConfigMap>;
  queue: WorkQueue;
  resync: NodeJS.Timeout;
  synced: boolean;
}

export class TrustBundleController {
  readonly #kc: KubeConfig;
  readonly #core: CoreV1Api;
  readonly #opts: TrustBundleControllerOptions;
  readonly #writes?: Counter<'operation' | 'result'>;
  #roots: readonly string[] = [];
  #bundle: string | undefined;
  #running: Running | undefined;

  constructor(kc: KubeConfig, opts: TrustBundleControllerOptions) {
    this.#kc = kc;
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#opts = opts;
    if (opts.registry) {
      const gauge = new Gauge({
        name: 'cinch_trust_bundle_namespaces',
        help: 'Namespaces that should hold the trust bundle ConfigMap, by state (current, missing, stale); empty when this replica does not lead.',
        labelNames: ['state'],
        registers: [opts.registry],
        collect: () => {
          gauge.reset();
          const status = this.status();
          if (!status) return;
          gauge.set({ state: 'current' }, status.current);
          gauge.set({ state: 'missing' }, status.missing.length);
          gauge.set({ state: 'stale' }, status.stale.length);
        },
      });
      this.#writes = new Counter({
        name: 'cinch_trust_bundle_writes_total',
        help: 'Trust bundle ConfigMap writes by operation (create, update) and result (success, failure).',
        labelNames: ['operation', 'result'],
        registers: [opts.registry],
      });
    }
  }

  /** Starts distributing `rootsPem`; resolves once the namespace and ConfigMap caches are filled. */
  async start(rootsPem: readonly string[]): Promise<void> {
    if (this.#running) {
      this.setRoots(rootsPem);
      return;
    }
    this.#setBundle(rootsPem);
    const log = this.#opts.logger;
    const queue = new WorkQueue((ns) => this.#reconcile(ns), {
      ...this.#opts.queue,
      onError: (ns, err, retryInMs) => log.warn('could not write the trust bundle; retrying', { namespace: ns, retryInMs, err }),
    });
    const enqueue = (obj: { metadata?: { name?: string; namespace?: string } }, useNamespace: boolean) => {
      const key = useNamespace ? obj.metadata?.namespace : obj.metadata?.name;
      if (key) queue.add(key);
    };
    const namespaces = runInformer<V1Namespace>(
      this.#kc,
      '/api/v1/namespaces',
      () => this.#core.listNamespace(),
      { add: (ns) => enqueue(ns, false), update: (ns) => enqueue(ns, false) },
      log,
    );
    // runInformer has no field selector parameter; the watch URL keeps a query string in the path.
    const fieldSelector = `metadata.name=${TRUST_BUNDLE_CONFIGMAP}`;
    const configMaps = runInformer<V1ConfigMap>(
      this.#kc,
      `/api/v1/configmaps?fieldSelector=${encodeURIComponent(fieldSelector)}`,
      () => this.#core.listConfigMapForAllNamespaces({ fieldSelector }),
      { add: (cm) => enqueue(cm, true), update: (cm) => enqueue(cm, true), delete: (cm) => enqueue(cm, true) },
      log,
    );
    const resync = setInterval(() => this.#enqueueAll(), this.#opts.resyncMs ?? 10 * 60_000);
    resync.unref();
    const running: Running = { namespaces, configMaps, queue, resync, synced: false };
    this.#running = running;
    await Promise.all([namespaces.synced, configMaps.synced]);
    if (this.#running !== running) return; // stopped while syncing
    running.synced = true;
    this.#enqueueAll();
    log.info('trust bundle controller started', { roots: rootFingerprints(this.#bundle)?.length ?? 0 });
  }

  /** New roots (rotation, reload): rewrites every namespace. Before start, only remembers them. */
  setRoots(rootsPem: readonly string[]): void {
    const before = this.#bundle;
    this.#setBundle(rootsPem);
    if (this.#bundle !== before) {
      this.#opts.logger.info('trust bundle roots changed', { roots: rootFingerprints(this.#bundle)?.length ?? 0 });
      this.#enqueueAll();
    }
  }

  async stop(): Promise<void> {
    const running = this.#running;
    if (!running) return;
    this.#running = undefined;
    clearInterval(running.resync);
    await Promise.all([running.namespaces.stop(), running.configMaps.stop(), running.queue.stop()]);
  }

  /** The distribution of `rootsPem` as this controller's caches see it; undefined when not running and synced. */
  status(rootsPem: readonly string[] = this.#roots): DistributionStatus | undefined {
    const running = this.#running;
    if (!running?.synced || rootsPem.length === 0) return undefined;
    return distributionStatus(running.namespaces.list(), running.configMaps.list(), rootsPem);
  }

  /** Whether every namespace that should hold the bundle holds exactly `rootsPem`. */
  distributed(rootsPem: readonly string[]): boolean {
    return this.status(rootsPem)?.complete ?? false;
  }

  /** Whether the current roots are everywhere. */
  everywhere(): boolean {
    return this.distributed(this.#roots);
  }

  /** Resolves when no namespace is queued or being written (for tests and orderly handover). */
  async idle(): Promise<void> {
    await this.#running?.queue.idle();
  }

  #setBundle(rootsPem: readonly string[]): void {
    this.#bundle = trustBundlePem(rootsPem);
    this.#roots = [...rootsPem];
  }

  #enqueueAll(): void {
    const running = this.#running;
    if (!running?.synced) return;
    for (const ns of running.namespaces.list()) if (ns.metadata?.name) running.queue.add(ns.metadata.name);
  }

  async #reconcile(namespace: string): Promise<void> {
    const running = this.#running;
    const bundle = this.#bundle;
    if (!running || !bundle) return;
    const ns = running.namespaces.get(namespace);
    if (!ns || !wantsTrustBundle(ns)) return;
    const cm = running.configMaps.get(TRUST_BUNDLE_CONFIGMAP, namespace);
    const drift = configMapDrift(cm, bundle);
    if (!drift) return;
    if (cm) return this.#update(cm, bundle, 'stale');
    try {
      await this.#core.createNamespacedConfigMap({ namespace, body: desiredConfigMap(namespace, bundle) });
      this.#writes?.inc({ operation: 'create', result: 'success' });
      this.#opts.logger.info('trust bundle created', { namespace });
    } catch (err) {
      const code = statusCode(err);
      if (code === 404) return; // the namespace is gone
      if (code !== 409) {
        this.#writes?.inc({ operation: 'create', result: 'failure' });
        throw err;
      }
      // It exists but our cache has not seen it yet: read it and repair it if needed.
      const existing = await this.#core.readNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace });
      if (configMapDrift(existing, bundle)) await this.#update(existing, bundle, 'stale');
    }
  }

  async #update(cm: V1ConfigMap, bundle: string, why: string): Promise<void> {
    const namespace = cm.metadata!.namespace!;
    try {
      // Replace carries the resourceVersion: a concurrent edit fails with 409 and is retried against the newer object.
      await this.#core.replaceNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace, body: desiredConfigMap(namespace, bundle, cm) });
      this.#writes?.inc({ operation: 'update', result: 'success' });
      this.#opts.logger.info('trust bundle repaired', { namespace, why });
    } catch (err) {
      this.#writes?.inc({ operation: 'update', result: 'failure' });
      throw err;
    }
  }
}
