import type { Command } from 'commander';
import { CliError, notImplemented, parsePositiveInt } from './common.ts';

interface InitOptions {
  dir: string;
  trustDomain: string;
  intermediate?: boolean;
  force?: boolean;
  rootDays: number;
  intermediateDays: number;
}

export function registerCa(program: Command): void {
  const ca = program.command('ca').description('create and inspect CA material (roots, intermediates) in certs/; rotate the root');
  ca.command('init')
    .description('create a root (or root + intermediate) in certs/, keys 0600')
    .option('--dir <dir>', 'where to write the cacerts files', 'certs')
    .option('--trust-domain <domain>', 'SPIFFE trust domain, written into the subject', 'cluster.local')
    .option('--intermediate', 'sign leaves with an intermediate under the root (root key kept in root-key.pem)')
    .option('--force', 'replace existing files')
    .option('--root-days <days>', 'root lifetime in days', parsePositiveInt, 3650)
    .option('--intermediate-days <days>', 'intermediate lifetime in days (never past the root)', parsePositiveInt, 365)
    .action(async (options: InitOptions) => init(options));
  ca.command('inspect <file>')
    .description('show subject, SANs, key, validity and chain of a certificate file')
    .option('-o, --output <format>', "'text' or 'json'", 'text')
    .action(async (file: string, options: { output: string }) => inspect(file, options.output));
  ca.command('rotate').description('rotate the root without restarting pods: add, switch, then drop the old root').action(() => notImplemented('ca rotate'));
}

async function init(options: InitOptions): Promise<void> {
  // Loaded here so other subcommands never pay for the x509 stack.
  const { createRootAndIntermediate, createRootCa, loadCaMaterial } = await import('../ca/index.ts');
  const { CaFilesExistError, writeCaDir } = await import('../ca/files.ts');
  const { SpiffeIdError, trustDomainProblem } = await import('../identity/spiffe.ts');
  const problem = trustDomainProblem(options.trustDomain);
  if (problem) throw new CliError(`cinch ca init: --trust-domain: ${problem}`);
  const create = options.intermediate ? createRootAndIntermediate : createRootCa;
  let written: string[];
  try {
    const created = await create({ trustDomain: options.trustDomain, rootDays: options.rootDays, intermediateDays: options.intermediateDays });
    // Never write material the control plane would refuse to start with.
    const material = loadCaMaterial(created.files);
    written = writeCaDir(options.dir, created, options.force);
    const signer = material.signingCert.subject.split('\n').join(', ');
    process.stdout.write(
      [
        ...written.map((file) => `wrote ${file}${file.endsWith('key.pem') ? ' (mode 0600)' : ''}`),
        `signing CA: ${signer}, valid until ${material.signingCertNotAfter.toISOString()}`,
        `root valid until ${material.rootNotAfter.toISOString()}`,
        ...(options.intermediate ? ['root-key.pem is only needed to issue the next intermediate: keep it offline, never in the cinch-ca Secret'] : []),
      ].join('\n') + '\n',
    );
  } catch (err) {
    if (err instanceof CaFilesExistError || err instanceof SpiffeIdError) throw new CliError(`cinch ca init: ${err.message}`);
    throw err;
  }
}

async function inspect(file: string, output: string): Promise<void> {
  if (output !== 'text' && output !== 'json') throw new CliError(`cinch ca inspect: --output must be 'text' or 'json', got ${JSON.stringify(output)}`, 2);
  const { readFileSync } = await import('node:fs');
  const { InspectError, formatInspection, inspectCertificates } = await import('../ca/inspect.ts');
  const { PemError } = await import('../ca/pem.ts');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cinch ca inspect: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    const inspection = inspectCertificates(text);
    process.stdout.write(output === 'json' ? `${JSON.stringify(inspection, null, 2)}\n` : formatInspection(inspection, file));
    if (inspection.chain && !inspection.chain.ok) throw new CliError(`cinch ca inspect: chain check failed: ${inspection.chain.message}`);
  } catch (err) {
    if (err instanceof InspectError || err instanceof PemError) throw new CliError(`cinch ca inspect: ${file}: ${err.message}`);
    throw err;
  }
}
