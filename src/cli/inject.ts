import type { Command } from 'commander';
import { notImplemented } from './common.ts';

export function registerInject(program: Command): void {
  program
    .command('inject')
    .description('inject the sidecar into manifests offline (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, List) and print YAML')
    .requiredOption('-f, --filename <file>', "manifest file, or '-' for standard input")
    .action(() => notImplemented('inject'));
}
