// What the config stream serves from: informers on pods, services and the two security.istio.io
// kinds, folded into one immutable snapshot (proxy-config.ts) that is rebuilt shortly after any
// change. Changes are coalesced over a short window, so a burst (a rollout, a re-list) is one
// rebuild and one push per proxy, and a single change reaches the proxies well within a second.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type KubernetesListObject, type KubernetesObject, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { runInformer, type RunningInformer } from '../kube/informer.ts';
import { DEFAULT_ROOT_NAMESPACE, SECURITY_GROUP, type PolicyProblem } from '../policy/index.ts';
import type { Logger } from '../telemetry/logger.ts';
import { PolicyStatusReporter, type PolicyObjectRef } from './policy-status.ts';
import {
  buildSnapshot,
  indexPolicies,
  meshPodFromObject,
  meshServiceFromObject,
  type MeshPod,
  type MeshService,
  type MeshSnapshot,
  type NamespacePolicies,
} from './proxy-config.ts';

export const POLICY_KINDS = [
  { kind: 'PeerAuthentication', plural: 'peerauthentications' },
  { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies' },
] as const;
/** The version watched; the API server converts v1beta1 objects to it. */
export const POLICY_VERSION = 'v1';

export interface MeshStateOptions {
  trustDomain: string;
  /** Mesh root namespace (mesh-wide policy); `cinch-system` by default. */
  rootNamespace?: string;
  /** Roots (PEM) every proxy trusts; replace with setTrustBundle. */
  trustBundle: readonly string[];
  logger: Logger;
  registry: Registry;
  /** Changes within this window are one rebuild (default 50 ms). */
  coalesceMs?: number;
  /** For the `service` label of meshed destinations (`<svc>.<ns>.svc.<clusterDomain>`). */
  clusterDomain?: string;
  /** Set false to skip Events on invalid policies (they are still logged and counted). */
  policyEvents?: boolean;
  /** reportingInstance on Events: this replica's name. */
  instance?: string;
}

type PolicyObject = KubernetesObject & { spec?: unknown };

interface MeshStateEvents {
  /** A new snapshot; `changedAt` (performance.now()) is when the first change it includes was seen. */
  changed: [snapshot: MeshSnapshot, changedAt: number];
}

export class MeshState extends EventEmitter<MeshStateEvents> {
  readonly trustDomain: string;
  readonly rootNamespace: string;
  private current?: MeshSnapshot;
  private bundle: readonly string[];
  private pods?: RunningInformer<V1Pod>;
  private services?: RunningInformer<V1Service>;
  private policyInformers: RunningInformer<PolicyObject>[] = [];
  private policyIndex: { policies: ReadonlyMap<string, NamespacePolicies>; problems: PolicyProblem[] } = { policies: new Map(), problems: [] };
  private lastServices: MeshService[] = [];
  private dirty = { policies: true, workloads: true };
  private firstChangeAt?: number;
  private timer?: NodeJS.Timeout;
  private started = false;
  private stopped = false;
  private readonly badPods = new Set<string>();
  private readonly reporter: PolicyStatusReporter;
  private readonly metrics: { rebuilds: Counter; meshedPods: Gauge; destinations: Gauge };
  private readonly kc: KubeConfig;
  private readonly opts: MeshStateOptions;

  constructor(kc: KubeConfig, opts: MeshStateOptions) {
    super();
    this.kc = kc;
    this.opts = opts;
    this.trustDomain = opts.trustDomain;
    this.rootNamespace = opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    this.bundle = [...opts.trustBundle];
    this.reporter = new PolicyStatusReporter({
      logger: opts.logger,
      registry: opts.registry,
      kc: opts.policyEvents === false ? undefined : kc,
      instance: opts.instance,
    });
    this.metrics = {
      rebuilds: new Counter({ name: 'cinch_mesh_state_rebuilds_total', help: 'Snapshots of the mesh built for the config stream.', registers: [opts.registry] }),
      meshedPods: new Gauge({ name: 'cinch_mesh_meshed_pods', help: 'Pods with the proxy, an IP and a SPIFFE identity.', registers: [opts.registry] }),
      destinations: new Gauge({ name: 'cinch_mesh_meshed_destinations', help: 'Pod and service IPs every proxy treats as meshed.', registers: [opts.registry] }),
    };
  }

  /** Undefined until start() has listed everything once. */
  get snapshot(): MeshSnapshot | undefined {
    return this.current;
  }

  get ready(): boolean {
    return this.current !== undefined;
  }

  get trustBundle(): readonly string[] {
    return this.bundle;
  }

  /** New roots (e.g. during root rotation): every proxy gets them with the next push. */
  setTrustBundle(roots: readonly string[]): void {
    if (roots.length === this.bundle.length && roots.every((r, i) => r === this.bundle[i])) return;
    this.bundle = [...roots];
    this.invalidate();
  }

  /** Starts the informers; resolves when each has listed once and the first snapshot is built. */
  async start(): Promise<void> {
    if (this.started) throw new Error('MeshState already started');
    this.started = true;
    const log = this.opts.logger;
    const core = this.kc.makeApiClient(CoreV1Api);
    const custom = this.kc.makeApiClient(CustomObjectsApi);
    const workloads = { add: () => this.invalidate('workloads'), update: () => this.invalidate('workloads'), delete: () => this.invalidate('workloads') };
    const policies = { add: () => this.invalidate('policies'), update: () => this.invalidate('policies'), delete: () => this.invalidate('policies') };
    this.pods = runInformer(this.kc, '/api/v1/pods', () => core.listPodForAllNamespaces(), workloads, log);
    this.services = runInformer(this.kc, '/api/v1/services', () => core.listServiceForAllNamespaces(), workloads, log);
    this.policyInformers = POLICY_KINDS.map(({ plural }) =>
      runInformer<PolicyObject>(
        this.kc,
        `/apis/${SECURITY_GROUP}/${POLICY_VERSION}/${plural}`,
        () => custom.listClusterCustomObject({ group: SECURITY_GROUP, version: POLICY_VERSION, plural }) as Promise<KubernetesListObject<PolicyObject>>,
        policies,
        log,
      ),
    );
    const waiting = new Set<string>(['pods', 'services', ...POLICY_KINDS.map((k) => k.plural)]);
    const slow = setTimeout(() => {
      log.warn('the config stream waits for the first list of these; are the security.istio.io CRDs installed (webhook-config/crds)?', { waiting: [...waiting] });
    }, 10_000);
    slow.unref();
    const informers: [string, RunningInformer<KubernetesObject>][] = [
      ['pods', this.pods],
      ['services', this.services],
      ...POLICY_KINDS.map(({ plural }, i): [string, RunningInformer<KubernetesObject>] => [plural, this.policyInformers[i]]),
    ];
    await Promise.all(informers.map(([name, informer]) => informer.synced.then(() => waiting.delete(name))));
    clearTimeout(slow);
    if (this.stopped) return;
    this.rebuild();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.all([this.pods?.stop(), this.services?.stop(), ...this.policyInformers.map((i) => i.stop())]);
  }

  private invalidate(what?: 'policies' | 'workloads'): void {
    if (what) this.dirty[what] = true;
    if (this.stopped || !this.current) return; // start() builds the first snapshot once everything is listed
    this.firstChangeAt ??= performance.now();
    // A fixed window from the first change (not reset by later ones), so a steady stream of
    // changes cannot delay a push indefinitely.
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.rebuild();
    }, this.opts.coalesceMs ?? 50);
  }

  private rebuild(): void {
    const changedAt = this.firstChangeAt ?? performance.now();
    this.firstChangeAt = undefined;
    try {
      if (this.dirty.policies) {
        this.dirty.policies = false;
        const objects = this.policyInformers.flatMap((i) => i.list());
        this.policyIndex = indexPolicies(objects, this.rootNamespace);
        this.reportProblems(objects);
      }
      let pods: MeshPod[];
      let services: MeshService[];
      if (this.dirty.workloads || !this.current) {
        this.dirty.workloads = false;
        pods = this.meshPods();
        services = (this.services?.list() ?? []).map(meshServiceFromObject).filter((s): s is MeshService => s !== undefined);
      } else {
        pods = [...this.current.pods.values()];
        services = this.lastServices;
      }
      this.lastServices = services;
      const snapshot = buildSnapshot({
        trustDomain: this.trustDomain,
        rootNamespace: this.rootNamespace,
        trustBundle: this.bundle,
        pods,
        services,
        policies: this.policyIndex.policies,
        clusterDomain: this.opts.clusterDomain,
      });
      this.current = snapshot;
      this.metrics.rebuilds.inc();
      this.metrics.meshedPods.set(pods.filter((p) => p.meshed).length);
      this.metrics.destinations.set(Object.keys(snapshot.meshedDestinations).length);
      this.emit('changed', snapshot, changedAt);
    } catch (err) {
      // Keep serving the last snapshot; the next change tries again.
      this.dirty = { policies: true, workloads: true };
      this.opts.logger.error('could not rebuild the mesh snapshot; proxies keep the previous config', { err });
    }
  }

  private meshPods(): MeshPod[] {
    const out: MeshPod[] = [];
    const stillBad = new Set<string>();
    for (const object of this.pods?.list() ?? []) {
      const { pod, problem } = meshPodFromObject(object, this.trustDomain);
      if (!pod) continue;
      out.push(pod);
      if (problem) {
        const key = `${pod.namespace}/${pod.name}`;
        stillBad.add(key);
        if (!this.badPods.has(key)) this.opts.logger.warn('meshed pod has no valid SPIFFE identity; it is treated as not meshed', { pod: key, problem });
      }
    }
    this.badPods.clear();
    for (const key of stillBad) this.badPods.add(key);
    return out;
  }

  private reportProblems(objects: readonly PolicyObject[]): void {
    const byRef = new Map<string, PolicyObject>();
    for (const o of objects) byRef.set(`${o.kind}/${o.metadata?.namespace}/${o.metadata?.name}`, o);
    this.reporter.update(this.policyIndex.problems, (problem): PolicyObjectRef | undefined => {
      const o = byRef.get(`${problem.kind}/${problem.ref}`);
      if (!o?.metadata?.name || !o.metadata.namespace) return undefined;
      return {
        apiVersion: o.apiVersion ?? `${SECURITY_GROUP}/${POLICY_VERSION}`,
        kind: problem.kind,
        namespace: o.metadata.namespace,
        name: o.metadata.name,
        uid: o.metadata.uid,
        resourceVersion: o.metadata.resourceVersion,
        generation: o.metadata.generation,
      };
    });
  }
}
