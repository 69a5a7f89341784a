// `make run`: Cinch against $KUBECONFIG, or against a local real API server that it starts (like an
// embedded database) when no cluster is configured; then, on the local cluster, the demo
// (scripts/demo.ts): webhook registration, an injected workload, an issued identity, and the mTLS and
// policy decisions of a request between two workloads in network namespaces. Ctrl-C stops everything
// it started. CINCH_DEMO=0 (or `make run DEMO=0`) runs only the control plane, as before the demo;
// CINCH_DEMO=1 runs the demo against a cluster from KUBECONFIG too.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { alive, readState, startCluster, stopCluster } from '../test/cluster/cluster.ts';

const root = path.resolve(import.meta.dirname, '..');
const clusterDir = path.join(root, '.cluster');
let startedHere = false;
let local = true;

const demoSetting = (process.env.CINCH_DEMO ?? '').trim();
if (demoSetting && !['0', '1'].includes(demoSetting)) {
  console.error(`[run] CINCH_DEMO (or make run DEMO=…) must be 0 or 1, not "${demoSetting}"`);
  process.exit(2);
}

console.log('== Kubernetes API server');
let kubeconfig = process.env.KUBECONFIG;
if (kubeconfig && fs.existsSync(kubeconfig.split(':')[0])) {
  console.log(`[run] using the cluster from KUBECONFIG=${kubeconfig}`);
  local = false;
} else {
  const existing = readState(clusterDir);
  const running = existing?.pids.every(alive);
  if (existing && running) {
    console.log('[run] using the local cluster already running in .cluster/ (make cluster-down stops it)');
    kubeconfig = existing.kubeconfig;
  } else {
    console.log('[run] no cluster configured: starting a local one (etcd + kube-apiserver 1.20.2, no kubelet) in .cluster/');
    kubeconfig = (await startCluster({ dir: clusterDir, ownerPid: process.pid, progress: (m) => console.log(`      ${m}`) })).kubeconfig;
    startedHere = true;
  }
}
process.env.KUBECONFIG = kubeconfig;

function stopLocalCluster(): void {
  if (!startedHere) return;
  console.log('[run] stopping the local cluster (etcd + kube-apiserver) it started');
  stopCluster(clusterDir);
}

// The demo runs where its pods without a kubelet are harmless: the local cluster. Elsewhere on request only.
const demo = demoSetting === '1' || (demoSetting === '' && local);
if (demoSetting === '' && !local) console.log('[run] the demo runs on the local cluster only (CINCH_DEMO=1 runs it here too); starting the control plane');

if (demo) {
  const { runDemo } = await import('./demo.ts');
  const code = await runDemo({
    keepRunning: true,
    notes: startedHere ? ['Ctrl-C also stops the local API server (etcd + kube-apiserver) started for this run'] : [],
  });
  stopLocalCluster();
  process.exit(code);
}

// The control plane keeps its CA Secret and Lease in cinch-system, which a fresh local cluster lacks, and
// watches the security.istio.io CRDs, which it does not have either (without them no proxy gets a config).
if (local) {
  const { CoreV1Api, KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  await kc
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name: 'cinch-system' } } })
    .then(() => console.log('[run] created namespace cinch-system'))
    .catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  const { installCrds } = await import('../test/e2e/mesh.ts');
  await installCrds(kc);
  console.log('[run] the PeerAuthentication and AuthorizationPolicy CRDs are installed (webhook-config/crds)');
}
console.log(`[run] starting the control plane (metrics and health on http://127.0.0.1:15014); Ctrl-C stops it\n`);
const child = spawn(process.execPath, [path.join(root, 'bin/cinch.js'), 'control-plane'], {
  stdio: 'inherit',
  env: { ...process.env, KUBECONFIG: kubeconfig },
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  stopLocalCluster();
  // Stopped by Ctrl-C or SIGTERM is a normal end.
  process.exit(signal === 'SIGINT' || signal === 'SIGTERM' ? 0 : (code ?? 1));
});
