// Native sidecars (init containers with restartPolicy: Always, KEP-753) are on by default from
// Kubernetes 1.29 (beta). Both the API server (which must keep the field) and every kubelet (which
// must run it) have to be new enough; one old node would start the proxy as a blocking init container.
export const NATIVE_SIDECAR_MIN_MINOR = 29;

/** "v1.29.3", "v1.30.0-eks-1a2b", "1.28" → [1, 29]; undefined for anything unparsable. */
export function parseKubeVersion(version: string | undefined): [number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)/.exec(version ?? '');
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

function atLeast(version: string | undefined, minor: number): boolean {
  const v = parseKubeVersion(version);
  return v !== undefined && (v[0] > 1 || (v[0] === 1 && v[1] >= minor));
}

/** Pure: supported when the API server and every node's kubelet are new enough (no nodes: the API server decides). */
export function nativeSidecarSupported(apiServerVersion: string | undefined, kubeletVersions: readonly (string | undefined)[]): boolean {
  return atLeast(apiServerVersion, NATIVE_SIDECAR_MIN_MINOR) && kubeletVersions.every((v) => atLeast(v, NATIVE_SIDECAR_MIN_MINOR));
}
