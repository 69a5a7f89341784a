import type { Command } from 'commander';
import { notImplemented } from './common.ts';

export function registerAuthz(program: Command): void {
  const authz = program.command('authz').description('authorization tools');
  authz
    .command('check')
    .description('evaluate PeerAuthentication and AuthorizationPolicy offline for one request; prints ALLOW or DENY and the deciding policy')
    .requiredOption('--policies <path>', 'YAML file or folder of policies')
    .requiredOption('--request <file>', 'request JSON (destination, source, request)')
    .option('-o, --output <format>', "'text' or 'json'", 'text')
    .action(() => notImplemented('authz check'));
}
