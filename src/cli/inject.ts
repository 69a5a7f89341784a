// `cinch inject -f FILE|-`: offline injection, a thin shell over src/inject (read, parse, inject, print).
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { CliError } from './common.ts';

interface InjectOptions {
  filename: string;
  config?: string;
  nativeSidecar?: boolean;
}

function parseBoolean(value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new InvalidArgumentError('expected true or false.');
}

export function registerInject(program: Command): void {
  program
    .command('inject')
    .description('inject the sidecar into manifests offline (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, List) and print YAML')
    .requiredOption('-f, --filename <file>', "manifest file, or '-' for standard input")
    .option('--config <file>', 'injection ConfigMap YAML (key config.yaml), or a bare config.yaml; default: built-in defaults')
    .option('--native-sidecar <bool>', 'proxy as a native sidecar (Kubernetes >= 1.29): true or false (default: the config, whose auto means false offline)', parseBoolean)
    .action(async (opts: InjectOptions) => {
      const output = await runInject(opts, (line) => process.stderr.write(`cinch inject: ${line}\n`));
      process.stdout.write(output);
    });
}

/** Returns the YAML to print; warnings go to `warn`; throws CliError (exit 1) naming the document at fault. */
export async function runInject(opts: InjectOptions, warn: (line: string) => void): Promise<string> {
  const [{ readFile }, { text }, YAML, core] = await Promise.all([
    import('node:fs/promises'),
    import('node:stream/consumers'),
    import('yaml'),
    import('../inject/index.ts'),
  ]);
  const read = async (file: string): Promise<string> => {
    try {
      return file === '-' ? await text(process.stdin) : await readFile(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  let config = core.DEFAULT_INJECTION_CONFIG;
  if (opts.config) {
    const configText = await read(opts.config);
    let parsed: unknown;
    try {
      parsed = YAML.parse(configText);
    } catch (err) {
      throw new CliError(`${opts.config}: invalid YAML: ${err instanceof Error ? err.message : String(err)}`);
    }
    const isConfigMap = typeof parsed === 'object' && parsed !== null && (parsed as { kind?: unknown }).kind === 'ConfigMap';
    const data = isConfigMap ? ((parsed as { data?: Record<string, string> }).data ?? {}) : { [core.CONFIG_KEY]: configText };
    try {
      config = core.parseInjectionConfig(data);
    } catch (err) {
      throw new CliError(`${opts.config}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (opts.nativeSidecar !== undefined) config = { ...config, nativeSidecar: opts.nativeSidecar ? 'true' : 'false' };
  // Offline there is no cluster to ask, so `auto` means classic: it works everywhere.
  const ctx = { config, nativeSidecarSupported: false };

  // YAML 1.1, as kubectl reads it: `yes`/`on` in a string field then get quoted on output instead of turning into booleans.
  const docs = YAML.parseAllDocuments(await read(opts.filename), { version: '1.1' });
  const list = Array.isArray(docs) ? docs : [];
  // All syntax errors before any output or injection error: a broken file is reported as such.
  list.forEach((doc, i) => {
    // The first line says what and where (line, column); the rest is a code excerpt.
    if (doc.errors.length > 0) throw new CliError(`document ${i + 1}: invalid YAML: ${doc.errors[0].message.split('\n')[0].replace(/:$/, '')}`);
  });
  const outputs: string[] = [];
  list.forEach((doc, i) => {
    const number = i + 1;
    const manifest: unknown = doc.toJS();
    if (manifest === null || manifest === undefined) return; // an empty document (e.g. a trailing ---)
    let result;
    try {
      result = core.injectManifest(manifest, ctx);
    } catch (err) {
      if (err instanceof core.InjectionError) throw new CliError(`document ${number}: ${err.message}`);
      throw err;
    }
    for (const warning of result.warnings) warn(`document ${number}: ${warning}`);
    // Untouched documents are printed from their own syntax tree, comments and all.
    outputs.push(result.injected > 0 ? new YAML.Document(result.object, { version: '1.1', aliasDuplicateObjects: false }).toString({ lineWidth: 0 }) : doc.toString({ lineWidth: 0, directives: false }));
  });
  return outputs.join('---\n');
}
