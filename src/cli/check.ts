import type { Command } from 'commander';
import { notImplemented } from './common.ts';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('verify an installation against a cluster: API server, CRDs, webhook, CA validity, trust bundles, uninjected pods')
    .action(() => notImplemented('check'));
}
