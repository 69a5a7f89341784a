// `cinch`: one executable for every role. Subcommands load their implementation lazily,
// so `cinch init` in an init container never pays for the control plane's dependencies.
import { Command, CommanderError } from 'commander';
import { CliError } from './common.ts';
import { registerControlPlane } from './control-plane.ts';
import { registerProxy } from './proxy.ts';
import { registerInit } from './init.ts';
import { registerInject } from './inject.ts';
import { registerCa } from './ca.ts';
import { registerAuthz } from './authz.ts';
import { registerCheck } from './check.ts';

export function buildProgram(): Command {
  const program = new Command('cinch')
    .description('Cinch: sidecar injection, a SPIFFE workload CA, an mTLS proxy and Istio-compatible policy for Kubernetes.')
    .version('0.1.0')
    .option('--log-level <level>', 'error, warn, info or debug (env CINCH_LOG_LEVEL)')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false })
    .hook('preAction', (cmd) => {
      const level = cmd.opts<{ logLevel?: string }>().logLevel;
      if (level) process.env.CINCH_LOG_LEVEL = level;
    });
  registerControlPlane(program);
  registerProxy(program);
  registerInit(program);
  registerInject(program);
  registerCa(program);
  registerAuthz(program);
  registerCheck(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode; // commander already printed the message
    if (err instanceof CliError) {
      process.stderr.write(`${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`cinch: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

const code = await main(process.argv);
if (code !== 0) process.exitCode = code;
