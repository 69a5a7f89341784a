import { InvalidArgumentError, type Command } from 'commander';
import { CliError, parsePositiveInt } from './common.ts';

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
  ca.command('rotate')
    .description('rotate the root without restarting pods: add the new root to the bundle, switch signing to it, then drop the old root (see docs/root-rotation.md)')
    .option('--kubeconfig <file>', 'kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
    .option('--namespace <ns>', 'the control plane\'s namespace, where Secret cinch-ca lives', 'cinch-system')
    .option('--phase <phase>', "'add', 'switch', 'drop', or 'auto' (every phase whose precondition holds, in order)", 'auto')
    .option('--dry-run', 'check the precondition and show what the next phase would do, without writing')
    .option('--from-dir <dir>', 'add: the new CA material (cacerts layout, e.g. from `cinch ca init --intermediate`) instead of a generated self-signed root')
    .option('--trust-domain <domain>', "add: trust domain in a generated root's subject (default: the current root's)")
    .option('--max-cert-ttl <seconds>', "the control plane's --max-cert-ttl: each waiting period lasts this long (recorded at add)", parsePositiveInt)
    .option('--grace <seconds>', 'extra wait for replicas and kubelets to pick up changes (recorded at add)', parseNonNegativeInt, 300)
    .option('-o, --output <format>', "'text' or 'json'", 'text')
    .addHelpText(
      'after',
      '\nExit status: 0 when a phase was applied or there is nothing left to do, 3 when a precondition is not met yet (the message says what to wait for), 1 on errors.',
    )
    .action(async (options: RotateCliOptions) => rotate(options));
}

interface RotateCliOptions {
  kubeconfig?: string;
  namespace: string;
  phase: string;
  dryRun?: boolean;
  fromDir?: string;
  trustDomain?: string;
  maxCertTtl?: number;
  grace: number;
  output: string;
}

function parseNonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number of seconds.');
  return Number(value);
}

async function rotate(options: RotateCliOptions): Promise<void> {
  const phases = ['add', 'switch', 'drop', 'auto'];
  if (!phases.includes(options.phase)) throw new CliError(`cinch ca rotate: --phase must be one of ${phases.join(', ')}, got ${JSON.stringify(options.phase)}`, 2);
  if (options.output !== 'text' && options.output !== 'json') throw new CliError(`cinch ca rotate: --output must be 'text' or 'json', got ${JSON.stringify(options.output)}`, 2);
  const { CaMaterialError, loadCaMaterial, fromSecretData, readCaDir } = await import('../ca/index.ts');
  const { RotationError } = await import('../ca/rotation.ts');
  const { rotateRoot } = await import('../controlplane/root-rotation.ts');
  const { loadKubeConfig } = await import('../kube/config.ts');
  try {
    let next;
    if (options.fromDir) {
      const files = readCaDir(options.fromDir);
      loadCaMaterial(files); // refuse inconsistent material before touching the cluster
      next = fromSecretData(files);
    }
    const report = await rotateRoot(loadKubeConfig(options.kubeconfig), {
      namespace: options.namespace,
      phase: options.phase as 'add' | 'switch' | 'drop' | 'auto',
      dryRun: options.dryRun,
      next,
      trustDomain: options.trustDomain,
      maxCertTtlSeconds: options.maxCertTtl,
      graceSeconds: options.grace,
    });
    if (options.output === 'json') process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      const lines = report.steps.map((s) => `${s.phase}: ${s.outcome} — ${s.message}`);
      if (report.state) lines.push(`rotation state: ${report.state.phase} (added ${report.state.addedAt}${report.state.switchedAt ? `, switched ${report.state.switchedAt}` : ''}${report.state.droppedAt ? `, dropped ${report.state.droppedAt}` : ''})`);
      for (const r of report.roots) lines.push(`root ${r.fingerprint.slice(0, 16)}… ${r.subject}, valid until ${r.notAfter}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (report.blocked) throw new CliError(`cinch ca rotate: ${report.steps[report.steps.length - 1].message}`, 3);
  } catch (err) {
    if (err instanceof RotationError || err instanceof CaMaterialError) throw new CliError(`cinch ca rotate: ${err.message}`);
    throw err;
  }
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
