// Bundles the sidecar into one JavaScript file: `node bin/build-dist.ts` writes dist/proxy.js (from
// src/cli/proxy-main.ts) and dist/proxy.inputs (the files it was made from, one a line, which
// bin/cinch.js checks so that an edited tree never runs a stale bundle). `make` runs it as part of its
// deps, the Dockerfile in its build stage. `--entry FILE --outfile FILE` bundles another entry (the bench's
// sidecar). Why: the proxy's memory budget. Run from the TypeScript sources, `cinch proxy` also holds
// Node's type stripper and every module file it loaded; bundled (and minified) it holds one script.
// koffi stays outside: it loads a native binary that lives in its package (node_modules).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { build, type Plugin } from 'esbuild';

const ROOT = path.resolve(import.meta.dirname, '..');
export const PROXY_ENTRY = path.join(ROOT, 'src/cli/proxy-main.ts');
export const PROXY_DIST = path.join(ROOT, 'dist/proxy.js');

/** The bundle's inputs (repository-relative, one a line) go next to it in `<outfile minus .js>.inputs`. */
export function inputsFile(outfile: string): string {
  return outfile.replace(/\.js$/, '') + '.inputs';
}

/**
 * `import http from 'node:http'` in an ES module builds the module's namespace, which reads every
 * export, lazy ones included: http.WebSocket and friends then load Node's bundled undici (and with it
 * http2, zlib, worker_threads...), ~9 MiB of RSS the proxy never uses. Taking the same object from
 * process.getBuiltinModule reads nothing. Our sources import node:http by its default export only;
 * a named import fails the build, so nothing can silently go missing.
 */
const lazyNodeHttp: Plugin = {
  name: 'lazy-node-http',
  setup(b) {
    b.onResolve({ filter: /^(node:)?http$/ }, (args) => (args.kind === 'import-statement' ? { path: 'node:http', namespace: 'lazy-node-http' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'lazy-node-http' }, () => ({ contents: "export default process.getBuiltinModule('node:http');", loader: 'js' }));
  },
};

export async function bundle(entry: string, outfile: string): Promise<void> {
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    minify: true,
    // Source maps would cost the memory this is for; names stay readable in stack traces.
    keepNames: true,
    external: ['koffi'],
    metafile: true,
    plugins: [lazyNodeHttp],
    logLevel: 'warning',
    legalComments: 'none',
    // Bundled CommonJS packages (winston, prom-client) call require() for Node's built-ins.
    banner: { js: "import { createRequire as __cinchRequire } from 'node:module'; const require = __cinchRequire(import.meta.url);" },
  });
  const inputs = Object.keys(result.metafile.inputs)
    .filter((p) => !p.includes(':')) // the plugin's module
    .map((p) => path.relative(ROOT, path.resolve(process.cwd(), p)))
    .filter((p) => !p.startsWith('node_modules'))
    .sort();
  // The bundled packages come from node_modules: a changed lock file makes the bundle stale too.
  inputs.push('package-lock.json');
  fs.writeFileSync(inputsFile(outfile), `${inputs.join('\n')}\n`);
}

if (process.argv[1] === import.meta.filename) {
  const { values } = parseArgs({ options: { entry: { type: 'string' }, outfile: { type: 'string' } } });
  await bundle(path.resolve(values.entry ?? PROXY_ENTRY), path.resolve(values.outfile ?? PROXY_DIST));
}
