// Small helpers shared by the subcommands; each subcommand stays a thin shell over its core.
import { InvalidArgumentError } from 'commander';

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Placeholder for a command whose issue has not landed: says so, exits non-zero. */
export function notImplemented(command: string): never {
  throw new CliError(`cinch ${command}: not implemented yet`, 2);
}

export function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) throw new InvalidArgumentError('expected a port number 1-65535.');
  return port;
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError('expected a positive whole number.');
  return n;
}
