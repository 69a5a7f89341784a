// Keeps the webhook configurations' caBundle (the MutatingWebhookConfiguration for injection, the
// ValidatingWebhookConfiguration for policies) equal to the mesh roots, so the API server trusts the
// webhook's CA-issued serving certificate. Re-applied when someone re-applies the manifest (which
// carries an empty caBundle) and whenever the roots change.
import { AdmissionregistrationV1Api, type AdmissionregistrationV1WebhookClientConfig, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { runInformer, type RunningInformer } from '../kube/informer.ts';
import type { Logger } from '../telemetry/logger.ts';

export const WEBHOOK_CONFIGURATION = 'cinch-sidecar-injector';
export const POLICY_WEBHOOK_CONFIGURATION = 'cinch-policy-validator';

/** What both kinds of webhook configuration have in common here. */
type WebhookConfiguration = KubernetesObject & { webhooks?: { clientConfig?: AdmissionregistrationV1WebhookClientConfig }[] };

/** The two kinds differ only in the API calls: one adapter each. */
const KINDS = {
  mutating: {
    kind: 'MutatingWebhookConfiguration',
    plural: 'mutatingwebhookconfigurations',
    purpose: 'sidecar injection',
    list: (api: AdmissionregistrationV1Api) => api.listMutatingWebhookConfiguration(),
    patch: (api: AdmissionregistrationV1Api, name: string, body: object[]) => api.patchMutatingWebhookConfiguration({ name, body }),
  },
  validating: {
    kind: 'ValidatingWebhookConfiguration',
    plural: 'validatingwebhookconfigurations',
    purpose: 'policy validation at kubectl apply',
    list: (api: AdmissionregistrationV1Api) => api.listValidatingWebhookConfiguration(),
    patch: (api: AdmissionregistrationV1Api, name: string, body: object[]) => api.patchValidatingWebhookConfiguration({ name, body }),
  },
} as const;

type PatchOp = { op: 'replace' | 'add' | 'remove'; path: string; value?: unknown };

/** Pure: the JSONPatch that brings every webhook to `caBundle` (and `url`, for a control plane outside the cluster). */
export function caBundlePatch(config: WebhookConfiguration, caBundleB64: string, url?: string): PatchOp[] {
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
  private informer?: RunningInformer<WebhookConfiguration>;
  private bundle = '';
  private readonly api: AdmissionregistrationV1Api;
  private readonly kc: KubeConfig;
  private readonly opts: { name: string; url?: string; logger: Logger };
  private readonly kind: (typeof KINDS)[keyof typeof KINDS];

  constructor(kc: KubeConfig, opts: { name?: string; url?: string; logger: Logger; kind?: keyof typeof KINDS }) {
    this.kc = kc;
    this.api = kc.makeApiClient(AdmissionregistrationV1Api);
    this.kind = KINDS[opts.kind ?? 'mutating'];
    this.opts = { ...opts, name: opts.name ?? (opts.kind === 'validating' ? POLICY_WEBHOOK_CONFIGURATION : WEBHOOK_CONFIGURATION) };
  }

  async start(rootsPem: readonly string[]): Promise<void> {
    this.bundle = Buffer.from(rootsPem.join('')).toString('base64');
    const reconcile = (c: WebhookConfiguration) => {
      if (c.metadata?.name === this.opts.name) void this.reconcile(c);
    };
    this.informer = runInformer<WebhookConfiguration>(
      this.kc,
      `/apis/admissionregistration.k8s.io/v1/${this.kind.plural}`,
      () => this.kind.list(this.api),
      { add: reconcile, update: reconcile },
      this.opts.logger,
    );
    await this.informer.synced;
    const current = this.informer.get(this.opts.name);
    if (!current) this.opts.logger.warn(`${this.kind.kind} not found; apply webhook-config/ to enable ${this.kind.purpose}`, { name: this.opts.name });
  }

  setRoots(rootsPem: readonly string[]): void {
    this.bundle = Buffer.from(rootsPem.join('')).toString('base64');
    const current = this.informer?.get(this.opts.name);
    if (current) void this.reconcile(current);
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
  }

  private async reconcile(config: WebhookConfiguration): Promise<void> {
    const ops = caBundlePatch(config, this.bundle, this.opts.url);
    if (ops.length === 0) return;
    // The resourceVersion test makes a concurrent edit fail instead of being overwritten; the informer retries.
    const patch = [{ op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion }, ...ops];
    try {
      await this.kind.patch(this.api, this.opts.name, patch);
      this.opts.logger.info('webhook caBundle updated', { name: this.opts.name, webhooks: config.webhooks?.length ?? 0 });
    } catch (err) {
      this.opts.logger.warn('could not patch the webhook caBundle; will retry on the next change', { name: this.opts.name, err });
    }
  }
}
