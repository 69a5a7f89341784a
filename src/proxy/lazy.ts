// Node modules the proxy needs only for some traffic, loaded on first use.
import type * as Http2 from 'node:http2';

let http2Module: typeof Http2 | undefined;

/** node:http2: ~4 MiB of RSS that a sidecar without HTTP/2 traffic (or gRPC probes) never pays. */
export function http2(): typeof Http2 {
  return (http2Module ??= process.getBuiltinModule('node:http2'));
}
