// `cinch check`: what an operator runs when something is off. Each check says what it found and, when
// it is not fine, how to fix it. Checks only read; a failed check never stops the others.
import { ApiextensionsV1Api, AdmissionregistrationV1Api, CoreV1Api, VersionApi, type KubeConfig } from '@kubernetes/client-node';
import { X509Certificate } from 'node:crypto';
import { loadCaMaterial } from '../ca/material.ts';
import { CA_ROOT_CONFIGMAP, CA_ROOT_KEY, INJECT_ENABLED, INJECT_LABEL, STATUS_ANNOTATION } from '../inject/names.ts';
import { CA_SECRET, decodeSecretData } from './ca-store.ts';
import { WEBHOOK_CONFIGURATION } from './webhook-ca-bundle.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail';
export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

const DAY = 86_400_000;
const BUNDLE_EXEMPT = new Set(['kube-public', 'kube-node-lease']);

/** Pure: how a CA certificate's remaining validity is judged (warn 30 days ahead, fail when expired). */
export function expiryStatus(what: string, notAfter: Date, now: Date, warnDays = 30): CheckResult {
  const days = Math.floor((notAfter.getTime() - now.getTime()) / DAY);
  if (notAfter.getTime() <= now.getTime()) {
    return { name: what, status: 'fail', detail: `expired on ${notAfter.toISOString()}`, fix: 'rotate it now (docs/root-rotation.md); every workload certificate it signed is expiring with it' };
  }
  if (days < warnDays) return { name: what, status: 'warn', detail: `expires in ${days} days (${notAfter.toISOString()})`, fix: 'plan a rotation (docs/root-rotation.md)' };
  return { name: what, status: 'ok', detail: `valid until ${notAfter.toISOString()} (${days} days)` };
}

/** Pure: the roots in a PEM bundle, as a comparable set of fingerprints. */
export function rootFingerprints(pem: string): Set<string> {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return new Set(blocks.map((b) => new X509Certificate(b).fingerprint256));
}

function errText(err: unknown): string {
  const e = err as { code?: number; message?: string };
  return e.code ? `HTTP ${e.code}` : (e.message ?? String(err));
}

export async function runChecks(kc: KubeConfig, namespace: string, now = new Date()): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const core = kc.makeApiClient(CoreV1Api);

  try {
    const v = await kc.makeApiClient(VersionApi).getCode();
    results.push({ name: 'Kubernetes API', status: 'ok', detail: `reachable at ${kc.getCurrentCluster()?.server}, version ${v.gitVersion}` });
  } catch (err) {
    results.push({ name: 'Kubernetes API', status: 'fail', detail: `not reachable: ${errText(err)}`, fix: 'check KUBECONFIG / --kubeconfig and that the API server is up' });
    return results; // nothing else can be checked
  }

  const ext = kc.makeApiClient(ApiextensionsV1Api);
  for (const crd of ['peerauthentications.security.istio.io', 'authorizationpolicies.security.istio.io']) {
    try {
      const obj = await ext.readCustomResourceDefinition({ name: crd });
      const established = obj.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
      results.push(established ? { name: `CRD ${crd}`, status: 'ok', detail: 'installed' } : { name: `CRD ${crd}`, status: 'fail', detail: 'present but not Established', fix: 'kubectl describe crd ' + crd });
    } catch (err) {
      results.push({ name: `CRD ${crd}`, status: 'fail', detail: `missing (${errText(err)})`, fix: 'kubectl apply -k webhook-config/' });
    }
  }

  let roots = new Set<string>();
  try {
    const secret = await core.readNamespacedSecret({ name: CA_SECRET, namespace });
    const material = loadCaMaterial(decodeSecretData(secret), now);
    roots = rootFingerprints(material.trustBundle.join(''));
    results.push(expiryStatus('CA root', material.rootNotAfter, now));
    if (material.chain.length > 1) results.push(expiryStatus('CA signing (intermediate) certificate', material.signingCertNotAfter, now));
  } catch (err) {
    const missing = (err as { code?: number }).code === 404;
    results.push({
      name: 'CA material',
      status: 'fail',
      detail: missing ? `Secret ${namespace}/${CA_SECRET} not found` : `unusable: ${errText(err)}`,
      fix: missing ? 'start the control plane once (it creates a root), or plug in an intermediate as Secret cinch-ca' : 'fix or replace Secret cinch-ca (cinch ca inspect on its files tells what is wrong)',
    });
  }

  try {
    const mwc = await kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION });
    for (const webhook of mwc.webhooks ?? []) {
      const bundle = webhook.clientConfig.caBundle ? Buffer.from(webhook.clientConfig.caBundle, 'base64').toString('utf8') : '';
      if (!bundle) {
        results.push({ name: `webhook ${webhook.name}`, status: 'fail', detail: 'caBundle is empty: the API server cannot trust the webhook', fix: 'the control plane fills it in when it leads; check that it runs (kubectl -n cinch-system get pods)' });
        continue;
      }
      let fingerprints: Set<string>;
      try {
        fingerprints = rootFingerprints(bundle);
      } catch {
        results.push({ name: `webhook ${webhook.name}`, status: 'fail', detail: 'caBundle is not a PEM certificate bundle', fix: 'delete the caBundle field; the control plane rewrites it' });
        continue;
      }
      const matches = roots.size === 0 || [...roots].every((r) => fingerprints.has(r));
      results.push(
        matches
          ? { name: `webhook ${webhook.name}`, status: 'ok', detail: `registered (failurePolicy ${webhook.failurePolicy}, timeout ${webhook.timeoutSeconds ?? 10}s), caBundle holds the mesh roots` }
          : { name: `webhook ${webhook.name}`, status: 'fail', detail: 'caBundle does not hold the current mesh roots', fix: 'the control plane rewrites it when it leads; check its logs' },
      );
    }
  } catch (err) {
    results.push({ name: 'webhook', status: 'fail', detail: `MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION} missing (${errText(err)})`, fix: 'kubectl apply -k webhook-config/' });
  }

  try {
    const svc = await core.readNamespacedEndpoints({ name: 'cinch', namespace });
    const ready = (svc.subsets ?? []).reduce((n, s) => n + (s.addresses?.length ?? 0), 0);
    results.push(
      ready > 0
        ? { name: 'control plane endpoints', status: 'ok', detail: `${ready} ready` }
        : { name: 'control plane endpoints', status: 'fail', detail: 'no ready control plane behind Service cinch: pod creation in labelled namespaces fails (failurePolicy Fail)', fix: `kubectl -n ${namespace} describe pods -l app=cinch` },
    );
  } catch (err) {
    results.push({ name: 'control plane endpoints', status: 'warn', detail: `Service ${namespace}/cinch has no Endpoints (${errText(err)}); fine for a control plane run outside the cluster` });
  }

  const namespaces = (await core.listNamespace()).items;
  const withoutBundle: string[] = [];
  const staleBundle: string[] = [];
  for (const ns of namespaces) {
    const name = ns.metadata?.name ?? '';
    if (BUNDLE_EXEMPT.has(name)) continue;
    try {
      const cm = await core.readNamespacedConfigMap({ name: CA_ROOT_CONFIGMAP, namespace: name });
      const have = rootFingerprints(cm.data?.[CA_ROOT_KEY] ?? '');
      if (roots.size > 0 && (have.size !== roots.size || [...roots].some((r) => !have.has(r)))) staleBundle.push(name);
    } catch {
      withoutBundle.push(name);
    }
  }
  if (withoutBundle.length + staleBundle.length === 0) results.push({ name: 'trust bundle', status: 'ok', detail: `ConfigMap ${CA_ROOT_CONFIGMAP} current in all ${namespaces.length - 2} namespaces` });
  if (withoutBundle.length) results.push({ name: 'trust bundle', status: 'fail', detail: `missing in: ${withoutBundle.join(', ')}`, fix: 'the leading control plane distributes it within seconds; check that one leads (kubectl -n cinch-system get lease cinch-controllers)' });
  if (staleBundle.length) results.push({ name: 'trust bundle', status: 'warn', detail: `differs from the CA's roots in: ${staleBundle.join(', ')}`, fix: 'expected during a root rotation; otherwise check the control plane logs' });

  const uninjected: string[] = [];
  for (const ns of namespaces.filter((n) => n.metadata?.labels?.[INJECT_LABEL] === INJECT_ENABLED)) {
    const pods = await core.listNamespacedPod({ namespace: ns.metadata!.name! });
    for (const pod of pods.items) {
      if (pod.spec?.hostNetwork || pod.metadata?.labels?.[INJECT_LABEL] === 'disabled' || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
      if (!pod.metadata?.annotations?.[STATUS_ANNOTATION]) uninjected.push(`${ns.metadata!.name}/${pod.metadata?.name}`);
    }
  }
  results.push(
    uninjected.length === 0
      ? { name: 'injection', status: 'ok', detail: 'every pod in a labelled namespace carries the proxy' }
      : { name: 'injection', status: 'warn', detail: `${uninjected.length} pod(s) in labelled namespaces run without the proxy (created before the label, or while the webhook was down): ${uninjected.slice(0, 10).join(', ')}${uninjected.length > 10 ? ', …' : ''}`, fix: 'restart their workloads: kubectl rollout restart deployment -n <namespace>' },
  );
  return results;
}

export function formatResults(results: readonly CheckResult[]): string {
  const mark: Record<CheckStatus, string> = { ok: '✔', warn: '⚠', fail: '✖' };
  const lines = results.map((r) => `${mark[r.status]} ${r.name}: ${r.detail}${r.fix ? `\n    fix: ${r.fix}` : ''}`);
  const failed = results.filter((r) => r.status === 'fail').length;
  const warned = results.filter((r) => r.status === 'warn').length;
  lines.push('', failed ? `${failed} check(s) failed, ${warned} warning(s)` : `all checks passed${warned ? ` (${warned} warning(s))` : ''}`);
  return lines.join('\n');
}
