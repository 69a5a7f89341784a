import type { Command } from 'commander';
import { parsePositiveInt } from './common.ts';

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('run the sidecar: identity agent (key, CSR, rotation), inbound (15006) and outbound (15001) mTLS proxy, authorization, probes and metrics (15020), readiness (15021)')
    .option('--drain-seconds <n>', 'how long open connections may finish after SIGTERM', parsePositiveInt, 5)
    .addHelpText(
      'after',
      '\nConfigured by the environment the injector writes: POD_NAME, POD_NAMESPACE, INSTANCE_IP, SERVICE_ACCOUNT,\nCINCH_CA_ADDRESS, CINCH_TRUST_DOMAIN, CINCH_LOG_LEVEL, CINCH_APP_PROBES; outside a pod also CINCH_TOKEN_FILE,\nCINCH_CA_ROOT_FILE and CINCH_CERT_TTL_SECONDS.',
    )
    .action(async (opts: { drainSeconds: number }) => {
      const [{ runProxy }, { ProxyEnvError }] = await Promise.all([import('../proxy/run.ts'), import('../proxy/env.ts')]);
      const { CliError } = await import('./common.ts');
      try {
        await runProxy(opts);
      } catch (err) {
        if (err instanceof ProxyEnvError) throw new CliError(`cinch proxy: ${err.message}`, 2);
        throw err;
      }
    });
}
