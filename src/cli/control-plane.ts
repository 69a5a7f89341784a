import type { Command } from 'commander';
import { parsePort } from './common.ts';

export function registerControlPlane(program: Command): void {
  program
    .command('control-plane')
    .description('run the control plane: injection webhook (15017), CA and config server (15012), metrics and health (15014), controllers')
    .option('--kubeconfig <file>', 'kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
    .option('--namespace <ns>', 'namespace the control plane runs in (also the mesh root namespace)', 'cinch-system')
    .option('--trust-domain <domain>', 'SPIFFE trust domain', 'cluster.local')
    .option('--monitoring-port <port>', 'HTTP port for /metrics, /healthz and /readyz', parsePort, 15014)
    .option('--listen-address <addr>', 'address the servers bind to', '0.0.0.0')
    .action(async (opts: { kubeconfig?: string; namespace: string; trustDomain: string; monitoringPort: number; listenAddress: string }) => {
      const { runControlPlane } = await import('../controlplane/run.ts');
      await runControlPlane(opts);
    });
}
