// Helpers for tests against the real API server started by test/cluster/global-setup.ts.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { AuthenticationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';

export function testKubeConfig(): KubeConfig {
  if (!process.env.KUBECONFIG) throw new Error('KUBECONFIG is not set: run integration tests through `make test` (the global setup starts a cluster)');
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}

/** A unique, DNS-safe name for this run (tests never collide with leftovers of another run). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

/** Creates a namespace and returns it with a cleanup that deletes it. */
export async function createNamespace(kc: KubeConfig, prefix: string, labels: Record<string, string> = {}): Promise<{ name: string; cleanup: () => Promise<void> }> {
  const core = kc.makeApiClient(CoreV1Api);
  const name = uniqueName(prefix);
  await core.createNamespace({ body: { metadata: { name, labels } } });
  return {
    name,
    cleanup: async () => {
      await core.deleteNamespace({ name }).catch(() => undefined);
    },
  };
}

export async function createServiceAccount(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  await kc.makeApiClient(CoreV1Api).createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
}

/** A ServiceAccount token from the TokenRequest API, as the kubelet projects it into a pod. */
export async function requestToken(kc: KubeConfig, namespace: string, serviceAccount: string, audience: string, expirationSeconds = 600): Promise<string> {
  const res = await kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    namespace,
    name: serviceAccount,
    body: { spec: { audiences: [audience], expirationSeconds } },
  });
  if (!res.status?.token) throw new Error('TokenRequest returned no token');
  return res.status.token;
}

export async function reviewToken(kc: KubeConfig, token: string, audiences: string[]) {
  const res = await kc.makeApiClient(AuthenticationV1Api).createTokenReview({ body: { spec: { token, audiences } } });
  return res.status ?? {};
}

/**
 * kubectl against the test cluster, asynchronously: a webhook the API server calls back may run in the test's own
 * process, and a synchronous spawn would block it until the API server times out.
 */
export function runKubectl(args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', args, { env: process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}
