#!/usr/bin/env node
// The one entry point for control plane, proxy, init and the CLI tools.
// Node >= 22.19 runs the TypeScript sources directly (type stripping), so there is no build step.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`cinch needs Node.js >= 22.19 (this is ${process.versions.node}); inside the repository, run it as \`npx cinch\`, which uses the pinned Node 24.\n`);
  process.exit(1);
}
await import('../src/cli/main.ts');
