import type { Command } from 'commander';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('verify an installation against a cluster: API server, CRDs, webhook, CA validity, trust bundles, uninjected pods')
    .option('--kubeconfig <file>', 'kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
    .option('--namespace <ns>', 'the control plane namespace', 'cinch-system')
    .option('-o, --output <format>', "'text' or 'json'", 'text')
    .action(async (opts: { kubeconfig?: string; namespace: string; output: string }) => {
      const [{ loadKubeConfig }, { runChecks, formatResults }] = await Promise.all([import('../kube/config.ts'), import('../controlplane/check.ts')]);
      const results = await runChecks(loadKubeConfig(opts.kubeconfig), opts.namespace);
      process.stdout.write(opts.output === 'json' ? `${JSON.stringify(results, null, 2)}\n` : `${formatResults(results)}\n`);
      if (results.some((r) => r.status === 'fail')) process.exitCode = 1;
    });
}
