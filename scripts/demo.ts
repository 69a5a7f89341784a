// The `make run` demo: what Cinch does, step by step, against the cluster in $KUBECONFIG.
// The control plane, the "pods" in network namespaces, their proxies and apps come from the end-to-end
// harness (test/e2e/mesh.ts); this script adds the webhook registration, an injected demo workload and
// the narration.
//
//   node scripts/demo.ts            run the demo once, clean up, exit (0 when every step worked);
//                                   --keep: stay up until Ctrl-C; --unique-names: random namespace names
//   runDemo({ keepRunning: true })  (scripts/run.ts) then keep the control plane up until Ctrl-C
//
// Without network namespaces (not root, or CINCH_DEMO_NETNS=0) it says so and shows the injection and
// an identity issued by the CA for a ServiceAccount token, and skips the request between pods.
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { V1MutatingWebhookConfiguration, V1Pod, V1Probe } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { buildSpiffeCsr } from '../src/ca/csr-build.ts';
import { APP_PORT, Mesh, captureUnsupportedReason, meshSkipReason, sumOf, summariseWire } from '../test/e2e/mesh.ts';
import type { HttpResult, MeshPod } from '../test/e2e/mesh.ts';
import { freePort } from '../test/support/ports.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const WEBHOOK_NAME = 'cinch-sidecar-injector';
const INJECT_LABEL = 'cinch.dev/inject';
const DENIED_BODY = 'RBAC: access denied';
const STANDARD_PORTS = { ca: 15012, monitoring: 15014, webhook: 15017 };

// ---------------------------------------------------------------------------------------------
// Output: short step headers, indented details, and a "look at" line saying what matters.

const out = (line = ''): void => void process.stdout.write(`${line}\n`);
const detail = (line: string): void => out(`      ${line}`);
const lookAt = (line: string): void => out(`   => ${line}`);
let stepNo = 0;
let stepTotal = 0;
function header(title: string): void {
  stepNo++;
  out(`\n== [${stepNo}/${stepTotal}] ${title}`);
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Helpers

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function namespaceExists(core: CoreV1Api, name: string): Promise<boolean> {
  try {
    await core.readNamespace({ name });
    return true;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return false;
    throw err;
  }
}

/** `name` when free, else `name-<random>` (a namespace deleted earlier stays Terminating without a controller-manager). */
async function freeNamespaceName(core: CoreV1Api, name: string, unique = false): Promise<string> {
  if (!unique && !(await namespaceExists(core, name))) return name;
  return `${name}-${Math.random().toString(16).slice(2, 7)}`;
}

function probeText(p: V1Probe | undefined): string {
  if (!p) return '-';
  if (p.httpGet) return `GET :${String(p.httpGet.port)}${p.httpGet.path ?? '/'}`;
  if (p.tcpSocket) return `TCP :${String(p.tcpSocket.port)}`;
  if (p.grpc) return `gRPC :${p.grpc.port}`;
  if (p.exec) return `exec ${(p.exec.command ?? []).join(' ')}`;
  return JSON.stringify(p);
}

function describeResult(r: HttpResult): string {
  if (r.status === undefined) return `no HTTP answer (${r.error ?? 'closed'})`;
  return `${r.status} ${JSON.stringify((r.body ?? '').trim())}`;
}

/** Asks the CA (POST /v1/certificates) for a certificate, as a proxy does; returns the leaf. */
function askCa(caPort: number, rootPem: string, token: string, spiffeId: string): Promise<X509Certificate> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const body = JSON.stringify({ csr: buildSpiffeCsr(privateKey, publicKey, spiffeId) });
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: caPort,
        path: '/v1/certificates',
        method: 'POST',
        ca: rootPem,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: 10_000,
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`CA answered ${res.statusCode}: ${text.slice(0, 300)}`));
          try {
            const json = JSON.parse(text) as { certChain: string[] };
            resolve(new X509Certificate(json.certChain[0]));
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('the CA did not answer within 10 s')));
    req.on('error', reject);
    req.end(body);
  });
}

/** A TLS handshake from a pod without a proxy to the server's port: the certificate its proxy presents. */
const PEEK_CERT = `
import tls from 'node:tls';
const { host, port } = JSON.parse(process.argv[1]);
// A mesh ALPN, so the server's proxy (PERMISSIVE) answers the handshake itself instead of passing it to the app.
const s = tls.connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['cinch-http/1.1'] });
const done = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
s.on('secureConnect', () => { const c = s.getPeerCertificate(); done({ san: c.subjectaltname, validFrom: c.valid_from, validTo: c.valid_to, issuer: c.issuer, serial: c.serialNumber }); });
s.on('error', (e) => done({ error: e.code ?? e.message }));
s.setTimeout(5000, () => done({ error: 'TIMEOUT' }));
`;

/** The proxy's own log line for its certificate. */
function issuedFromLog(pod: MeshPod): { identity?: string; notAfter?: string; renewInMs?: number } | undefined {
  for (const line of (pod.proxy?.stderr ?? '').split('\n')) {
    if (!line.includes('workload certificate issued')) continue;
    try {
      return JSON.parse(line) as { identity?: string; notAfter?: string; renewInMs?: number };
    } catch {
      // not JSON
    }
  }
  return undefined;
}

/** Sends requests from `from` until the answer satisfies `pred` (bounded); returns it and the time taken. */
async function until(from: MeshPod, url: string, pred: (r: HttpResult) => boolean, timeoutMs = 8000): Promise<{ res: HttpResult; ms: number }> {
  const start = Date.now();
  let res: HttpResult = {};
  while (Date.now() - start < timeoutMs) {
    [res] = await from.request(url, { timeoutMs: 2000 });
    if (pred(res)) return { res, ms: Date.now() - start };
    await sleep(100);
  }
  throw new Error(`no expected answer within ${timeoutMs} ms; last: ${describeResult(res)}`);
}

function compactLog(line: string): string {
  try {
    const { timestamp, level, message, ...rest } = JSON.parse(line) as Record<string, unknown>;
    const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
    return `[control-plane] ${typeof timestamp === 'string' ? timestamp.slice(11, 19) : ''} ${String(level)} ${String(message)}${extra}`;
  } catch {
    return `[control-plane] ${line}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The demo

export interface DemoOptions {
  /** After the steps, keep everything up (logs follow) until SIGINT/SIGTERM, then clean up. */
  keepRunning: boolean;
  /** Lines printed with "how to reach it" (e.g. that Ctrl-C also stops the local cluster). */
  notes?: string[];
  /** Random suffixes on the namespaces, so a shared cluster never sees cinch-system/cinch-demo (tests). */
  uniqueNames?: boolean;
}

/** Runs the demo against process.env.KUBECONFIG; returns the exit code after everything it started is gone. */
export async function runDemo(opts: DemoOptions): Promise<number> {
  const kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) throw new Error('runDemo needs KUBECONFIG');
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const core = kc.makeApiClient(CoreV1Api);
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);

  const noNetns = process.env.CINCH_DEMO_NETNS === '0' ? 'CINCH_DEMO_NETNS=0' : meshSkipReason();
  stepTotal = noNetns ? 4 : 7;

  let mesh: Mesh | undefined;
  let webhookApplied = false;
  let stopRequested = false;
  let wakeStop: () => void = () => undefined;
  const stopSignal = new Promise<void>((resolve) => (wakeStop = resolve));
  // Registered before the mesh's own hooks, so ours runs first; a re-raised signal is ignored here.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopRequested) return;
    stopRequested = true;
    out(`\n[demo] ${signal}: stopping everything the demo started`);
    wakeStop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const cleanup = async (): Promise<void> => {
    out('\n== cleanup');
    if (webhookApplied) {
      await admission.deleteMutatingWebhookConfiguration({ name: WEBHOOK_NAME }).catch(() => undefined);
      detail(`deleted MutatingWebhookConfiguration ${WEBHOOK_NAME}`);
    }
    if (mesh) {
      await mesh.cleanup();
      const left = mesh.remaining();
      const netns = noNetns ? '' : left.length === 0 ? ' and every network namespace' : ` and network namespaces except ${left.join(', ')}`;
      detail(`stopped the control plane${noNetns ? '' : ', proxies and apps'}; deleted the Kubernetes namespaces${netns}`);
    }
  };

  // The harness's processes are unreferenced: without this, awaiting their exit could let the loop run dry.
  const keepAlive = setInterval(() => undefined, 60_000);
  let code = 0;
  try {
    await Promise.race([
      steps(),
      stopSignal.then(() => {
        throw new Error('stopped');
      }),
    ]);
    if (opts.keepRunning && !stopRequested) await follow();
  } catch (err) {
    if (!stopRequested) {
      code = 1;
      out(`\n[demo] FAILED: ${(err as Error).message}`);
      if (mesh) out(mesh.logs(15));
    }
  } finally {
    await cleanup();
    clearInterval(keepAlive);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return code;

  async function steps(): Promise<void> {
    // ---- control plane
    header('Control plane: CA, injection webhook, policy/config server');
    const namespace = await freeNamespaceName(core, 'cinch-system', opts.uniqueNames);
    const standardFree = opts.keepRunning && (await Promise.all(Object.values(STANDARD_PORTS).map(portFree))).every(Boolean);
    const ports = standardFree ? STANDARD_PORTS : undefined;
    const webhookPort = ports?.webhook ?? (await freePort());
    detail(`installing the security.istio.io CRDs (AuthorizationPolicy, PeerAuthentication) and starting \`cinch control-plane\` in namespace ${namespace}`);
    mesh = await Mesh.start({
      name: 'demo',
      namespace,
      ports: { ...(ports ?? {}), webhook: webhookPort },
      lan: !noNetns,
      controlPlaneArgs: ['--webhook-url', `https://127.0.0.1:${webhookPort}/inject`],
    });
    const m = mesh;
    detail(`ready: CA + config https://127.0.0.1:${m.ports.ca}, webhook https://127.0.0.1:${m.ports.webhook}/inject, metrics http://127.0.0.1:${m.ports.monitoring}/metrics`);
    detail(`root CA created in Secret ${namespace}/cinch-ca: ${new X509Certificate(m.trustBundle).subject.replace(/\n/g, ', ')}`);

    // ---- webhook
    header('Register the injection webhook');
    const mwc = parseYaml(fs.readFileSync(path.join(ROOT, 'webhook-config/mutatingwebhook.yaml'), 'utf8')) as V1MutatingWebhookConfiguration;
    try {
      await admission.createMutatingWebhookConfiguration({ body: mwc });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
      const existing = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_NAME });
      mwc.metadata = { ...mwc.metadata, resourceVersion: existing.metadata?.resourceVersion };
      await admission.replaceMutatingWebhookConfiguration({ name: WEBHOOK_NAME, body: mwc });
    }
    webhookApplied = true;
    detail('applied webhook-config/mutatingwebhook.yaml (caBundle empty, clientConfig: the in-cluster Service)');
    const url = `https://127.0.0.1:${m.ports.webhook}/inject`;
    const deadline = Date.now() + 15_000;
    for (;;) {
      const cur = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_NAME });
      const hooks = cur.webhooks ?? [];
      if (hooks.length > 0 && hooks.every((h) => h.clientConfig.caBundle && h.clientConfig.url === url)) {
        detail(`the control plane wrote its CA into caBundle and pointed ${hooks.map((h) => h.name).join(' and ')} at ${url}`);
        break;
      }
      if (Date.now() > deadline) throw new Error('the control plane did not fill in the webhook caBundle/url within 15 s');
      await sleep(200);
    }

    // ---- namespace + workload
    header('A labelled namespace and a workload: the API server calls the webhook');
    const demoNs = await freeNamespaceName(core, 'cinch-demo', opts.uniqueNames);
    await m.ensureNamespace(demoNs, { [INJECT_LABEL]: 'enabled' });
    await core.createNamespacedServiceAccount({ namespace: demoNs, body: { metadata: { name: 'web' } } });
    detail(`namespace ${demoNs} labelled ${INJECT_LABEL}=enabled; creating Pod ${demoNs}/web (image nginx, readiness and liveness GET :8080/healthz)`);
    const pod: V1Pod = {
      metadata: { name: 'web', labels: { app: 'web' } },
      spec: {
        serviceAccountName: 'web',
        containers: [
          {
            name: 'web',
            image: 'nginx:1.27',
            ports: [{ name: 'http', containerPort: 8080 }],
            readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 5 },
            livenessProbe: { httpGet: { path: '/healthz', port: 8080 } },
          },
        ],
      },
    };
    await core.createNamespacedPod({ namespace: demoNs, body: pod });
    const got = await core.readNamespacedPod({ namespace: demoNs, name: 'web' });
    const status = JSON.parse(got.metadata?.annotations?.['cinch.dev/status'] ?? '{}') as { initContainers?: string[]; containers?: string[]; volumes?: string[]; annotations?: string[]; labels?: string[] };
    detail(`read back from the API server (no kubelet here, so it stays Pending):`);
    for (const c of got.spec?.initContainers ?? []) {
      if (!status.initContainers?.includes(c.name)) continue;
      detail(`  + init container ${c.name.padEnd(12)} ${c.image}  \`cinch ${(c.args ?? []).join(' ')}\``);
      detail(`      ${' '.repeat(12)} runs as uid ${c.securityContext?.runAsUser}, capabilities ${(c.securityContext?.capabilities?.add ?? []).join('+')} only`);
    }
    for (const c of got.spec?.containers ?? []) {
      if (status.containers?.includes(c.name)) {
        detail(`  + container      ${c.name.padEnd(12)} ${c.image}  \`cinch ${(c.args ?? []).join(' ')}\`, uid ${c.securityContext?.runAsUser}, read-only root, ports ${(c.ports ?? []).map((p) => p.containerPort).join(',')}`);
      } else {
        detail(`    container      ${c.name.padEnd(12)} ${c.image}  (yours) readiness ${probeText(c.readinessProbe)}, liveness ${probeText(c.livenessProbe)}`);
      }
    }
    const vols = (got.spec?.volumes ?? []).filter((v) => status.volumes?.includes(v.name));
    const volText = vols.map((v) => {
      if (v.projected) {
        const t = v.projected.sources?.find((s) => s.serviceAccountToken)?.serviceAccountToken;
        return `${v.name} (token, audience ${t?.audience})`;
      }
      if (v.configMap) return `${v.name} (ConfigMap ${v.configMap.name})`;
      if (v.emptyDir) return `${v.name} (in memory)`;
      if (v.downwardAPI) return `${v.name} (pod info)`;
      return v.name;
    });
    detail(`  + volumes        ${volText.join(', ')}`);
    detail(`  + labels ${(status.labels ?? []).join(', ')}; annotations ${(status.annotations ?? []).join(', ')}`);
    lookAt(`the app's probes now go through the proxy (:15020/app-health/…), which runs the originals; cinch.dev/status records what was added`);

    // ---- identity
    if (noNetns) {
      header('Identity: a certificate from the CA for the workload\'s ServiceAccount token');
      out(`   !! network namespaces are not available here (${noNetns}):`);
      out('   !! no proxies or requests between pods; run `make run` as root to see mTLS and policies.');
      const tokenFile = await m.writeToken(demoNs, 'web', 'web.token');
      const spiffeId = m.spiffeId(demoNs, 'web');
      detail(`TokenRequest for ServiceAccount ${demoNs}/web (audience cinch-ca), CSR for ${spiffeId}, POST https://127.0.0.1:${m.ports.ca}/v1/certificates`);
      const leaf = await askCa(m.ports.ca, m.trustBundle, fs.readFileSync(tokenFile, 'utf8').trim(), spiffeId);
      detail(`issued: ${leaf.subjectAltName}`);
      detail(`valid ${new Date(leaf.validFrom).toISOString()} → ${new Date(leaf.validTo).toISOString()} (issuer ${leaf.issuer.replace(/\n/g, ', ')})`);
      lookAt('the identity comes from the token only: a CSR naming another ServiceAccount is refused (403)');
    } else {
      await meshSteps(m, demoNs);
    }
  }

  async function meshSteps(m: Mesh, demoNs: string): Promise<void> {
    header('Two workloads in network namespaces, each with `cinch init` rules and a `cinch proxy`');
    detail('client and server: a network namespace each on one bridge, real iptables rules, the proxy as uid 1337, Pod objects in ' + demoNs);
    const server = await m.addPod({ label: 'server', meshed: true, app: true, namespace: demoNs });
    const client = await m.addPod({ label: 'client', meshed: true, namespace: demoNs });
    const outsider = await m.addPod({ label: 'outsider', meshed: false });
    detail(`server ${server.ip} (app on :${APP_PORT}), client ${client.ip}, outsider ${outsider.ip} (no proxy)`);

    header('Identity: the certificates the proxies obtained from the CA');
    for (const p of [client, server]) {
      const issued = issuedFromLog(p);
      detail(`${p.label.padEnd(7)} proxy log: ${issued?.identity ?? '?'}, valid until ${issued?.notAfter ?? '?'}, renews in ${issued?.renewInMs !== undefined ? Math.round(issued.renewInMs / 60_000) : '?'} min`);
    }
    const peek = JSON.parse((await outsider.netns.nodeEval(PEEK_CERT, [JSON.stringify({ host: server.ip, port: APP_PORT })])).stdout.trim().split('\n').pop() ?? '{}') as {
      san?: string;
      validFrom?: string;
      validTo?: string;
      issuer?: Record<string, string>;
      error?: string;
    };
    if (peek.san) {
      detail(`a TLS handshake from the outsider to ${server.ip}:${APP_PORT} shows the server proxy's certificate:`);
      detail(`  ${peek.san}, valid ${peek.validFrom} → ${peek.validTo}, issuer ${Object.entries(peek.issuer ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')}`);
    } else {
      detail(`(a TLS handshake from the outsider to the server's proxy got no certificate: ${peek.error ?? 'no answer'})`);
    }
    lookAt('SPIFFE ID spiffe://<trust domain>/ns/<namespace>/sa/<service account>, short-lived, renewed at half-life');

    header('mTLS: the client calls the server');
    const noCapture = captureUnsupportedReason();
    const capture = noCapture ? undefined : await server.capture(APP_PORT);
    const [res] = await client.request(server.url('/hello'));
    detail(`client app → GET ${server.url('/hello')}: ${describeResult(res)}`);
    if (capture) {
      const wire = summariseWire(await capture.stop(), APP_PORT);
      detail(`on the wire (tcpdump on the server's interface): ${wire.clientHellos} TLS ClientHello, ${wire.tlsApplicationData} TLS data records, plaintext "GET /hello" seen: ${wire.bytes.includes('GET /hello') ? 'YES' : 'no'}`);
    } else {
      detail(`(no packet capture: ${noCapture})`);
    }
    const seen = server.appRequests().at(-1);
    if (seen?.xfcc) detail(`the server app received x-forwarded-client-cert: ${seen.xfcc}`);
    const metrics = await server.metrics();
    const mtls = sumOf(metrics, 'istio_requests_total', { reporter: 'destination', connection_security_policy: 'mutual_tls', source_principal: client.spiffeId });
    detail(`server proxy metric: istio_requests_total{reporter="destination",connection_security_policy="mutual_tls",source_principal="${client.spiffeId}"} ${mtls}`);
    if (res.status !== 200 || mtls < 1) throw new Error(`expected a 200 over mutual TLS; got ${describeResult(res)}, mutual_tls count ${mtls}`);
    lookAt('connection_security_policy="mutual_tls": both sides proved their SPIFFE identity; the apps speak plain HTTP');

    header('Authorization: a DENY policy on the server, then removed');
    const policy = { action: 'DENY', rules: [{ from: [{ source: { principals: [client.principal] } }] }] };
    detail(`kubectl apply: AuthorizationPolicy ${demoNs}/deny-client  action DENY, rules from principals [${client.principal}]`);
    await m.applyPolicy('AuthorizationPolicy', demoNs, 'deny-client', policy);
    const denied = await until(client, server.url('/hello'), (r) => r.status === 403);
    detail(`client → server: ${describeResult(denied.res)}   (in force after ${denied.ms} ms)`);
    if (denied.res.body !== DENIED_BODY) throw new Error(`expected "${DENIED_BODY}", got ${describeResult(denied.res)}`);
    await m.deletePolicy('AuthorizationPolicy', demoNs, 'deny-client');
    detail(`kubectl delete authorizationpolicy -n ${demoNs} deny-client`);
    const allowed = await until(client, server.url('/hello'), (r) => r.status === 200);
    detail(`client → server: ${describeResult(allowed.res)}   (after ${allowed.ms} ms)`);
    const after = await server.metrics();
    detail(`server proxy: ${sumOf(after, 'istio_requests_total', { reporter: 'destination', response_code: '403', source_principal: client.spiffeId })} request(s) answered 403 by the proxy; the app never saw them`);
    lookAt('the server\'s proxy decides with Istio\'s AuthorizationPolicy semantics, from the peer\'s certificate identity');
  }

  async function follow(): Promise<void> {
    const m = mesh!;
    out('\n== Cinch is running. Ctrl-C stops everything this started.');
    detail(`export KUBECONFIG=${kubeconfig}`);
    detail(`control plane: namespace ${m.cpNamespace}; CA + config https://127.0.0.1:${m.ports.ca}, webhook https://127.0.0.1:${m.ports.webhook}/inject, metrics http://127.0.0.1:${m.ports.monitoring}/metrics`);
    detail(`npx cinch check${m.cpNamespace === 'cinch-system' ? '' : ` --namespace ${m.cpNamespace}`}      verify the installation`);
    detail(`kubectl get pods -A; kubectl get authorizationpolicies -A`);
    const client = m.pods.find((p) => p.label === 'client');
    const server = m.pods.find((p) => p.label === 'server');
    if (client && server) {
      detail(`ip netns exec ${client.netns.name} setpriv --reuid 1000 --regid 1000 --clear-groups curl -s ${server.url('/hello')}`);
      detail(`    a request from the client pod (through both proxies); try it after applying a policy in namespace ${server.namespace}`);
    }
    for (const n of opts.notes ?? []) detail(n);
    out('\ncontrol plane log (follows):');
    let offset = 0;
    const forward = (): void => {
      const text = m.controlPlane?.stderr ?? '';
      const end = text.lastIndexOf('\n') + 1;
      if (end <= offset) return;
      for (const line of text.slice(offset, end).split('\n')) if (line) out(compactLog(line));
      offset = end;
    };
    forward();
    const timer = setInterval(forward, 500);
    const exited = m.controlPlane ? m.controlPlane.exited.then((r) => r) : new Promise<never>(() => undefined);
    const result = await Promise.race([stopSignal.then(() => undefined), exited]);
    clearInterval(timer);
    forward();
    if (result && !stopRequested) throw new Error(`the control plane exited (${result.code ?? result.signal})`);
  }
}

// `node scripts/demo.ts [--keep] [--unique-names]`: once, non-interactively (the e2e test runs it this way).
if (import.meta.filename === process.argv[1]) {
  process.exitCode = await runDemo({ keepRunning: process.argv.includes('--keep'), uniqueNames: process.argv.includes('--unique-names') });
}
