// `cinch`: one executable for every role. Subcommands load their implementation lazily,
// so `cinch init` in an init container never pays for the control plane's dependencies.
import type { Command } from 'commander';
import { buildProgram as build, runProgram } from './program.ts';
import { registerControlPlane } from './control-plane.ts';
import { registerProxy } from './proxy.ts';
import { registerInit } from './init.ts';
import { registerInject } from './inject.ts';
import { registerCa } from './ca.ts';
import { registerAuthz } from './authz.ts';
import { registerCheck } from './check.ts';

export function buildProgram(): Command {
  return build([registerControlPlane, registerProxy, registerInit, registerInject, registerCa, registerAuthz, registerCheck]);
}

export async function main(argv: string[]): Promise<number> {
  return runProgram(buildProgram(), argv);
}

const code = await main(process.argv);
if (code !== 0) process.exitCode = code;
