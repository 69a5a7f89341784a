import type { Command } from 'commander';
import { notImplemented } from './common.ts';

export function registerCa(program: Command): void {
  const ca = program.command('ca').description('create and inspect CA material (roots, intermediates) in certs/; rotate the root');
  ca.command('init').description('create a root (or root + intermediate) in certs/, keys 0600').action(() => notImplemented('ca init'));
  ca.command('inspect <file>').description('show subject, SANs, key, validity and chain of a certificate file').action(() => notImplemented('ca inspect'));
  ca.command('rotate').description('rotate the root without restarting pods: add, switch, then drop the old root').action(() => notImplemented('ca rotate'));
}
