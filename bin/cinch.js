#!/usr/bin/env node
// The one entry point for control plane, proxy, init and the CLI tools.
// Node >= 22.19 runs the TypeScript sources directly (type stripping), so the CLI needs no build step.
// `cinch proxy` (the sidecar, where memory counts) runs from dist/proxy.js instead, one bundled
// JavaScript file that bin/build-dist.ts makes (`make` and the image build run it), but only when
// that bundle is newer than every file it was made from: an edited tree never runs stale code.
import fs from 'node:fs';
import { PROXY_NODE_FLAGS } from './proxy-node-flags.js';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`cinch needs Node.js >= 22.19 (this is ${process.versions.node}); inside the repository, run it as \`npx cinch\`, which uses the pinned Node 24.\n`);
  process.exit(1);
}

/** dist/proxy.js when it exists and no input listed beside it is newer (or missing); else undefined. */
function freshProxyBundle() {
  const root = new URL('../', import.meta.url);
  const bundle = new URL('dist/proxy.js', root);
  try {
    const built = fs.statSync(bundle).mtimeMs;
    const inputs = fs.readFileSync(new URL('dist/proxy.inputs', root), 'utf8').split('\n').filter(Boolean);
    for (const input of inputs) if (fs.statSync(new URL(input, root)).mtimeMs > built) return undefined;
    return bundle;
  } catch {
    return undefined;
  }
}

// The sidecar's V8 flags, set by re-executing Node in place (same PID); a flag already given wins.
const isProxy = process.argv[2] === 'proxy';
if (isProxy && typeof process.execve === 'function' && process.env.CINCH_PROXY_FLAGS !== '0') {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  const missing = PROXY_NODE_FLAGS.filter((flag) => !given.some((g) => g.split('=')[0] === flag.split('=')[0]));
  if (missing.length > 0) process.execve(process.execPath, [process.execPath, ...process.execArgv, ...missing, ...process.argv.slice(1)], process.env);
}

const bundle = isProxy && process.env.CINCH_FROM_SOURCE !== '1' ? freshProxyBundle() : undefined;
await import(bundle ? bundle.href : '../src/cli/main.ts');
