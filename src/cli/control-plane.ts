import type { Command } from 'commander';
import type { ControlPlaneOptions } from '../controlplane/run.ts';
import { parsePort, parsePositiveInt } from './common.ts';

export function registerControlPlane(program: Command): void {
  program
    .command('control-plane')
    .description('run the control plane: injection webhook (15017), CA and config server (15012), metrics and health (15014), controllers')
    .option('--kubeconfig <file>', 'kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
    .option('--namespace <ns>', 'namespace the control plane runs in (also the mesh root namespace)', 'cinch-system')
    .option('--trust-domain <domain>', 'SPIFFE trust domain', 'cluster.local')
    .option('--monitoring-port <port>', 'HTTP port for /metrics, /healthz and /readyz', parsePort, 15014)
    .option('--webhook-port <port>', 'HTTPS port of the injection webhook', parsePort, 15017)
    .option('--ca-port <port>', 'HTTPS port of the CA and config server', parsePort, 15012)
    .option('--listen-address <addr>', 'address the servers bind to', '0.0.0.0')
    .option('--ca-dir <dir>', 'use a plugged-in cacerts folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) instead of Secret cinch-ca')
    .option('--serving-san <name>', 'extra DNS name or IP on the control plane\'s serving certificates (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--default-cert-ttl <seconds>', 'workload certificate lifetime when the caller does not ask for one', parsePositiveInt, 3600)
    .option('--max-cert-ttl <seconds>', 'longest workload certificate lifetime the CA grants', parsePositiveInt, 86400)
    .option('--shutdown-delay-seconds <n>', 'after SIGTERM, stay unready but serving this long before closing listeners (set in the Deployment)', (v: string) => Number(v), 0)
    .option('--webhook-url <url>', 'for a control plane outside the cluster: the URL the API server calls the webhook at (written into the webhook configuration)')
    .action(async (opts: ControlPlaneOptions) => {
      const { runControlPlane } = await import('../controlplane/run.ts');
      await runControlPlane(opts);
      // Listeners are closed and in-flight requests answered: exit even if a library left a timer behind.
      process.exit(0);
    });
}
