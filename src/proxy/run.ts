// `cinch proxy`: the identity agent, the config stream, and the listeners, wired together.
// Ready (15021) only once it holds a certificate and a config; on SIGTERM (or POST /quitquitquit from
// inside the pod) it stops accepting, lets open connections finish for a grace period, then exits.
import { createProxyLogger } from './log.ts';
import { createRegistry } from '../telemetry/metrics.ts';
import { AdminServer, type Readiness } from './admin.ts';
import { IdentityAgent } from './agent.ts';
import { ConfigClient } from './config.ts';
import { parseProxyEnv } from './env.ts';
import { InboundProxy } from './inbound.ts';
import { ProxyMetrics } from './metrics.ts';
import { originalDestination } from './original-dst.ts';
import { OutboundProxy } from './outbound.ts';
import { compileProxyConfig, LiveProxyConfig } from './policy-config.ts';
import { MutableTlsMaterial } from './types.ts';

export interface ProxyRunOptions {
  /** Seconds open connections get to finish after SIGTERM. */
  drainSeconds: number;
}

export async function runProxy(opts: ProxyRunOptions): Promise<void> {
  const settings = parseProxyEnv(process.env);
  const log = createProxyLogger({ level: settings.logLevel, context: { component: 'proxy', namespace: settings.namespace, pod: settings.podName, identity: settings.spiffeId } });
  const registry = createRegistry();
  const metrics = new ProxyMetrics(registry);
  const tlsMaterial = new MutableTlsMaterial();
  const live = new LiveProxyConfig();

  const agent = new IdentityAgent({
    caAddress: settings.caAddress,
    spiffeId: settings.spiffeId,
    tokenFile: settings.tokenFile,
    caRootFile: settings.caRootFile,
    ttlSeconds: settings.certTtlSeconds,
    logger: log.child({ component: 'identity-agent' }),
    registry,
  });
  const configClient = new ConfigClient({
    address: settings.caAddress,
    podName: settings.podName,
    credentials: () => tlsMaterial.current(),
    logger: log.child({ component: 'config' }),
  });
  configClient.on('config', (config) => {
    try {
      live.set(
        compileProxyConfig(config, (policies, request) =>
          log.info('audit', { policies, sourcePrincipal: request.source.principal, port: request.destination.port }),
        ),
      );
    } catch (err) {
      // The last good config stays in force; a config the core cannot compile is a control-plane bug.
      log.error('could not compile the pushed config; keeping the previous one', { version: config.version, err });
    }
  });

  const readiness = (): Readiness => {
    if (!tlsMaterial.current()) return { ready: false, reason: 'no workload certificate yet' };
    if (!live.ready) return { ready: false, reason: 'no configuration from the control plane yet' };
    return { ready: true };
  };
  const stop = new AbortController();
  const admin = new AdminServer({ registry, readiness, probes: settings.appProbes, logger: log.child({ component: 'admin' }), onQuit: () => stop.abort('quitquitquit') });
  const inbound = new InboundProxy({ tls: tlsMaterial, config: () => live.inbound, originalDestination, metrics, logger: log.child({ component: 'inbound' }) });
  const outbound = new OutboundProxy({
    tls: tlsMaterial,
    config: () => live.outbound,
    originalDestination,
    metrics,
    logger: log.child({ component: 'outbound' }),
    workload: { name: settings.podName, namespace: settings.namespace },
  });

  // Probes and readiness answer from the start (kubelet asks before the first certificate arrives).
  await admin.listen();
  await Promise.all([inbound.listen(), outbound.listen()]);
  log.info('listening', { inbound: 15006, outbound: 15001, stats: 15020, ready: 15021, ca: settings.caAddress });

  agent.on('rotated', (cert) => {
    const first = !tlsMaterial.current();
    tlsMaterial.update(cert);
    if (first) configClient.start();
    else configClient.reconnect(); // the control plane sees the fresh certificate
  });
  void agent.start().catch(() => undefined);

  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort(signal));
  // A /quitquitquit may already have come in while the listeners started.
  if (!stop.signal.aborted) await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
  log.info('shutting down', { drainSeconds: opts.drainSeconds });
  agent.stop();
  configClient.stop();
  // Open connections get the grace period; close() tears down whatever is left at its end.
  await Promise.all([inbound.close(opts.drainSeconds * 1000), outbound.close(opts.drainSeconds * 1000)]);
  await admin.close();
}
