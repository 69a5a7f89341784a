// The `cinch` program and its error handling, shared by the full CLI (main.ts) and the proxy-only
// entry (proxy-main.ts) that the build bundles for the sidecar.
import { Command, CommanderError } from 'commander';
import { CliError } from './common.ts';

export function buildProgram(register: ReadonlyArray<(program: Command) => void>): Command {
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
  for (const add of register) add(program);
  return program;
}

export async function runProgram(program: Command, argv: string[]): Promise<number> {
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
