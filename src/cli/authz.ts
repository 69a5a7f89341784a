import type { Command } from 'commander';
import { CliError } from './common.ts';

interface CheckOptions {
  policies: string;
  request: string;
  output: string;
}

async function authzCheck(opts: CheckOptions): Promise<void> {
  if (opts.output !== 'text' && opts.output !== 'json') throw new CliError(`cinch authz check: -o must be 'text' or 'json', not '${opts.output}'`);
  // Loaded lazily, like every subcommand's implementation (see main.ts).
  const fs = await import('node:fs/promises');
  const { buildPolicySet, checkRequest, parseAuthzRequest, CUSTOM_UNSUPPORTED } = await import('../policy/index.ts');
  const { loadPolicyDocuments, PolicyLoadError } = await import('../policy/load.ts');

  let requestText: string;
  try {
    requestText = await fs.readFile(opts.request, 'utf8');
  } catch (err) {
    throw new CliError(`cinch authz check: cannot read the request file ${opts.request}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let requestJson: unknown;
  try {
    requestJson = JSON.parse(requestText);
  } catch (err) {
    throw new CliError(`cinch authz check: ${opts.request} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = parseAuthzRequest(requestJson);
  if (!parsed.request) throw new CliError(`cinch authz check: invalid request in ${opts.request}:\n  ${parsed.errors.join('\n  ')}`);

  let documents;
  try {
    documents = await loadPolicyDocuments(opts.policies);
  } catch (err) {
    if (err instanceof PolicyLoadError) throw new CliError(`cinch authz check: ${err.message}`);
    throw err;
  }
  const set = buildPolicySet(documents.map((d) => d.value));
  // Invalid policies are reported and skipped (errors in rules: those rules are); they never stop the valid ones.
  for (const problem of set.problems) {
    const custom = problem.errors.some((e) => e.includes(CUSTOM_UNSUPPORTED));
    const what = !problem.enforced ? 'invalid, skipped' : custom ? 'not supported' : 'invalid rule, left out';
    for (const message of problem.errors) process.stderr.write(`cinch authz check: ${problem.kind} ${problem.ref} ${what}: ${message}\n`);
    for (const message of problem.warnings) process.stderr.write(`cinch authz check: ${problem.kind} ${problem.ref} warning: ${message}\n`);
  }

  const result = checkRequest(set, parsed.request);
  const audited = result.audited.length > 0 ? `; audited by ${result.audited.join(', ')}` : '';
  const reason = result.reason + audited;
  if (opts.output === 'json') {
    process.stdout.write(`${JSON.stringify({ decision: result.decision, policy: result.policy, reason })}\n`);
  } else {
    process.stdout.write(`${result.decision} ${result.policy ?? '-'}: ${reason}\n`);
  }
}

export function registerAuthz(program: Command): void {
  const authz = program.command('authz').description('authorization tools');
  authz
    .command('check')
    .description('evaluate PeerAuthentication and AuthorizationPolicy offline for one request; prints ALLOW or DENY and the deciding policy')
    .requiredOption('--policies <path>', 'YAML file or folder of policies')
    .requiredOption('--request <file>', 'request JSON (destination, source, request)')
    .option('-o, --output <format>', "'text' or 'json'", 'text')
    .action((opts: CheckOptions) => authzCheck(opts));
}
