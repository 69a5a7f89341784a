// Kubernetes client configuration: an explicit kubeconfig, else client-node's default order
// ($KUBECONFIG, ~/.kube/config, in-cluster).
import { KubeConfig } from '@kubernetes/client-node';

export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes cluster configured: set --kubeconfig or KUBECONFIG, or run in a cluster');
  return kc;
}
