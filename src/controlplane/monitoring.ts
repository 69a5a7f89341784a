// Port 15014: Prometheus metrics and the health endpoints kubelet probes.
import http from 'node:http';
import type { Registry } from 'prom-client';

export interface HealthState {
  /** Liveness: the process can serve. */
  live(): boolean;
  /** Readiness: every component reported ready; the reasons it is not, otherwise. */
  notReadyReasons(): string[];
}

export function createMonitoringServer(registry: Registry, health: HealthState): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics: ${err.message}\n`),
      );
    } else if (path === '/healthz') {
      const ok = health.live();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not live\n');
    } else if (path === '/readyz') {
      const reasons = health.notReadyReasons();
      res.writeHead(reasons.length === 0 ? 200 : 503, { 'content-type': 'text/plain' }).end(reasons.length === 0 ? 'ok\n' : `${reasons.join('\n')}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
}
