// The injector the webhook calls: namespace labels from an informer, the injection config from the
// cinch-injection ConfigMap (reloaded on change, last good kept), native-sidecar support from versions.
import { CoreV1Api, VersionApi, type KubeConfig, type V1ConfigMap, type V1Namespace, type V1Pod } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import {
  DEFAULT_INJECTION_CONFIG,
  InjectionError,
  injectPod,
  parseInjectionConfig,
  shouldInject,
  type InjectionConfig,
  type NamespaceInfo,
} from '../inject/index.ts';
import { runInformer, type RunningInformer } from '../kube/informer.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { AdmissionRequest, MutationResult } from '../webhook/admission.ts';
import { nativeSidecarSupported } from './native-sidecar.ts';

export const INJECTION_CONFIGMAP = 'cinch-injection';

export interface InjectorOptions {
  namespace: string;
  logger: Logger;
  registry: Registry;
  /** How often kubelet versions are re-read for native-sidecar detection. */
  versionCheckIntervalMs?: number;
}

export class Injector {
  private config: InjectionConfig = structuredClone(DEFAULT_INJECTION_CONFIG);
  private configSource = 'defaults';
  private native = false;
  private namespaces?: RunningInformer<V1Namespace>;
  private configMaps?: RunningInformer<V1ConfigMap>;
  private versionTimer?: NodeJS.Timeout;
  private readonly core: CoreV1Api;
  private readonly configErrors: Counter;
  private readonly kc: KubeConfig;
  private readonly opts: InjectorOptions;
  private readonly onNativeChange: (supported: boolean) => void;

  constructor(kc: KubeConfig, opts: InjectorOptions) {
    this.kc = kc;
    this.opts = opts;
    this.core = kc.makeApiClient(CoreV1Api);
    this.configErrors = new Counter({
      name: 'cinch_injection_config_errors_total',
      help: 'Invalid cinch-injection ConfigMaps seen (the last good config stays in use).',
      registers: [opts.registry],
    });
    const nativeGauge = new Gauge({
      name: 'cinch_injection_native_sidecar_supported',
      help: '1 when the API server and every kubelet support native sidecars (used when nativeSidecar is auto).',
      registers: [opts.registry],
    });
    nativeGauge.set(0);
    this.onNativeChange = (supported) => nativeGauge.set(supported ? 1 : 0);
  }

  get currentConfig(): Readonly<InjectionConfig> {
    return this.config;
  }

  get nativeSidecarSupported(): boolean {
    return this.native;
  }

  async start(): Promise<void> {
    const log = this.opts.logger;
    this.namespaces = runInformer(this.kc, '/api/v1/namespaces', () => this.core.listNamespace(), {}, log);
    const reload = (cm: V1ConfigMap) => {
      if (cm.metadata?.name === INJECTION_CONFIGMAP) this.applyConfigMap(cm);
    };
    this.configMaps = runInformer(
      this.kc,
      `/api/v1/namespaces/${this.opts.namespace}/configmaps`,
      () => this.core.listNamespacedConfigMap({ namespace: this.opts.namespace }),
      {
        add: reload,
        update: reload,
        delete: (cm) => {
          if (cm.metadata?.name !== INJECTION_CONFIGMAP) return;
          this.config = structuredClone(DEFAULT_INJECTION_CONFIG);
          this.configSource = 'defaults';
          log.info('injection ConfigMap deleted; using the defaults', { configMap: INJECTION_CONFIGMAP });
        },
      },
      log,
    );
    await this.detectNativeSidecars();
    this.versionTimer = setInterval(() => void this.detectNativeSidecars(), this.opts.versionCheckIntervalMs ?? 300_000);
    this.versionTimer.unref();
    await Promise.all([this.namespaces.synced, this.configMaps.synced]);
  }

  async stop(): Promise<void> {
    clearInterval(this.versionTimer);
    await Promise.all([this.namespaces?.stop(), this.configMaps?.stop()]);
  }

  /** Invalid config keeps the last good one, and says why. */
  applyConfigMap(cm: V1ConfigMap): void {
    try {
      this.config = parseInjectionConfig(cm.data ?? {});
      this.configSource = `${cm.metadata?.namespace}/${cm.metadata?.name}@${cm.metadata?.resourceVersion}`;
      this.opts.logger.info('injection config loaded', { source: this.configSource, proxyImage: this.config.proxyImage, nativeSidecar: this.config.nativeSidecar });
    } catch (err) {
      this.configErrors.inc();
      this.opts.logger.error('invalid injection ConfigMap; keeping the last good config', {
        configMap: `${cm.metadata?.namespace}/${cm.metadata?.name}`,
        error: (err as Error).message,
        inUse: this.configSource,
      });
    }
  }

  private async detectNativeSidecars(): Promise<void> {
    try {
      const [version, nodes] = await Promise.all([this.kc.makeApiClient(VersionApi).getCode(), this.core.listNode()]);
      const kubelets = nodes.items.map((n) => n.status?.nodeInfo?.kubeletVersion);
      const supported = nativeSidecarSupported(version.gitVersion, kubelets);
      if (supported !== this.native) this.opts.logger.info('native sidecar support', { supported, apiServer: version.gitVersion, nodes: kubelets.length });
      this.native = supported;
      this.onNativeChange(supported);
    } catch (err) {
      // Keep the previous answer; the classic layout works everywhere.
      this.opts.logger.warn('could not read cluster versions for native-sidecar detection', { err });
    }
  }

  private async namespaceInfo(name: string): Promise<NamespaceInfo> {
    const cached = this.namespaces?.get(name);
    if (cached) return { name, labels: cached.metadata?.labels };
    // A namespace created a moment ago may not be in the cache yet.
    const ns = await this.core.readNamespace({ name });
    return { name, labels: ns.metadata?.labels };
  }

  /** The webhook's mutator. */
  mutate = async (pod: V1Pod, request: AdmissionRequest): Promise<MutationResult> => {
    const namespace = request.namespace || pod.metadata?.namespace || 'default';
    const decision = shouldInject(pod, await this.namespaceInfo(namespace));
    if (!decision.inject) return { kind: 'skip', reason: decision.reason };
    try {
      const result = injectPod(pod, { config: this.config, nativeSidecarSupported: this.native });
      return { kind: 'patch', patch: result.patch, reason: decision.reason, warnings: result.warnings };
    } catch (err) {
      if (err instanceof InjectionError) return { kind: 'refuse', reason: err.code, message: err.message };
      throw err;
    }
  };
}
