// Probe rewriting: under STRICT mTLS the kubelet's plaintext probes would be refused by the proxy,
// so each HTTP/TCP/gRPC probe of an app container is pointed at the proxy's status port
// (/app-health/<container>/<kind>) and the original travels to the proxy in CINCH_APP_PROBES,
// which runs it from inside the pod. Exec probes need no network and are left alone.
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { PROBE_KINDS, STATUS_PORT, appHealthPath, type ProbeKind } from './names.ts';

/** One original probe as the proxy runs it: ports resolved to numbers, defaults filled in. */
export type AppProbe =
  | { httpGet: { port: number; path: string; scheme: 'HTTP' | 'HTTPS'; host?: string; httpHeaders?: { name: string; value: string }[] }; timeoutSeconds?: number }
  | { tcpSocket: { port: number; host?: string }; timeoutSeconds?: number }
  | { grpc: { port: number; service?: string }; timeoutSeconds?: number };

/** The CINCH_APP_PROBES document: rewritten path (e.g. /app-health/web/readyz) → original probe. */
export type AppProbes = Record<string, AppProbe>;

/** The probes of one container as they were before rewriting, kept in cinch.dev/status to restore them. */
export type OriginalProbes = Partial<Record<ProbeKind, V1Probe>>;

export interface ProbeRewrite {
  /** The container with rewritten probes (a shallow copy), or the same object when nothing changed. */
  container: V1Container;
  originals: OriginalProbes | undefined;
}

/** Rewrite one container's probes, adding the originals to `appProbes`; unusable probes are left as they are, with a warning. */
export function rewriteProbes(container: V1Container, appProbes: AppProbes, warnings: string[]): ProbeRewrite {
  let rewritten: V1Container | undefined;
  let originals: OriginalProbes | undefined;
  for (const kind of PROBE_KINDS) {
    const probe = container[kind];
    if (!probe) continue;
    const appProbe = toAppProbe(container, probe, kind, warnings);
    if (!appProbe) continue;
    const path = appHealthPath(container.name, kind);
    appProbes[path] = appProbe;
    rewritten ??= { ...container };
    rewritten[kind] = redirect(probe, path);
    (originals ??= {})[kind] = probe;
  }
  return { container: rewritten ?? container, originals };
}

/** Keep the timing fields, swap the handler for an httpGet on the proxy. Defaults are explicit so API-server defaulting changes nothing. */
function redirect(probe: V1Probe, path: string): V1Probe {
  const { httpGet: _h, tcpSocket: _t, grpc: _g, ...timing } = probe;
  return { ...timing, httpGet: { path, port: STATUS_PORT, scheme: 'HTTP' } };
}

function toAppProbe(container: V1Container, probe: V1Probe, kind: ProbeKind, warnings: string[]): AppProbe | undefined {
  const timeout = probe.timeoutSeconds === undefined ? {} : { timeoutSeconds: probe.timeoutSeconds };
  const unresolved = (port: unknown): undefined => {
    warnings.push(`container ${container.name}: ${kind} port ${JSON.stringify(port)} is not a port of the container; probe not rewritten`);
    return undefined;
  };
  if (probe.httpGet) {
    const { httpGet } = probe;
    // Already aimed at the proxy (a manifest injected by hand): rewriting again would make the proxy probe itself.
    if (httpGet.port === STATUS_PORT && httpGet.path?.startsWith('/app-health/')) return undefined;
    const port = resolvePort(container, httpGet.port);
    if (port === undefined) return unresolved(httpGet.port);
    return {
      httpGet: {
        port,
        path: httpGet.path || '/',
        scheme: httpGet.scheme?.toUpperCase() === 'HTTPS' ? 'HTTPS' : 'HTTP',
        ...(httpGet.host ? { host: httpGet.host } : {}),
        ...(httpGet.httpHeaders?.length ? { httpHeaders: httpGet.httpHeaders.map(({ name, value }) => ({ name, value })) } : {}),
      },
      ...timeout,
    };
  }
  if (probe.tcpSocket) {
    const port = resolvePort(container, probe.tcpSocket.port);
    if (port === undefined) return unresolved(probe.tcpSocket.port);
    return { tcpSocket: { port, ...(probe.tcpSocket.host ? { host: probe.tcpSocket.host } : {}) }, ...timeout };
  }
  if (probe.grpc) {
    // gRPC probes take a number only (Kubernetes has no named port here), but be as strict as for the others.
    const port = resolvePort(container, probe.grpc.port);
    if (port === undefined) return unresolved(probe.grpc.port);
    return { grpc: { port, ...(probe.grpc.service ? { service: probe.grpc.service } : {}) }, ...timeout };
  }
  return undefined; // exec, or no handler at all
}

/** A number, a numeric string, or the name of one of the container's ports. */
export function resolvePort(container: V1Container, port: unknown): number | undefined {
  const n = typeof port === 'number' ? port : typeof port === 'string' && /^\d+$/.test(port) ? Number(port) : undefined;
  if (n !== undefined) return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
  if (typeof port !== 'string' || port === '') return undefined;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}
