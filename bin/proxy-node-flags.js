/**
 * V8 flags for the sidecar. A young generation of at most 4 MiB per semi-space (V8's default grows to 16)
 * keeps ~20 MiB of RSS off the server-side proxy after load with its p99 at 1,000 rps as with the default
 * (bench/proxy.ts, which imports this list for its proxies; 2 MiB saved a little less and doubled
 * the p99: more scavenges, more promotion). Set by re-executing Node in place (same PID, so PID 1 in a
 * container stays PID 1); a flag already given (NODE_OPTIONS, node's own arguments) wins.
 */
export const PROXY_NODE_FLAGS = ['--max-semi-space-size=4'];
