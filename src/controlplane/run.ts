// `cinch control-plane`: wires the servers and controllers together and shuts them down in order.
import { once } from 'node:events';
import os from 'node:os';
import { VersionApi } from '@kubernetes/client-node';
import { LeaderElector } from '../kube/leader.ts';
import { loadKubeConfig } from '../kube/config.ts';
import { createLogger } from '../telemetry/logger.ts';
import { createRegistry } from '../telemetry/metrics.ts';
import { createWebhookServer } from '../webhook/server.ts';
import { loadCaDir, loadOrCreateCaSecret, type CaSource } from './ca-store.ts';
import { Injector } from './injection.ts';
import { createMonitoringServer } from './monitoring.ts';
import { controlPlaneNames, issueServingCertificate } from './serving-cert.ts';
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
}

export const LEADER_LEASE = 'cinch-controllers';

export async function runControlPlane(opts: ControlPlaneOptions): Promise<void> {
  const identity = process.env.POD_NAME || `${os.hostname()}-${process.pid}`;
  const log = createLogger({ context: { component: 'control-plane', namespace: opts.namespace, replica: identity } });
  const registry = createRegistry({ component: 'control-plane' });
  const kc = loadKubeConfig(opts.kubeconfig);
  const notReady = new Set<string>(['kubernetes API not reached yet', 'CA not loaded yet', 'webhook not serving yet']);

  const monitoring = createMonitoringServer(registry, { live: () => true, notReadyReasons: () => [...notReady] });
  monitoring.listen(opts.monitoringPort, opts.listenAddress);
  await once(monitoring, 'listening');
  log.info('monitoring server listening', { port: opts.monitoringPort });

  const version = await kc.makeApiClient(VersionApi).getCode();
  notReady.delete('kubernetes API not reached yet');
  log.info('connected to the Kubernetes API server', { server: kc.getCurrentCluster()?.server, version: version.gitVersion });

  // Inconsistent CA material stops the start here, with the failed check in the message.
  const ca: CaSource = opts.caDir ? loadCaDir(opts.caDir) : await loadOrCreateCaSecret(kc, opts.namespace, opts.trustDomain, log);
  notReady.delete('CA not loaded yet');
  log.info('CA loaded', { origin: ca.origin, signingCertNotAfter: ca.material.signingCertNotAfter.toISOString(), roots: ca.material.trustBundle.length });

  const servingNames = [...controlPlaneNames('cinch', opts.namespace), '127.0.0.1', ...opts.servingSan];
  const webhookCert = await issueServingCertificate(ca.material, servingNames);
  const injector = new Injector(kc, { namespace: opts.namespace, logger: log.child({ component: 'injector' }), registry });
  await injector.start();
  const webhook = createWebhookServer({
    key: webhookCert.keyPem,
    cert: webhookCert.certChainPem,
    mutate: injector.mutate,
    registry,
    logger: log.child({ component: 'webhook' }),
  });
  await webhook.listen(opts.webhookPort, opts.listenAddress);
  notReady.delete('webhook not serving yet');
  log.info('injection webhook listening', { port: opts.webhookPort });

  // Renew the serving certificate at half its life; open connections keep the old one.
  const renewEvery = Math.max(60_000, (webhookCert.notAfter.getTime() - Date.now()) / 2);
  const renewTimer = setInterval(() => {
    issueServingCertificate(ca.material, servingNames).then(
      (c) => {
        webhook.setCertificate(c.keyPem, c.certChainPem);
        log.info('webhook serving certificate renewed', { notAfter: c.notAfter.toISOString() });
      },
      (err: Error) => log.error('could not renew the webhook serving certificate', { err }),
    );
  }, renewEvery);
  renewTimer.unref();

  // Controllers that must run once across replicas.
  const caBundle = new WebhookCaBundleController(kc, { url: opts.webhookUrl, logger: log.child({ component: 'webhook-ca-bundle' }) });
  const elector = new LeaderElector(kc, {
    namespace: opts.namespace,
    name: LEADER_LEASE,
    identity,
    logger: log.child({ component: 'leader-election' }),
    onStartedLeading: (signal) => {
      void caBundle.start(ca.material.trustBundle);
      signal.addEventListener('abort', () => void caBundle.stop());
    },
  });
  elector.start();

  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort(signal));
  await once(stop.signal, 'abort');
  log.info('shutting down: draining in-flight requests', { signal: String(stop.signal.reason) });
  notReady.add('shutting down');
  clearInterval(renewTimer);
  await elector.stop();
  await webhook.close();
  await injector.stop();
  monitoring.close();
  monitoring.closeAllConnections();
  log.info('stopped');
}
