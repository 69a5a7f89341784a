// High availability against the real API server, with real `cinch control-plane` processes:
// two replicas started at the same moment agree on one root CA and one Lease holder; SIGKILL of the
// leader hands the Lease to the other within the lease duration while certificate signing never
// stops on the survivor; SIGTERM drains in-flight requests, exits 0 and releases the Lease at once.
// The Grafana dashboard in docs/ is checked here too: every metric it queries is one a live
// control plane exports.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { createNamespace, createServiceAccount, requestToken, testKubeConfig } from '../support/kube.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const CINCH = path.join(REPO, 'bin/cinch.js');
const LEASE = 'cinch-controllers';
const LEASE_DURATION_MS = 15_000;
const RETRY_MS = 2_000;
const TD = 'cluster.local';

const kc = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-ha-'));

let cp: { name: string; cleanup: () => Promise<void> }; // the control plane's namespace
let app: { name: string; cleanup: () => Promise<void> }; // workloads asking for certificates
let csrPem: string;
let rootPem: string;
const identities: { sa: string; token: string }[] = [];
const replicas: Replica[] = [];
// What a failed assertion could leave running (a signing loop's timer, a half-sent request's socket)
// would keep this file's process alive forever; `after` ends them all.
const leftovers = new Set<() => unknown>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------- control-plane processes ----------

interface Replica {
  name: string;
  child: ChildProcess;
  webhookPort: number;
  caPort: number;
  monitoringPort: number;
  logFile: string;
  /** Parsed JSON log lines, in order. */
  lines: Array<{ message?: string; timestamp?: string; [k: string]: unknown }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive: boolean;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function startReplica(name: string): Promise<Replica> {
  const [webhookPort, caPort, monitoringPort] = [await freePort(), await freePort(), await freePort()];
  const logFile = path.join(tmp, `${name}.log`);
  const log = fs.createWriteStream(logFile);
  const child = spawn(
    process.execPath,
    [CINCH, 'control-plane', '--namespace', cp.name, '--webhook-port', String(webhookPort), '--ca-port', String(caPort), '--monitoring-port', String(monitoringPort), '--listen-address', '127.0.0.1'],
    // POD_NAME is the Lease identity, as in the Deployment (downward API).
    { env: { ...process.env, POD_NAME: name, CINCH_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const replica: Replica = {
    name,
    child,
    webhookPort,
    caPort,
    monitoringPort,
    logFile,
    lines: [],
    alive: true,
    exited: new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        replica.alive = false;
        resolve({ code, signal });
      }),
    ),
  };
  let partial = '';
  const onData = (chunk: Buffer) => {
    log.write(chunk);
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      try {
        replica.lines.push(JSON.parse(line));
      } catch {
        replica.lines.push({ message: line });
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  child.once('exit', () => log.end());
  replicas.push(replica);
  return replica;
}

function logTail(r: Replica, n = 25): string {
  return `--- last log lines of ${r.name} (${r.logFile}) ---\n${r.lines.slice(-n).map((l) => JSON.stringify(l)).join('\n')}`;
}

function logged(r: Replica, message: string): number {
  return r.lines.filter((l) => l.message === message).length;
}

function getText(port: number, urlPath: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false, timeout: 2000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function waitReady(r: Replica, timeoutMs = 60_000): Promise<number> {
  const start = Date.now();
  let last = '';
  while (Date.now() - start < timeoutMs) {
    if (!r.alive) throw new Error(`${r.name} exited before it was ready\n${logTail(r)}`);
    try {
      const res = await getText(r.monitoringPort, '/readyz');
      if (res.status === 200) return Date.now() - start;
      last = res.text.trim();
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(200);
  }
  throw new Error(`${r.name} not ready within ${timeoutMs} ms (${last})\n${logTail(r)}`);
}

async function leaseHolder(): Promise<string | undefined> {
  try {
    const lease = await coordination.readNamespacedLease({ name: LEASE, namespace: cp.name });
    return lease.spec?.holderIdentity ?? undefined;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

/** Polls until `cond` holds; the time it took. */
async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 100): Promise<number> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
  return Date.now() - start;
}

/** Whether a new TCP connection to the port is refused (the server stopped accepting). */
function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

// ---------- the CA API ----------

interface Reply {
  status: number;
  json: any;
  text: string;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function post(port: number, urlPath: string, body: string, headers: Record<string, string>, timeoutMs = 5000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path: urlPath, method: 'POST', ca: rootPem, agent: false, timeout: timeoutMs, headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: parse(text), text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

const spiffeId = (sa: string) => `spiffe://${TD}/ns/${app.name}/sa/${sa}`;

/** Checks a 200 answer: a chain ending in the one root, whose leaf names exactly the caller. */
function checkIssued(reply: Reply, sa: string): void {
  assert.equal(reply.status, 200, reply.text);
  const chain: string[] = reply.json.certChain;
  assert.equal(new X509Certificate(chain[0]).subjectAltName, `URI:${spiffeId(sa)}`);
  assert.equal(chain.at(-1), rootPem);
  assert.deepEqual(reply.json.trustBundle, [rootPem]);
}

interface Outcome {
  replica: string;
  sa: string;
  sentAt: number;
  doneAt: number;
  ok: boolean;
  detail: string;
}

/**
 * Keeps requesting certificates: every `intervalMs`, one request to each target, identities taken
 * round-robin (so no identity comes near the per-replica token bucket of 5/s).
 */
function signingLoop(targets: Replica[], intervalMs = 200) {
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  let n = 0;
  const tick = () => {
    for (const target of targets) {
      const { sa, token } = identities[n++ % identities.length];
      const sentAt = Date.now();
      const p = post(target.caPort, '/v1/certificates', JSON.stringify({ csr: csrPem }), { authorization: `Bearer ${token}` })
        .then((reply) => {
          try {
            checkIssued(reply, sa);
            outcomes.push({ replica: target.name, sa, sentAt, doneAt: Date.now(), ok: true, detail: '200' });
          } catch (err) {
            outcomes.push({ replica: target.name, sa, sentAt, doneAt: Date.now(), ok: false, detail: `${reply.status}: ${(err as Error).message.slice(0, 300)}` });
          }
        })
        .catch((err: Error & { code?: string }) => {
          outcomes.push({ replica: target.name, sa, sentAt, doneAt: Date.now(), ok: false, detail: err.code ?? err.message });
        })
        .finally(() => pending.delete(p));
      pending.add(p);
    }
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  const stop = async () => {
    clearInterval(timer);
    leftovers.delete(stop);
    await Promise.all(pending);
    return outcomes;
  };
  leftovers.add(stop);
  return { outcomes, stop };
}

/** The longest time without a successful signature on `replica` between `from` and `to`. */
function longestGap(outcomes: Outcome[], replica: string, from: number, to: number): number {
  const times = [from, ...outcomes.filter((o) => o.replica === replica && o.ok).map((o) => o.doneAt), to].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i] - times[i - 1]);
  return gap;
}

/**
 * A POST whose headers and first half of the body are sent now, and the rest on `finish()`: the
 * server holds an in-flight request it cannot answer until then.
 */
function halfSentPost(port: number, urlPath: string, body: string, headers: Record<string, string>) {
  const bytes = Buffer.from(body);
  const half = Math.floor(bytes.length / 2);
  let req!: http.ClientRequest;
  const reply = new Promise<Reply>((resolve, reject) => {
    req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: urlPath,
        method: 'POST',
        ca: rootPem,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': String(bytes.length), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: parse(text), text }));
      },
    );
    req.on('error', reject);
  });
  const sent = new Promise<void>((resolve) => req.write(bytes.subarray(0, half), () => resolve()));
  const abandon = () => req.destroy();
  leftovers.add(abandon);
  void reply.finally(() => leftovers.delete(abandon)).catch(() => undefined);
  return { reply, sent, finish: () => req.end(bytes.subarray(half)) };
}

// ---------- setup ----------

function kubectl(...args: string[]): string {
  return execFileSync('kubectl', args, { encoding: 'utf8', env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
}

before(async () => {
  // Readiness waits for the mesh state, which needs the policy CRDs.
  kubectl('apply', '-f', path.join(REPO, 'webhook-config/crds/'));
  kubectl('wait', '--for=condition=established', '--timeout=30s', 'crd/authorizationpolicies.security.istio.io', 'crd/peerauthentications.security.istio.io');
  cp = await createNamespace(kc, 'ha-cp');
  app = await createNamespace(kc, 'ha-app', { 'cinch.dev/inject': 'enabled' });
  for (const sa of ['web', 'api', 'worker']) {
    await createServiceAccount(kc, app.name, sa);
    identities.push({ sa, token: await requestToken(kc, app.name, sa, 'cinch-ca', 3600) });
  }
  // One CSR without SANs serves every identity: the CA names the caller from its token.
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(tmp, 'k.pem'), '-subj', '/CN=ha', '-out', path.join(tmp, 'csr.pem')], {
    stdio: 'ignore',
  });
  csrPem = fs.readFileSync(path.join(tmp, 'csr.pem'), 'utf8');
});

after(async () => {
  await Promise.all([...leftovers].map((end) => end()));
  for (const r of replicas) if (r.alive) r.child.kill('SIGKILL');
  await Promise.all(replicas.map((r) => r.exited));
  // The leaders wrote the trust bundle into every namespace; take back the copies holding this run's root.
  if (rootPem) {
    const maps = await core.listConfigMapForAllNamespaces({ labelSelector: 'cinch.dev/trust-bundle=true' }).catch(() => ({ items: [] }));
    for (const cm of maps.items) {
      if (cm.data?.['root-cert.pem'] === rootPem) {
        await core.deleteNamespacedConfigMap({ name: cm.metadata!.name!, namespace: cm.metadata!.namespace! }).catch(() => undefined);
      }
    }
  }
  await app?.cleanup();
  await cp?.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------- tests ----------

test('two replicas started together both come ready, with one root CA and one Lease holder', async (t) => {
  const a = await startReplica('cinch-a');
  const b = await startReplica('cinch-b');
  const [readyA, readyB] = await Promise.all([waitReady(a), waitReady(b)]);
  t.diagnostic(`ready after ${readyA} ms and ${readyB} ms`);

  // One root: the Secret exists once, only one replica created it, and both serve its root.
  const secret = await core.readNamespacedSecret({ name: 'cinch-ca', namespace: cp.name });
  rootPem = Buffer.from(secret.data!['root-cert.pem'], 'base64').toString('utf8');
  assert.equal(new X509Certificate(rootPem).ca, true);
  assert.equal(logged(a, 'created a self-signed root CA') + logged(b, 'created a self-signed root CA'), 1, `exactly one replica created the root\n${logTail(a)}\n${logTail(b)}`);
  const creator = [a, b].find((r) => logged(r, 'created a self-signed root CA') === 1)!;
  const other = creator === a ? b : a;
  t.diagnostic(`${creator.name} created the root; ${other.name} ${logged(other, 'another replica created the CA first') ? 'lost the create race (409) and read it' : 'read it'}`);
  for (const r of [a, b]) {
    const bundle = await new Promise<string>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: r.caPort, path: '/v1/trust-bundle', ca: rootPem, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${res.statusCode}: ${text}`))));
      }).on('error', reject);
    });
    assert.equal(bundle, rootPem, `${r.name} serves the Secret's root as its trust bundle`);
  }
  const secrets = await core.listNamespacedSecret({ namespace: cp.name, fieldSelector: 'metadata.name=cinch-ca' });
  assert.equal(secrets.items.length, 1);
  assert.equal(secrets.items[0].metadata!.resourceVersion, secret.metadata!.resourceVersion, 'the Secret was written once');

  // One leader: the Lease names one of them, and only that one says it leads (wait a few retries).
  await waitFor('a Lease holder', async () => (await leaseHolder()) !== undefined, 10_000);
  await sleep(2 * RETRY_MS + 500);
  const holder = await leaseHolder();
  assert.ok(holder === a.name || holder === b.name, `holder ${holder}`);
  assert.deepEqual(
    [a, b].map((r) => logged(r, 'started leading')),
    [a, b].map((r) => (r.name === holder ? 1 : 0)),
    'only the holder started leading',
  );
  assert.equal(logged(a, 'stopped leading') + logged(b, 'stopped leading'), 0);
  t.diagnostic(`leader: ${holder}`);
  // Only the leader reports trust-bundle state: the dashboard's "Leading replica" panel and the
  // no-leader alert in docs/operations.md rely on it.
  for (const r of [a, b]) {
    const { text } = await getText(r.monitoringPort, '/metrics');
    assert.equal(/^cinch_trust_bundle_namespaces\{/m.test(text), r.name === holder, `${r.name} reports cinch_trust_bundle_namespaces only when it leads`);
  }

  // Both sign, with the same root.
  for (const r of [a, b]) checkIssued(await post(r.caPort, '/v1/certificates', JSON.stringify({ csr: csrPem }), { authorization: `Bearer ${identities[0].token}` }), identities[0].sa);
});

test('SIGKILL of the leader: the other takes the Lease within the lease duration, and signing on it never stops', async (t) => {
  const live = replicas.filter((r) => r.alive);
  assert.equal(live.length, 2, 'needs the two replicas of the first test');
  const holder = await leaseHolder();
  const leader = live.find((r) => r.name === holder)!;
  const survivor = live.find((r) => r.name !== holder)!;
  assert.ok(leader && survivor, `holder ${holder}`);
  const transitionsBefore = (await coordination.readNamespacedLease({ name: LEASE, namespace: cp.name })).spec?.leaseTransitions ?? 0;

  const loop = signingLoop([leader, survivor]);
  await sleep(2000);
  const killedAt = Date.now();
  leader.child.kill('SIGKILL');
  const { signal } = await leader.exited;
  assert.equal(signal, 'SIGKILL');

  let takeoverMs: number;
  try {
    takeoverMs = await waitFor('the survivor holds the Lease', async () => (await leaseHolder()) === survivor.name, 30_000);
  } catch (err) {
    await loop.stop();
    throw new Error(`${(err as Error).message}\n${logTail(survivor)}`, { cause: err });
  }
  await sleep(2000); // keep signing a little past the takeover
  const endedAt = Date.now();
  const outcomes = await loop.stop();

  const onSurvivor = outcomes.filter((o) => o.replica === survivor.name);
  const onLeaderBefore = outcomes.filter((o) => o.replica === leader.name && o.doneAt < killedAt);
  const onLeaderAfter = outcomes.filter((o) => o.replica === leader.name && o.doneAt >= killedAt);
  const failedOnSurvivor = onSurvivor.filter((o) => !o.ok);
  const gap = longestGap(outcomes, survivor.name, killedAt, endedAt);
  const summary =
    `takeover ${takeoverMs} ms after SIGKILL (lease ${LEASE_DURATION_MS} ms + retry ${RETRY_MS} ms); ` +
    `survivor ${survivor.name}: ${onSurvivor.length - failedOnSurvivor.length}/${onSurvivor.length} signed, longest gap ${gap} ms; ` +
    `killed ${leader.name}: ${onLeaderBefore.filter((o) => o.ok).length}/${onLeaderBefore.length} signed before the kill, ` +
    `${onLeaderAfter.filter((o) => !o.ok).length}/${onLeaderAfter.length} failed after it (${[...new Set(onLeaderAfter.filter((o) => !o.ok).map((o) => o.detail))].join(', ')})`;
  t.diagnostic(summary);
  console.log(`[ha-failover] ${summary}`);

  assert.deepEqual(failedOnSurvivor, [], 'every request to the surviving replica succeeds');
  assert.ok(onSurvivor.length >= (endedAt - killedAt) / 200 * 0.8, `the loop kept sending (${onSurvivor.length} requests)`);
  assert.ok(gap < 2500, `signing never paused on the survivor (longest gap ${gap} ms)`);
  assert.ok(onLeaderBefore.length > 0 && onLeaderBefore.every((o) => o.ok), 'the leader signed before it was killed');
  assert.ok(onLeaderAfter.some((o) => !o.ok), 'requests to the killed replica fail');
  // A crashed leader releases nothing: the Lease expires first, then a retry picks it up.
  assert.ok(takeoverMs <= 25_000, `takeover in ${takeoverMs} ms, within lease duration + retry with margin`);
  assert.ok(takeoverMs >= LEASE_DURATION_MS - RETRY_MS - 1000, `the Lease was honoured until it expired (${takeoverMs} ms)`);
  const lease = await coordination.readNamespacedLease({ name: LEASE, namespace: cp.name });
  assert.equal(lease.spec?.leaseTransitions, transitionsBefore + 1);
  assert.equal(logged(survivor, 'started leading'), 1);

  // The new leader runs the controllers: a deleted trust bundle comes back.
  await core.deleteNamespacedConfigMap({ name: 'cinch-ca-root-cert', namespace: app.name }).catch(() => undefined);
  const repairedMs = await waitFor(
    'the trust bundle repaired by the new leader',
    async () => {
      const cm = await core.readNamespacedConfigMap({ name: 'cinch-ca-root-cert', namespace: app.name }).catch(() => undefined);
      return cm?.data?.['root-cert.pem'] === rootPem;
    },
    10_000,
  );
  t.diagnostic(`trust bundle repaired by the new leader in ${repairedMs} ms`);
});

test('SIGTERM drains: an in-flight CSR and admission review complete, the process exits 0 and the other replica leads at once', async (t) => {
  const survivor = replicas.find((r) => r.alive);
  assert.ok(survivor, 'needs the survivor of the previous test');
  assert.equal(await leaseHolder(), survivor.name);
  const peer = await startReplica('cinch-c');
  await waitReady(peer);
  await sleep(RETRY_MS + 500);
  assert.equal(await leaseHolder(), survivor.name, 'a new replica does not take a held Lease');

  // Requests the draining replica has begun to receive but cannot answer until their bodies arrive.
  const { sa, token } = identities[1];
  const csrCall = halfSentPost(survivor.caPort, '/v1/certificates', JSON.stringify({ csr: csrPem }), { authorization: `Bearer ${token}` });
  const uid = 'd1c0ffee-0000-4000-8000-000000000001';
  const review = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: app.name,
      operation: 'CREATE',
      object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'drained', namespace: app.name }, spec: { containers: [{ name: 'app', image: 'example.invalid/app' }] } },
    },
  };
  const reviewCall = halfSentPost(survivor.webhookPort, '/inject', JSON.stringify(review), {});
  await Promise.all([csrCall.sent, reviewCall.sent]);
  await sleep(500); // the server has parsed the headers: these are requests, not idle connections

  const loop = signingLoop([survivor, peer]);
  await sleep(600);
  const termAt = Date.now();
  survivor.child.kill('SIGTERM');
  const handoverMs = await waitFor('the other replica holds the Lease', async () => (await leaseHolder()) === peer.name, 10_000);
  // Draining: new connections are refused while the half-sent requests are still open.
  await waitFor('the draining replica stops accepting', () => refusesConnections(survivor.caPort), 10_000, 50);
  await waitFor('the draining webhook stops accepting', () => refusesConnections(survivor.webhookPort), 10_000, 50);
  await sleep(300);
  assert.ok(survivor.alive, 'still running: it waits for the in-flight requests');
  const readyz = await getText(survivor.monitoringPort, '/readyz');
  assert.equal(readyz.status, 503, 'a draining replica is not ready, so the Service stops sending to it');
  assert.match(readyz.text, /shutting down/);

  csrCall.finish();
  reviewCall.finish();
  const [csrReply, reviewReply] = await Promise.all([csrCall.reply, reviewCall.reply]);
  checkIssued(csrReply, sa);
  assert.equal(reviewReply.status, 200, reviewReply.text);
  assert.equal(reviewReply.json.response.uid, uid);
  assert.equal(reviewReply.json.response.allowed, true);
  assert.equal(reviewReply.json.response.patchType, 'JSONPatch', 'the pod in a labelled namespace was injected');

  const exit = await Promise.race([survivor.exited, sleep(15_000).then(() => undefined)]);
  assert.deepEqual(exit, { code: 0, signal: null }, `exits 0 after draining\n${logTail(survivor)}`);
  const exitMs = Date.now() - termAt;
  await sleep(600);
  const outcomes = await loop.stop();
  const onPeer = outcomes.filter((o) => o.replica === peer.name);
  const onDrained = outcomes.filter((o) => o.replica === survivor.name && o.sentAt >= termAt);
  const summary =
    `handover ${handoverMs} ms after SIGTERM; exit 0 ${exitMs} ms after SIGTERM (in-flight requests held open on purpose); ` +
    `${peer.name}: ${onPeer.filter((o) => o.ok).length}/${onPeer.length} signed; ` +
    `new requests to the draining ${survivor.name}: ${onDrained.filter((o) => o.ok).length} signed, ${onDrained.filter((o) => !o.ok).length} refused`;
  t.diagnostic(summary);
  console.log(`[ha-failover] ${summary}`);

  assert.deepEqual(onPeer.filter((o) => !o.ok), [], 'every request to the remaining replica succeeds');
  assert.ok(handoverMs <= RETRY_MS + 1500, `a released Lease is taken within one retry (${handoverMs} ms)`);
  assert.equal(logged(survivor, 'stopped leading'), 1);
  assert.equal(logged(survivor, 'stopped'), 1);
  const shutdownFrom = survivor.lines.findIndex((l) => l.message === 'shutting down: draining in-flight requests');
  assert.ok(shutdownFrom >= 0);
  assert.deepEqual(
    survivor.lines.slice(shutdownFrom).filter((l) => l.level === 'warn' || l.level === 'error').map((l) => l.message),
    [],
    'a clean shutdown logs no warnings',
  );
});

// ---------- the Grafana dashboard ----------

/** Metric names a PromQL expression uses (the ones Cinch and prom-client export). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:cinch|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]);
}

function dashboardExprs(): string[] {
  const dashboard = JSON.parse(fs.readFileSync(path.join(REPO, 'docs/grafana-control-plane.json'), 'utf8'));
  const exprs: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if ((k === 'expr' || k === 'query') && typeof x === 'string') exprs.push(x);
        else if (k === 'definition' && typeof x === 'string') exprs.push(x);
        else walk(x);
      }
    }
  };
  walk(dashboard);
  return exprs;
}

test('the Grafana dashboard queries only metrics a running control plane exports', async (t) => {
  const used = [...new Set(dashboardExprs().flatMap(metricNames))].sort();
  assert.ok(used.length >= 20, `the dashboard uses ${used.length} metrics`);

  // Cinch's own metrics are defined by name in src/.
  const sources = (function read(dir: string): string {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .map((e) => (e.isDirectory() ? read(path.join(dir, e.name)) : e.name.endsWith('.ts') ? fs.readFileSync(path.join(dir, e.name), 'utf8') : ''))
      .join('\n');
  })(path.join(REPO, 'src'));
  const base = (name: string) => name.replace(/_(bucket|sum|count)$/, '');
  const missingInSource = used.filter((n) => n.startsWith('cinch_') && !sources.includes(`'${base(n)}'`) && !sources.includes(`'${n}'`));
  assert.deepEqual(missingInSource, [], 'every cinch_* metric in the dashboard is defined in src/');
  // Label names it groups or filters by: Prometheus' own (job, instance, le), the registry's default
  // label (component), prom-client's gc kind, or one a metric declares in src/.
  const declared = new Set(['job', 'instance', 'le', 'component', 'kind']);
  for (const m of sources.matchAll(/labelNames: \[([^\]]*)\]/g)) for (const l of m[1].matchAll(/'([a-z_]+)'/g)) declared.add(l[1]);
  for (const m of sources.matchAll(/const [A-Z_]*LABELS[^=]*= \[([^\]]*)\]/g)) for (const l of m[1].matchAll(/'([a-z_]+)'/g)) declared.add(l[1]);
  const labels = dashboardExprs().flatMap((e) => [
    ...[...e.matchAll(/\bby \(([^)]*)\)/g)].flatMap((m) => m[1].split(',').map((l) => l.trim())),
    ...[...e.matchAll(/([a-z_]+)\s*(?:=~|!=|!~|=)\s*"/g)].map((m) => m[1]),
  ]);
  assert.deepEqual([...new Set(labels)].filter((l) => l !== '' && !declared.has(l)), [], 'every label in the dashboard exists');

  // And a live control plane exposes every one of them (prom-client's process/nodejs ones included).
  let replica = replicas.find((r) => r.alive);
  if (!replica) {
    replica = await startReplica('cinch-d');
    await waitReady(replica);
  }
  const { text } = await getText(replica.monitoringPort, '/metrics');
  const families = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
  const exported = (name: string) => {
    if (families.has(name)) return true;
    const m = /^(.*)_(bucket|sum|count)$/.exec(name);
    return m !== null && ['histogram', 'summary'].includes(families.get(m[1]) ?? '');
  };
  assert.deepEqual(used.filter((n) => !exported(n)), [], 'every metric in the dashboard is on /metrics');
  assert.match(text, /^cinch_ca_root_expiry_timestamp_seconds\{component="control-plane"\} \d/m, 'the dashboard selects on the default label component');
  t.diagnostic(`dashboard metrics (${used.length}): ${used.join(', ')}`);
});
