import type { Command } from 'commander';
import { notImplemented } from './common.ts';

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('run the sidecar: identity agent (key, CSR, rotation), inbound (15006) and outbound (15001) mTLS proxy, authorization, probes and metrics (15020), readiness (15021)')
    .action(() => notImplemented('proxy'));
}
