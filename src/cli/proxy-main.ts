// `cinch proxy` alone: the entry that bin/build-dist.ts bundles into dist/proxy.js, which bin/cinch.js
// runs for `cinch proxy` when it is up to date. One file of plain JavaScript with only what the sidecar
// needs, so the sidecar's memory holds neither the type stripper nor the other commands.
import { buildProgram, runProgram } from './program.ts';
import { registerProxy } from './proxy.ts';

const code = await runProgram(buildProgram([registerProxy]), process.argv);
if (code !== 0) process.exitCode = code;
