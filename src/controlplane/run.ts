// `cinch control-plane`: wires the servers and controllers together and shuts them down in order.
//   15017 injection webhook · 15012 CA API + proxy config stream (mesh server) · 15014 metrics/health
//   every replica: webhook, CA, config stream, mesh state · the leader: caBundle, trust bundle, CSR signer
import { once } from 'node:events';
import os from 'node:os';
import { VersionApi } from '@kubernetes/client-node';
import { Gauge } from 'prom-client';
import { FastLeafSigner } from '../ca/fast-signer.ts';
import { caRouter } from '../ca/http.ts';
import { createCaMetrics } from '../ca/metrics.ts';
import { TokenBucketLimiter } from '../ca/rate-limit.ts';
import { TokenAuthenticator } from '../identity/token-review.ts';
import { LeaderElector } from '../kube/leader.ts';
import { loadKubeConfig } from '../kube/config.ts';
import { createLogger } from '../telemetry/logger.ts';
import { createRegistry } from '../telemetry/metrics.ts';
import { createWebhookServer } from '../webhook/server.ts';
import { watchCaDir, watchCaSecret } from './ca-watch.ts';
import { loadCaDir, loadOrCreateCaSecret, type CaSource } from './ca-store.ts';
import { configRouter } from './config-stream.ts';
import { CsrSigner } from './csr-signer.ts';
import { Injector } from './injection.ts';
import { createMeshServer } from './mesh-server.ts';
import { MeshState } from './mesh-state.ts';
import { createMonitoringServer } from './monitoring.ts';
import { controlPlaneNames, issueServingCertificate } from './serving-cert.ts';
import { TrustBundleController } from './trust-bundle.ts';
import { WebhookCaBundleController } from './webhook-ca-bundle.ts';

export interface ControlPlaneOptions {
  kubeconfig?: string;
  namespace: string;
  trustDomain: string;
  monitoringPort: number;
  webhookPort: number;
  caPort: number;
  listenAddress: string;
  /** A plugged-in cacerts folder instead of Secret cinch-ca. */
  caDir?: string;
  /** For a control plane outside the cluster (local runs): the URL the API server calls the webhook at. */
  webhookUrl?: string;
  /** Extra DNS names or IPs on the serving certificates (e.g. the address proxies use to reach the CA). */
  servingSan: string[];
  defaultCertTtl: number;
  maxCertTtl: number;
  /** After SIGTERM: unready at once, keep serving this long so Endpoints drop the pod before listeners close. */
  shutdownDelaySeconds?: number;
}

export const LEADER_LEASE = 'cinch-controllers';

export async function runControlPlane(opts: ControlPlaneOptions): Promise<void> {
  const identity = process.env.POD_NAME || `${os.hostname()}-${process.pid}`;
  const log = createLogger({ context: { component: 'control-plane', namespace: opts.namespace, replica: identity } });
  const registry = createRegistry({ component: 'control-plane' });
  const kc = loadKubeConfig(opts.kubeconfig);
  const notReady = new Set<string>(['kubernetes API not reached yet', 'CA not loaded yet', 'webhook not serving yet', 'CA server not serving yet', 'mesh state not synced']);

  const monitoring = createMonitoringServer(registry, { live: () => true, notReadyReasons: () => [...notReady] });
  monitoring.listen(opts.monitoringPort, opts.listenAddress);
  await once(monitoring, 'listening');
  log.info('monitoring server listening', { port: opts.monitoringPort });

  const version = await kc.makeApiClient(VersionApi).getCode();
  notReady.delete('kubernetes API not reached yet');
  log.info('connected to the Kubernetes API server', { server: kc.getCurrentCluster()?.server, version: version.gitVersion });

  // Inconsistent CA material stops the start here, with the failed check in the message.
  let ca: CaSource = opts.caDir ? loadCaDir(opts.caDir) : await loadOrCreateCaSecret(kc, opts.namespace, opts.trustDomain, log);
  const ttl = { defaultSeconds: opts.defaultCertTtl, maxSeconds: opts.maxCertTtl };
  let signer = new FastLeafSigner(ca.material, { ttl });
  const caMetrics = createCaMetrics(registry);
  caMetrics.observeMaterial(ca.material);
  notReady.delete('CA not loaded yet');
  log.info('CA loaded', { origin: ca.origin, signingCertNotAfter: ca.material.signingCertNotAfter.toISOString(), roots: ca.material.trustBundle.length });

  const servingNames = [...controlPlaneNames('cinch', opts.namespace), '127.0.0.1', ...opts.servingSan];
  const servingCert = await issueServingCertificate(ca.material, servingNames);

  // Admission webhook (15017): sidecar injection, and policy validation at kubectl apply.
  const injector = new Injector(kc, { namespace: opts.namespace, logger: log.child({ component: 'injector' }), registry });
  await injector.start();
  const webhook = createWebhookServer({
    key: servingCert.keyPem,
    cert: servingCert.certChainPem,
    mutate: injector.mutate,
    registry,
    logger: log.child({ component: 'webhook' }),
    policyOptions: { rootNamespace: opts.namespace },
  });
  await webhook.listen(opts.webhookPort, opts.listenAddress);
  notReady.delete('webhook not serving yet');
  log.info('injection webhook listening', { port: opts.webhookPort });

  // CA API and proxy config stream (15012).
  const mesh = new MeshState(kc, {
    trustDomain: opts.trustDomain,
    rootNamespace: opts.namespace,
    trustBundle: ca.material.trustBundle,
    logger: log.child({ component: 'mesh-state' }),
    registry,
    instance: identity,
  });
  // Not awaited: without the policy CRDs it never syncs; the config stream answers 503 and proxies stay fail-closed.
  void mesh.start().then(() => notReady.delete('mesh state not synced'));
  const configClosing = new AbortController();
  const meshServer = createMeshServer({
    key: servingCert.keyPem,
    cert: servingCert.certChainPem,
    trustBundle: ca.material.trustBundle,
    routers: [
      caRouter({
        signer: () => signer,
        trustBundle: () => ca.material.trustBundle,
        authenticator: new TokenAuthenticator(kc, { audience: 'cinch-ca', registry }),
        trustDomain: opts.trustDomain,
        rateLimiter: new TokenBucketLimiter(),
        metrics: caMetrics,
        logger: log.child({ component: 'ca' }),
      }),
      configRouter({ state: mesh, logger: log.child({ component: 'config-stream' }), registry, closing: configClosing.signal }),
    ],
    logger: log.child({ component: 'mesh-server' }),
    registry,
  });
  await meshServer.listen(opts.caPort, opts.listenAddress);
  notReady.delete('CA server not serving yet');
  log.info('CA and config server listening', { port: opts.caPort });

  // Serving certificates: renewed at half their life, and at once when the CA changes.
  const reissueServingCerts = (why: string) =>
    issueServingCertificate(ca.material, servingNames).then(
      (c) => {
        webhook.setCertificate(c.keyPem, c.certChainPem);
        meshServer.setCredentials(c.keyPem, c.certChainPem, ca.material.trustBundle);
        log.info('serving certificates renewed', { why, notAfter: c.notAfter.toISOString() });
      },
      (err: Error) => log.error('could not renew the serving certificates', { why, err }),
    );
  const renewTimer = setInterval(() => void reissueServingCerts('half-life'), Math.max(60_000, (servingCert.notAfter.getTime() - Date.now()) / 2));
  renewTimer.unref();

  // Controllers that must run once across replicas.
  const caBundle = new WebhookCaBundleController(kc, { url: opts.webhookUrl, logger: log.child({ component: 'webhook-ca-bundle' }) });
  // Policy validation is served by the same server, at /validate.
  const policyCaBundle = new WebhookCaBundleController(kc, {
    kind: 'validating',
    url: opts.webhookUrl ? new URL('/validate', opts.webhookUrl).toString() : undefined,
    logger: log.child({ component: 'webhook-ca-bundle' }),
  });
  const trustBundle = new TrustBundleController(kc, { logger: log.child({ component: 'trust-bundle' }), registry });
  const csrSigner = new CsrSigner(kc, { trustDomain: opts.trustDomain, ttl, logger: log.child({ component: 'csr-signer' }), registry });
  const leading = new Gauge({ name: 'cinch_leader', help: '1 on the replica that runs the leader-elected controllers.', registers: [registry] });
  leading.set(0);
  const elector = new LeaderElector(kc, {
    namespace: opts.namespace,
    name: LEADER_LEASE,
    identity,
    logger: log.child({ component: 'leader-election' }),
    onStartedLeading: (signal) => {
      leading.set(1);
      signal.addEventListener('abort', () => leading.set(0));
      void caBundle.start(ca.material.trustBundle);
      void policyCaBundle.start(ca.material.trustBundle);
      void trustBundle.start(ca.material.trustBundle);
      void csrSigner.start(ca.material);
      signal.addEventListener('abort', () => {
        void caBundle.stop();
        void policyCaBundle.stop();
        void trustBundle.stop();
        void csrSigner.stop();
      });
    },
  });
  elector.start();

  // Root rotation and replaced intermediates arrive as Secret edits (or new files in --ca-dir); every replica follows them.
  const caFollow = {
    current: ca.material,
    logger: log.child({ component: 'ca-watch' }),
    onChange: (next: CaSource) => {
      ca = next;
      signer = new FastLeafSigner(next.material, { ttl });
      caMetrics.observeMaterial(next.material);
      mesh.setTrustBundle(next.material.trustBundle);
      trustBundle.setRoots(next.material.trustBundle);
      caBundle.setRoots(next.material.trustBundle);
      policyCaBundle.setRoots(next.material.trustBundle);
      csrSigner.setMaterial(next.material);
      void reissueServingCerts('CA material changed');
    },
  };
  const caWatch = opts.caDir ? watchCaDir(opts.caDir, caFollow) : watchCaSecret(kc, { namespace: opts.namespace, ...caFollow });

  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort(signal));
  await once(stop.signal, 'abort');
  log.info('shutting down: draining in-flight requests', { signal: String(stop.signal.reason) });
  notReady.add('shutting down');
  if (opts.shutdownDelaySeconds) {
    // Admission calls keep arriving until kube-proxy has dropped this pod; with failurePolicy Fail a
    // refused connection would reject a pod, so keep serving (unready) for a moment first.
    log.info('unready; serving until endpoints drop this replica', { seconds: opts.shutdownDelaySeconds });
    await new Promise((r) => setTimeout(r, opts.shutdownDelaySeconds! * 1000));
  }
  clearInterval(renewTimer);
  await elector.stop();
  configClosing.abort();
  await Promise.all([webhook.close(), meshServer.close()]);
  await Promise.all([injector.stop(), mesh.stop(), caWatch.stop()]);
  monitoring.close();
  monitoring.closeAllConnections();
  // Anything still open now (a client library's retry timer, a watch being re-established) would keep
  // a terminated pod alive until SIGKILL; the caller exits, and this line names what was left.
  log.info('stopped', { openHandles: process.getActiveResourcesInfo() });
}
