// The CA signer alone: the generic @peculiar/x509 path and the fast DER-template path sign the
// same pre-parsed CSRs, one at a time on one core; also the CSR check (native vs @peculiar).
// Run: npx node bench/ca-signer.ts [--count 1000] [--runs 3] [--issuer p256|p256-intermediate|p384|rsa]
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { parseArgs } from 'node:util';
import { x509 } from '../src/ca/x509.ts';
import { createRootAndIntermediate, createRootCa } from '../src/ca/create.ts';
import { checkCsr } from '../src/ca/csr.ts';
import type { CheckedCsr } from '../src/ca/csr.ts';
import { FastLeafSigner } from '../src/ca/fast-signer.ts';
import type { SignedLeaf } from '../src/ca/fast-signer.ts';
import { GenericLeafSigner } from '../src/ca/generic-signer.ts';
import { loadCaMaterial } from '../src/ca/material.ts';
import type { CaMaterial } from '../src/ca/material.ts';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '3' },
    issuer: { type: 'string', default: 'p256' },
  },
});
const count = Number(values.count);
const runs = Number(values.runs);
const WARMUP = 50;

async function issuerMaterial(kind: string): Promise<CaMaterial> {
  switch (kind) {
    case 'p256':
      return loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local' })).files);
    case 'p256-intermediate':
      return loadCaMaterial((await createRootAndIntermediate({ trustDomain: 'cluster.local' })).files);
    case 'p384':
      return loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local', keyType: 'ec-p384' })).files);
    case 'rsa':
      return loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local', keyType: 'rsa' })).files);
    default:
      throw new Error(`--issuer must be p256, p256-intermediate, p384 or rsa, got ${kind}`);
  }
}

interface Request {
  readonly pem: string;
  readonly spiffeId: string;
  readonly csr: CheckedCsr;
}

/** Distinct P-256 keys and identities, each CSR carrying the caller's URI SAN as istio-agent's do. */
async function makeRequests(n: number): Promise<Request[]> {
  const requests: Request[] = [];
  for (let i = 0; i < n; i++) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const params = { name: 'ECDSA', namedCurve: 'P-256' };
    const spiffeId = `spiffe://cluster.local/ns/bench-${i % 50}/sa/workload-${i}`;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys: { privateKey: privateKey.toCryptoKey(params, false, ['sign']), publicKey: publicKey.toCryptoKey(params, true, ['verify']) },
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
    });
    const pem = csr.toString('pem');
    requests.push({ pem, spiffeId, csr: checkCsr(pem, spiffeId) });
  }
  return requests;
}

interface Result {
  readonly perSecond: number;
  readonly microseconds: number;
}

/** Median of `runs` timed passes over all inputs, after a warm-up. */
async function measure<T>(inputs: readonly T[], op: (input: T) => unknown): Promise<Result> {
  for (let i = 0; i < Math.min(WARMUP, inputs.length); i++) await op(inputs[i]);
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const start = process.hrtime.bigint();
    for (const input of inputs) await op(input);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  const ms = times[Math.floor(times.length / 2)];
  return { perSecond: (inputs.length / ms) * 1000, microseconds: (ms * 1000) / inputs.length };
}

function checkLeaf(leaf: SignedLeaf, material: CaMaterial, spiffeId: string, label: string): void {
  const cert = new X509Certificate(leaf.certChain[0]);
  const issuer = new X509Certificate(material.chain[0]);
  if (!cert.verify(issuer.publicKey) || cert.subjectAltName !== `URI:${spiffeId}`) throw new Error(`${label} produced a bad certificate`);
}

const material = await issuerMaterial(values.issuer);
const requests = await makeRequests(count);
const fast = new FastLeafSigner(material);
const generic = await GenericLeafSigner.create(material);
checkLeaf(fast.sign(requests[0]), material, requests[0].spiffeId, 'fast');
checkLeaf(await generic.sign(requests[0]), material, requests[0].spiffeId, 'generic');

const genericSign = await measure(requests, (r) => generic.sign(r));
const fastSign = await measure(requests, (r) => fast.sign(r));
const peculiarCsr = await measure(requests, async (r) => {
  const csr = new x509.Pkcs10CertificateRequest(r.pem);
  if (!(await csr.verify())) throw new Error('CSR did not verify');
});
const nativeCsr = await measure(requests, (r) => checkCsr(r.pem, r.spiffeId));
const fastFull = await measure(requests, (r) => fast.sign({ csr: checkCsr(r.pem, r.spiffeId), spiffeId: r.spiffeId }));

const row = (name: string, result: Result): string => `${name.padEnd(44)} ${result.perSecond.toFixed(0).padStart(9)} ${result.microseconds.toFixed(1).padStart(10)}`;
const lines = [
  `CA signer: node ${process.version}, ${count} distinct P-256 CSRs, issuer ${values.issuer} (${material.keyType}), one core, one at a time, median of ${runs} runs`,
  `${'path'.padEnd(44)} ${'certs/s'.padStart(9)} ${'µs/cert'.padStart(10)}`,
  row('sign, generic (@peculiar/x509 generator)', genericSign),
  row('sign, fast (DER template + crypto.sign)', fastSign),
  `${'ratio fast/generic'.padEnd(44)} ${`${(fastSign.perSecond / genericSign.perSecond).toFixed(1)}x`.padStart(9)}`,
  row('CSR parse+verify, @peculiar/x509', peculiarCsr),
  row('CSR check, native (parseCsr + identity)', nativeCsr),
  `${'ratio native/@peculiar'.padEnd(44)} ${`${(nativeCsr.perSecond / peculiarCsr.perSecond).toFixed(1)}x`.padStart(9)}`,
  row('CSR check + fast sign (no HTTP, no token)', fastFull),
];
console.log(lines.join('\n'));
