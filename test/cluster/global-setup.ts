// node --test global setup: one real API server for the whole run, stopped at the end whatever happened.
// KUBECONFIG pointing at an existing cluster (kind, k3d, a real one) is used as it is.
import fs from 'node:fs';
import { startCluster, stopCluster, type ClusterState } from './cluster.ts';

let started: ClusterState | undefined;

export async function globalSetup(): Promise<void> {
  const existing = process.env.KUBECONFIG;
  if (existing && fs.existsSync(existing.split(':')[0])) {
    process.stderr.write(`[cluster] using the existing cluster from KUBECONFIG=${existing}\n`);
    return;
  }
  started = await startCluster({ ownerPid: process.pid });
  // Test files run in child processes, which inherit this environment.
  process.env.KUBECONFIG = started.kubeconfig;
  process.env.CINCH_TEST_CLUSTER_DIR = started.dir;
}

export async function globalTeardown(): Promise<void> {
  if (!started) return;
  stopCluster(started.dir);
  fs.rmSync(started.dir, { recursive: true, force: true });
  process.stderr.write('[cluster] stopped\n');
}
