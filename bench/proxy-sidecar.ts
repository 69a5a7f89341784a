// One Cinch proxy for bench/proxy.ts, wired as `cinch proxy` wires it (src/proxy/run.ts) minus the
// identity agent and the config stream, whose products (credentials from the CA, a pushed ProxyConfig)
// are fixed here. Its own small entry file so that the process loads the data path and nothing else:
// Node's type stripping keeps memory in proportion to the largest file it has stripped, so running the
// proxy from the much larger bench file would overstate its RSS.
//
//   node bench/proxy-sidecar.ts --side server|client --dir CERT_DIR --port ORIGINAL_DESTINATION_PORT
//
// server: an InboundProxy whose "original destination" is always the app's port (STRICT, policies
// compiled by compileProxyConfig); client: an OutboundProxy whose original destination is always the
// inbound proxy's port, which the config says is meshed with the server's SPIFFE ID. Both listen on
// 127.0.0.1 on a free port, print {"port": N}, and stop on SIGTERM.
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { meshSecureContext } from '../src/proxy/agent.ts';
import type { ProxyConfig } from '../src/proxy/config.ts';
import { InboundProxy } from '../src/proxy/inbound.ts';
import { ProxyMetrics } from '../src/proxy/metrics.ts';
import { OutboundProxy } from '../src/proxy/outbound.ts';
import { compileProxyConfig, LiveProxyConfig } from '../src/proxy/policy-config.ts';
import { MutableTlsMaterial, type MeshCredentials } from '../src/proxy/types.ts';
import { createProxyLogger } from '../src/proxy/log.ts';
import { createRegistry } from '../src/telemetry/metrics.ts';

export const TRUST_DOMAIN = 'cluster.local';
export const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/foo/sa/httpbin`;
export const CLIENT_ID = `spiffe://${TRUST_DOMAIN}/ns/bar/sa/sleep`;
export const HOST = 'httpbin.foo.svc.cluster.local';

const meta = (name: string, namespace: string) => ({ name, namespace, creationTimestamp: '2026-01-01T00:00:00Z' });

/** What the control plane would push to each side (src/proxy/config.ts). */
export function pushedConfig(side: 'server' | 'client', trustBundle: string[]): ProxyConfig {
  const workload: ProxyConfig['workload'] =
    side === 'server'
      ? { namespace: 'foo', name: 'httpbin-7d9c6b8f5-x2x4q', serviceAccount: 'httpbin', labels: { app: 'httpbin', version: 'v1' } }
      : { namespace: 'bar', name: 'sleep-5c6f7b9d8-k8m2n', serviceAccount: 'sleep', labels: { app: 'sleep' } };
  return {
    version: 'bench-1',
    workload,
    trustDomain: TRUST_DOMAIN,
    rootNamespace: 'cinch-system',
    trustBundle,
    peerAuthentications: [
      { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: meta('default', 'cinch-system'), spec: { mtls: { mode: 'STRICT' } } },
      { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: meta('default', 'foo'), spec: { mtls: { mode: 'STRICT' } } },
    ],
    authorizationPolicies: [
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: meta('httpbin-readers', 'foo'),
        spec: {
          selector: { matchLabels: { app: 'httpbin' } },
          action: 'ALLOW',
          rules: [
            {
              from: [{ source: { principals: [`${TRUST_DOMAIN}/ns/bar/sa/sleep`, `${TRUST_DOMAIN}/ns/shop/sa/checkout`] } }],
              to: [{ operation: { methods: ['GET', 'HEAD'], paths: ['/api/*', '/status/*'] } }],
            },
            { from: [{ source: { namespaces: ['monitoring'] } }], to: [{ operation: { methods: ['GET'], paths: ['/metrics'] } }] },
          ],
        },
      },
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: meta('deny-admin', 'foo'),
        spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*', '/debug/*'] } }] }] },
      },
    ],
    meshedDestinations: side === 'client' ? { '127.0.0.1': { identities: [SERVER_ID], workload: { name: 'httpbin', namespace: 'foo' }, service: HOST } } : {},
  };
}

function readCredentials(dir: string, name: 'server' | 'client', spiffeId: string): MeshCredentials {
  const keyPem = fs.readFileSync(path.join(dir, `${name}-key.pem`), 'utf8');
  const certChainPem = fs.readFileSync(path.join(dir, `${name}-chain.pem`), 'utf8');
  const trustBundle = [fs.readFileSync(path.join(dir, 'root.pem'), 'utf8')];
  return { spiffeId, keyPem, certChainPem, trustBundle, secureContext: meshSecureContext(keyPem, certChainPem, trustBundle) };
}

async function runSidecar(side: 'server' | 'client', dir: string, target: number): Promise<void> {
  const credentials = readCredentials(dir, side, side === 'server' ? SERVER_ID : CLIENT_ID);
  const tlsMaterial = new MutableTlsMaterial(credentials);
  const config = pushedConfig(side, [...credentials.trustBundle]);
  // As in run.ts: JSON logs at info on stderr (the bench sends them to a file), Istio metrics on a registry.
  const log = createProxyLogger({ level: 'info', context: { component: 'proxy', namespace: config.workload.namespace, pod: config.workload.name, identity: credentials.spiffeId } });
  const live = new LiveProxyConfig();
  live.set(compileProxyConfig(config, (policies, request) => log.info('audit', { policies, sourcePrincipal: request.source.principal, port: request.destination.port })));
  const metrics = new ProxyMetrics(createRegistry());
  const originalDestination = () => ({ address: '127.0.0.1', port: target });
  const proxy =
    side === 'server'
      ? new InboundProxy({ tls: tlsMaterial, config: () => live.inbound, originalDestination, metrics, logger: log.child({ component: 'inbound' }) })
      : new OutboundProxy({
          tls: tlsMaterial,
          config: () => live.outbound,
          originalDestination,
          metrics,
          logger: log.child({ component: 'outbound' }),
          workload: { name: config.workload.name, namespace: config.workload.namespace },
        });
  const { port } = await proxy.listen(0, '127.0.0.1');
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  // Gone with the bench: SIGTERM from it, or its death noticed by the parent changing.
  const parent = process.ppid;
  const watchdog = setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
  }, 1000);
  watchdog.unref();
  await once(process, 'SIGTERM');
  await proxy.close(0);
  process.exit(0); // --cpu-prof writes its profile on a normal exit
}

if (process.argv[1] === import.meta.filename) {
  const { values } = parseArgs({ options: { side: { type: 'string' }, dir: { type: 'string' }, port: { type: 'string' } } });
  if ((values.side !== 'server' && values.side !== 'client') || !values.dir || !values.port) {
    console.error('usage: node bench/proxy-sidecar.ts --side server|client --dir CERT_DIR --port PORT');
    process.exit(2);
  }
  await runSidecar(values.side, values.dir, Number(values.port));
}
