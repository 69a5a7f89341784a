// `make cluster` / `make cluster-down`: a long-lived local cluster in .cluster/ for `make run` and manual use.
import path from 'node:path';
import { alive, readState, startCluster, stopCluster } from './cluster.ts';

const dir = path.resolve(process.env.CINCH_CLUSTER_DIR ?? '.cluster');
const cmd = process.argv[2];
if (cmd === 'up') {
  const existing = readState(dir);
  if (existing && existing.pids.every(alive)) {
    console.log(`cluster already running: export KUBECONFIG=${existing.kubeconfig}`);
  } else {
    const state = await startCluster({ dir });
    console.log(`cluster running: export KUBECONFIG=${state.kubeconfig}`);
  }
} else if (cmd === 'down') {
  stopCluster(dir);
  console.log('cluster stopped');
} else if (cmd === 'kubeconfig') {
  const state = readState(dir);
  if (!state) process.exit(1);
  console.log(state.kubeconfig);
} else {
  console.error('usage: node test/cluster/cli.ts up|down|kubeconfig');
  process.exit(2);
}
