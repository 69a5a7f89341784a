// `cinch check` against the real API server: what it says of a cluster without Cinch, and after parts are installed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { loadOrCreateCaSecret } from '../../src/controlplane/ca-store.ts';
import { runChecks } from '../../src/controlplane/check.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { testKubeConfig, uniqueName } from '../support/kube.ts';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const root = path.resolve(import.meta.dirname, '../..');
const ns = uniqueName('cinch-check');
after(async () => core.deleteNamespace({ name: ns }).catch(() => undefined));

test('without its CA the check fails, names what is missing and how to fix it, and exits 1', () => {
  const res = spawnSync(process.execPath, [path.join(root, 'bin/cinch.js'), 'check', '--namespace', ns], { encoding: 'utf8', env: process.env });
  assert.equal(res.status, 1, res.stderr);
  assert.match(res.stdout, /✔ Kubernetes API: reachable/);
  assert.match(res.stdout, new RegExp(`✖ CA material: Secret ${ns}/cinch-ca not found\\n\\s+fix: start the control plane once`));
  assert.match(res.stdout, /check\(s\) failed/);
});

test('once the CA exists its validity is reported', async () => {
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await loadOrCreateCaSecret(kc, ns, 'cluster.local', createLogger({ stream: new PassThrough() }));
  const results = await runChecks(kc, ns);
  const rootCheck = results.find((r) => r.name === 'CA root');
  assert.equal(rootCheck?.status, 'ok');
  assert.match(rootCheck.detail, /valid until .* \(36\d\d days\)/);
  // No control plane has distributed the bundle here, so that check must fail and say where.
  const bundle = results.find((r) => r.name === 'trust bundle' && r.status === 'fail');
  assert.match(bundle!.detail, new RegExp(`missing in: .*${ns}`));
});

test('a deleted CA Secret is not silently replaced once the mesh has distributed its bundle', async () => {
  const other = uniqueName('cinch-lost');
  await core.createNamespace({ body: { metadata: { name: other } } });
  try {
    await core.createNamespacedConfigMap({
      namespace: other,
      body: { metadata: { name: 'cinch-ca-root-cert', labels: { 'cinch.dev/trust-bundle': 'true', 'app.kubernetes.io/managed-by': 'cinch' } }, data: { 'root-cert.pem': 'x' } },
    });
    await assert.rejects(loadOrCreateCaSecret(kc, other, 'cluster.local', createLogger({ stream: new PassThrough() })), /is missing, but this mesh already has a trust bundle .*Restore the Secret/);
  } finally {
    await core.deleteNamespace({ name: other }).catch(() => undefined);
  }
});
