// The Kubernetes CSR API signer cinch.dev/workload against the real API server, driven with kubectl
// as users drive it: a ServiceAccount creates a CSR (kubectl --token), it is approved and signed, and
// the certificate verifies with openssl; other identities wait for a human; a human-approved bad CSR
// fails with a reason. The signer itself runs as a ServiceAccount holding exactly the shipped
// ClusterRole's rules, so the RBAC in webhook-config/rbac.yaml is tested too.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { CertificatesV1Api, CoreV1Api, KubeConfig, RbacAuthorizationV1Api, type V1CertificateSigningRequest, type V1ClusterRole } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { createRootCa } from '../../src/ca/create.ts';
import { loadCaMaterial, type CaMaterial } from '../../src/ca/material.ts';
import { CINCH_SIGNER_NAME, CsrSigner } from '../../src/controlplane/csr-signer.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { opensslCsr, opensslVerify } from '../unit/ca/support.ts';
import { createNamespace, createServiceAccount, testKubeConfig, uniqueName } from '../support/kube.ts';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
const certs = kc.makeApiClient(CertificatesV1Api);
const logger = createLogger({ stream: new PassThrough(), level: 'error' });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-csr-'));
const clusterRoles: string[] = [];
const csrNames: string[] = [];
let ns: { name: string; cleanup: () => Promise<void> };
let material: CaMaterial;
let signer: CsrSigner;
let workloadKubeconfig: string;

/** A token the API server itself accepts (TokenRequest with its default audiences). */
async function apiToken(namespace: string, sa: string): Promise<string> {
  const res = await core.createNamespacedServiceAccountToken({ namespace, name: sa, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
  return res.status!.token!;
}

function kubeConfigFor(token: string): KubeConfig {
  const cluster = kc.getCurrentCluster()!;
  const out = new KubeConfig();
  out.loadFromOptions({
    clusters: [cluster],
    users: [{ name: 'sa', token }],
    contexts: [{ name: 'sa', cluster: cluster.name, user: 'sa' }],
    currentContext: 'sa',
  });
  return out;
}

async function bindClusterRole(rules: V1ClusterRole['rules'], namespace: string, sa: string): Promise<void> {
  const name = uniqueName('cinch-test-csr');
  await rbac.createClusterRole({ body: { metadata: { name }, rules } });
  await rbac.createClusterRoleBinding({
    body: { metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name }, subjects: [{ kind: 'ServiceAccount', name: sa, namespace }] },
  });
  clusterRoles.push(name);
}

before(async () => {
  material = loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local' })).files);
  ns = await createNamespace(kc, 'csr');
  for (const sa of ['cinch', 'workload']) await createServiceAccount(kc, ns.name, sa);

  // The control plane's ClusterRole exactly as shipped, bound to the signer's ServiceAccount.
  const shipped = parseAllDocuments(fs.readFileSync(path.resolve(import.meta.dirname, '../../webhook-config/rbac.yaml'), 'utf8')).map((d) => d.toJS() as V1ClusterRole);
  const controlPlaneRole = shipped.find((d) => d.kind === 'ClusterRole')!;
  await bindClusterRole(controlPlaneRole.rules, ns.name, 'cinch');
  // Workloads may create and read CSRs (the test grants it; a cluster decides who may).
  await bindClusterRole([{ apiGroups: ['certificates.k8s.io'], resources: ['certificatesigningrequests'], verbs: ['create', 'get', 'list'] }], ns.name, 'workload');

  const workloadToken = await apiToken(ns.name, 'workload');
  workloadKubeconfig = path.join(tmp, 'workload.kubeconfig');
  fs.writeFileSync(workloadKubeconfig, kubeConfigFor(workloadToken).exportConfig(), { mode: 0o600 });

  signer = new CsrSigner(kubeConfigFor(await apiToken(ns.name, 'cinch')), { trustDomain: 'cluster.local', logger });
  await signer.start(material);
});

after(async () => {
  await signer?.stop();
  for (const name of csrNames) await certs.deleteCertificateSigningRequest({ name }).catch(() => undefined);
  for (const name of clusterRoles) {
    await rbac.deleteClusterRoleBinding({ name }).catch(() => undefined);
    await rbac.deleteClusterRole({ name }).catch(() => undefined);
  }
  await ns?.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function kubectl(kubeconfig: string, args: string[], input?: string): string {
  return execFileSync('kubectl', ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}
const admin = (...args: string[]) => kubectl(process.env.KUBECONFIG!, args);

/** `kubectl create -f` of a CSR object, as the workload ServiceAccount. */
function createCsr(csrPem: string, opts: { signerName?: string; usages?: string[]; as?: string } = {}): string {
  const name = uniqueName('csr');
  csrNames.push(name);
  const manifest = {
    apiVersion: 'certificates.k8s.io/v1',
    kind: 'CertificateSigningRequest',
    metadata: { name },
    spec: {
      request: Buffer.from(csrPem).toString('base64'),
      signerName: opts.signerName ?? CINCH_SIGNER_NAME,
      usages: opts.usages ?? ['digital signature', 'key encipherment', 'server auth', 'client auth'],
    },
  };
  kubectl(opts.as ?? workloadKubeconfig, ['create', '-f', '-'], JSON.stringify(manifest));
  return name;
}

async function get(name: string): Promise<V1CertificateSigningRequest> {
  return certs.readCertificateSigningRequest({ name });
}

async function waitFor(name: string, what: string, cond: (csr: V1CertificateSigningRequest) => boolean, ms = 5000): Promise<V1CertificateSigningRequest> {
  const start = Date.now();
  for (;;) {
    const csr = await get(name);
    if (cond(csr)) return csr;
    if (Date.now() - start > ms) throw new Error(`${name}: ${what} not within ${ms} ms; status ${JSON.stringify(csr.status)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const conditions = (csr: V1CertificateSigningRequest) => (csr.status?.conditions ?? []).map((c) => `${c.type}/${c.reason}`);
const id = (sa: string) => `spiffe://cluster.local/ns/${ns.name}/sa/${sa}`;

function certificatePems(csr: V1CertificateSigningRequest): string[] {
  const text = Buffer.from(csr.status!.certificate!, 'base64').toString('utf8');
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];
}

test('a ServiceAccount\'s CSR for its own SPIFFE ID is approved and signed; the certificate verifies', async () => {
  const { csr: csrPem } = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], '/CN=ignored', ['-addext', `subjectAltName=URI:${id('workload')}`]);
  const name = createCsr(csrPem);
  const signed = await waitFor(name, 'certificate', (c) => Boolean(c.status?.certificate));
  assert.equal(signed.spec.username, `system:serviceaccount:${ns.name}:workload`, 'kubectl --token made the ServiceAccount the requester');
  assert.deepEqual(conditions(signed), ['Approved/AutoApproved']);

  const chain = certificatePems(signed);
  assert.equal(chain.length, 2, 'leaf, then the chain up to the root');
  assert.equal(chain[1], material.trustBundle[0]);
  assert.match(opensslVerify(chain[0], material.trustBundle.join('')), /OK/);
  const leaf = new X509Certificate(chain[0]);
  assert.equal(leaf.subjectAltName, `URI:${id('workload')}`);
  assert.equal(leaf.ca, false);
  // The 1.20 API server has no spec.expirationSeconds: the default TTL (1 h) applies, notBefore backdated 60 s.
  assert.equal((leaf.validToDate.getTime() - leaf.validFromDate.getTime()) / 1000, 3600 + 60);

  // Never signed twice: a restarted signer (a new leader) leaves it as it is.
  await signer.stop();
  await signer.start(material);
  await signer.idle();
  const again = await get(name);
  assert.equal(again.metadata?.resourceVersion, signed.metadata?.resourceVersion);
});

test('a CSR for another identity stays pending, without a condition; approved by a human it fails', async () => {
  const { csr: csrPem } = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], '/CN=x', ['-addext', `subjectAltName=URI:${id('cinch')}`]);
  const name = createCsr(csrPem);
  await new Promise((r) => setTimeout(r, 1500));
  await signer.idle();
  const pending = await get(name);
  assert.deepEqual(pending.status?.conditions ?? [], []);
  assert.equal(pending.status?.certificate, undefined);

  admin('certificate', 'approve', name);
  const failed = await waitFor(name, 'Failed', (c) => conditions(c).some((x) => x.startsWith('Failed/')));
  assert.deepEqual(conditions(failed), [`Approved/KubectlApprove`, 'Failed/IdentityMismatch']);
  const condition = failed.status!.conditions!.find((c) => c.type === 'Failed')!;
  assert.equal(condition.status, 'True');
  assert.match(condition.message ?? '', new RegExp(`caller is ${id('workload')}`));
  assert.equal(failed.status?.certificate, undefined);
});

test('a weak key waits, and fails with WeakKey once a human approves it', async () => {
  const { csr: csrPem } = opensslCsr(['-newkey', 'rsa:1024'], '/CN=x', ['-addext', `subjectAltName=URI:${id('workload')}`]);
  const name = createCsr(csrPem);
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual((await get(name)).status?.conditions ?? [], []);
  admin('certificate', 'approve', name);
  const failed = await waitFor(name, 'Failed', (c) => conditions(c).includes('Failed/WeakKey'));
  assert.match(failed.status!.conditions!.find((c) => c.type === 'Failed')!.message ?? '', /RSA key of 1024 bits is too weak/);
});

test('a CSR without a SAN waits; a human approves it and it is signed for the requester', async () => {
  const { csr: csrPem } = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], '/CN=no-san');
  const name = createCsr(csrPem, { usages: ['digital signature', 'client auth'] });
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual((await get(name)).status?.conditions ?? [], []);
  admin('certificate', 'approve', name);
  const signed = await waitFor(name, 'certificate', (c) => Boolean(c.status?.certificate));
  const leaf = new X509Certificate(certificatePems(signed)[0]);
  assert.equal(leaf.subjectAltName, `URI:${id('workload')}`);
  assert.equal(leaf.subject, undefined, 'the CSR subject is not copied');
});

test('denied requests and other signers\' requests are left alone', async () => {
  const { csr: csrPem } = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], '/CN=x', ['-addext', `subjectAltName=URI:${id('cinch')}`]);
  const denied = createCsr(csrPem);
  admin('certificate', 'deny', denied);
  const { csr: own } = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], '/CN=x', ['-addext', `subjectAltName=URI:${id('workload')}`]);
  const foreign = createCsr(own, { signerName: 'example.com/other', usages: ['client auth'] });
  await new Promise((r) => setTimeout(r, 1500));
  await signer.idle();
  assert.deepEqual(conditions(await get(denied)), ['Denied/KubectlDeny']);
  assert.equal((await get(denied)).status?.certificate, undefined);
  assert.deepEqual((await get(foreign)).status?.conditions ?? [], []);
});

test('new CA material signs later requests', async () => {
  const next = loadCaMaterial((await createRootCa({ trustDomain: 'cluster.local' })).files);
  signer.setMaterial(next);
  const { csr: csrPem } = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], '/CN=x', ['-addext', `subjectAltName=URI:${id('workload')}`]);
  const name = createCsr(csrPem);
  const signed = await waitFor(name, 'certificate', (c) => Boolean(c.status?.certificate));
  const [leafPem] = certificatePems(signed);
  assert.match(opensslVerify(leafPem, next.trustBundle.join('')), /OK/);
  assert.throws(() => opensslVerify(leafPem, material.trustBundle.join('')));
  signer.setMaterial(material);
});
