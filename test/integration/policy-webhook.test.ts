// Policy validation at kubectl apply, through the real API server: the shipped ValidatingWebhookConfiguration
// (only clientConfig pointed at this process), the real webhook server, kubectl as a security team runs it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { AdmissionregistrationV1Api, type V1ValidatingWebhookConfiguration } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createRegistry } from '../../src/telemetry/metrics.ts';
import { createWebhookServer, type WebhookServer } from '../../src/webhook/server.ts';
import { installCrds } from '../e2e/mesh.ts';
import { createNamespace, runKubectl, testKubeConfig, uniqueName } from '../support/kube.ts';
import { makeServingCert } from '../support/tls.ts';

const kc = testKubeConfig();
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const tlsMaterial = makeServingCert();
const webhookName = uniqueName('cinch-test-policy-validator');
let webhook: WebhookServer;
let ns: { name: string; cleanup: () => Promise<void> };

const kubectl = (args: string[], input: string) => runKubectl(args, input);

const policy = (name: string, spec: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: ${ns.name}
spec:
${spec}`;

before(async () => {
  await installCrds(kc);
  ns = await createNamespace(kc, 'policy-webhook');
  webhook = createWebhookServer({ ...tlsMaterial, registry: createRegistry(), logger: createLogger({ stream: new PassThrough(), level: 'error' }), mutate: () => ({ kind: 'skip', reason: 'test' }) });
  const port = await webhook.listen(0, '127.0.0.1');
  const shipped = parseYaml(fs.readFileSync(path.resolve(import.meta.dirname, '../../webhook-config/validatingwebhook.yaml'), 'utf8')) as V1ValidatingWebhookConfiguration;
  await admission.createValidatingWebhookConfiguration({
    body: {
      ...shipped,
      metadata: { name: webhookName },
      webhooks: shipped.webhooks!.map((w) => ({ ...w, clientConfig: { url: `https://127.0.0.1:${port}/validate`, caBundle: Buffer.from(tlsMaterial.ca).toString('base64') } })),
    },
  });
  // The API server picks a new webhook configuration up within a moment: wait until it answers.
  const deadline = Date.now() + 15_000;
  const probe = policy('probe', '  action: DENY\n  rules:\n  - from:\n    - source:\n        ipBlocks: ["10.0.0.0/33"]');
  while ((await kubectl(['apply', '--dry-run=server', '-f', '-'], probe)).code === 0) {
    if (Date.now() > deadline) throw new Error('the validating webhook never took effect');
    await new Promise((r) => setTimeout(r, 200));
  }
});

after(async () => {
  await admission.deleteValidatingWebhookConfiguration({ name: webhookName }).catch(() => undefined);
  await webhook?.close(100);
  await ns?.cleanup();
});

test('an invalid policy is refused at kubectl apply, with the field at fault named', async () => {
  const run = await kubectl(['apply', '-f', '-'], policy('office-only', '  rules:\n  - from:\n    - source:\n        ipBlocks: ["10.0.0.0/33"]'));
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /denied the request: AuthorizationPolicy .*\/office-only is invalid for Cinch: spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks\[0\]/);
  assert.notEqual((await kubectl(['get', 'authorizationpolicy', '-n', ns.name, 'office-only'], '')).code, 0, 'nothing was stored');
});

test('a valid policy is stored; one Cinch reads differently comes back with a warning', async () => {
  const plain = await kubectl(['apply', '-f', '-'], policy('allow-sleep', `  rules:\n  - from:\n    - source:\n        principals: ["cluster.local/ns/${'bar'}/sa/sleep"]`));
  assert.equal(plain.code, 0, plain.stderr);
  assert.doesNotMatch(plain.stderr, /Warning/);
  const jwt = await kubectl(['apply', '-f', '-'], policy('require-jwt', '  action: DENY\n  rules:\n  - from:\n    - source:\n        notRequestPrincipals: ["*"]'));
  assert.equal(jwt.code, 0, jwt.stderr);
  assert.match(jwt.stderr, /Warning: .*notRequestPrincipals.*no request has a request principal/);
});

test('a CUSTOM policy is accepted, with a warning that Cinch denies what it matches', async () => {
  const run = await kubectl(['apply', '-f', '-'], policy('ext-authz', '  action: CUSTOM\n  provider:\n    name: opa\n  rules:\n  - to:\n    - operation:\n        paths: ["/ext/*"]'));
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /Warning: .*CUSTOM requires an extension provider/);
});
