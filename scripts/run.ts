// `make run`: the control plane against $KUBECONFIG, or against a local real API server that it
// starts (like an embedded database) when no cluster is configured. Ctrl-C stops what it started.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { alive, readState, startCluster, stopCluster } from '../test/cluster/cluster.ts';

const root = path.resolve(import.meta.dirname, '..');
const clusterDir = path.join(root, '.cluster');
let startedHere = false;

let kubeconfig = process.env.KUBECONFIG;
if (kubeconfig && fs.existsSync(kubeconfig.split(':')[0])) {
  console.log(`[run] using the cluster from KUBECONFIG=${kubeconfig}`);
} else {
  const existing = readState(clusterDir);
  const running = existing?.pids.every(alive);
  if (existing && running) {
    console.log('[run] using the local cluster already running in .cluster/ (make cluster-down stops it)');
    kubeconfig = existing.kubeconfig;
  } else {
    console.log('[run] no cluster configured: starting a local one (etcd + kube-apiserver) in .cluster/');
    kubeconfig = (await startCluster({ dir: clusterDir, ownerPid: process.pid })).kubeconfig;
    startedHere = true;
  }
}

console.log(`[run] starting the control plane (metrics and health on http://127.0.0.1:15014); Ctrl-C stops it\n`);
const child = spawn(process.execPath, [path.join(root, 'bin/cinch.js'), 'control-plane'], {
  stdio: 'inherit',
  env: { ...process.env, KUBECONFIG: kubeconfig },
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  if (startedHere) {
    console.log('[run] stopping the local cluster');
    stopCluster(clusterDir);
  }
  // Stopped by Ctrl-C or SIGTERM is a normal end.
  process.exit(signal === 'SIGINT' || signal === 'SIGTERM' ? 0 : (code ?? 1));
});
