// Keeps the MutatingWebhookConfiguration's caBundle equal to the mesh roots, so the API server trusts
// the webhook's CA-issued serving certificate. Re-applied when someone re-applies the manifest
// (which carries an empty caBundle) and whenever the roots change.
import { AdmissionregistrationV1Api, type KubeConfig, type V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { runInformer, type RunningInformer } from '../kube/informer.ts';
import type { Logger } from '../telemetry/logger.ts';

export const WEBHOOK_CONFIGURATION = 'cinch-sidecar-injector';

type PatchOp = { op: 'replace' | 'add' | 'remove'; path: string; value?: unknown };

/** Pure: the JSONPatch that brings every webhook to `caBundle` (and `url`, for a control plane outside the cluster). */
export function caBundlePatch(config: V1MutatingWebhookConfiguration, caBundleB64: string, url?: string): PatchOp[] {
  const ops: PatchOp[] = [];
  (config.webhooks ?? []).forEach((webhook, i) => {
    const client = webhook.clientConfig ?? {};
    if (client.caBundle !== caBundleB64) ops.push({ op: client.caBundle === undefined ? 'add' : 'replace', path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundleB64 });
    if (url && client.url !== url) {
      ops.push({ op: client.url === undefined ? 'add' : 'replace', path: `/webhooks/${i}/clientConfig/url`, value: url });
      if (client.service) ops.push({ op: 'remove', path: `/webhooks/${i}/clientConfig/service` });
    }
  });
  return ops;
}

export class WebhookCaBundleController {
  private informer?: RunningInformer<V1MutatingWebhookConfiguration>;
  private bundle = '';
  private readonly api: AdmissionregistrationV1Api;
  private readonly kc: KubeConfig;
  private readonly opts: { name: string; url?: string; logger: Logger };

  constructor(kc: KubeConfig, opts: { name?: string; url?: string; logger: Logger }) {
    this.kc = kc;
    this.api = kc.makeApiClient(AdmissionregistrationV1Api);
    this.opts = { ...opts, name: opts.name ?? WEBHOOK_CONFIGURATION };
  }

  async start(rootsPem: readonly string[]): Promise<void> {
    this.bundle = Buffer.from(rootsPem.join('')).toString('base64');
    const reconcile = (c: V1MutatingWebhookConfiguration) => {
      if (c.metadata?.name === this.opts.name) void this.reconcile(c);
    };
    this.informer = runInformer(
      this.kc,
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
      () => this.api.listMutatingWebhookConfiguration(),
      { add: reconcile, update: reconcile },
      this.opts.logger,
    );
    await this.informer.synced;
    const current = this.informer.get(this.opts.name);
    if (!current) this.opts.logger.warn('MutatingWebhookConfiguration not found; apply webhook-config/ to enable injection', { name: this.opts.name });
  }

  setRoots(rootsPem: readonly string[]): void {
    this.bundle = Buffer.from(rootsPem.join('')).toString('base64');
    const current = this.informer?.get(this.opts.name);
    if (current) void this.reconcile(current);
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
  }

  private async reconcile(config: V1MutatingWebhookConfiguration): Promise<void> {
    const ops = caBundlePatch(config, this.bundle, this.opts.url);
    if (ops.length === 0) return;
    // The resourceVersion test makes a concurrent edit fail instead of being overwritten; the informer retries.
    const patch = [{ op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion }, ...ops];
    try {
      await this.api.patchMutatingWebhookConfiguration({ name: this.opts.name, body: patch });
      this.opts.logger.info('webhook caBundle updated', { name: this.opts.name, webhooks: config.webhooks?.length ?? 0 });
    } catch (err) {
      this.opts.logger.warn('could not patch the webhook caBundle; will retry on the next change', { name: this.opts.name, err });
    }
  }
}
