// `cinch control-plane`: wires the servers and controllers together and shuts them down in order.
import { once } from 'node:events';
import { VersionApi } from '@kubernetes/client-node';
import { createLogger } from '../telemetry/logger.ts';
import { createRegistry } from '../telemetry/metrics.ts';
import { loadKubeConfig } from '../kube/config.ts';
import { createMonitoringServer } from './monitoring.ts';

export interface ControlPlaneOptions {
  kubeconfig?: string;
  namespace: string;
  trustDomain: string;
  monitoringPort: number;
  listenAddress: string;
}

export async function runControlPlane(opts: ControlPlaneOptions): Promise<void> {
  const log = createLogger({ context: { component: 'control-plane', namespace: opts.namespace } });
  const registry = createRegistry({ component: 'control-plane' });
  const kc = loadKubeConfig(opts.kubeconfig);
  const notReady = new Set<string>(['kubernetes API not reached yet']);

  const monitoring = createMonitoringServer(registry, { live: () => true, notReadyReasons: () => [...notReady] });
  monitoring.listen(opts.monitoringPort, opts.listenAddress);
  await once(monitoring, 'listening');
  log.info('monitoring server listening', { port: opts.monitoringPort });

  const version = await kc.makeApiClient(VersionApi).getCode();
  notReady.delete('kubernetes API not reached yet');
  log.info('connected to the Kubernetes API server', { server: kc.getCurrentCluster()?.server, version: version.gitVersion });

  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort(signal));
  await once(stop.signal, 'abort');
  log.info('shutting down', { signal: String(stop.signal.reason) });
  monitoring.close();
  monitoring.closeAllConnections();
}
