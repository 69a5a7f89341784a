import type { Command } from 'commander';
import { notImplemented } from './common.ts';

export function registerInit(program: Command): void {
  program
    .command('init')
    .description("init container: install the iptables rules that send the pod's TCP traffic through the proxy (inbound 15006, outbound 15001, uid 1337 exempt)")
    .option('--dry-run', 'print the rules instead of applying them')
    .action(() => notImplemented('init'));
}
