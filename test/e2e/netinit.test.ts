// `cinch init` for real: a "pod" and a "peer" network namespace joined by a veth pair, the rules
// applied by the CLI inside the pod namespace, and real sockets showing where connections land
// and that originalDestination() recovers where they were going.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NetnsLab, REPO_ROOT, hasCommand, netnsUnsupportedReason } from './netns.ts';
import type { Netns, Spawned } from './netns.ts';

const POD4 = '10.77.0.1';
const PEER4 = '10.77.0.2';
const POD6 = 'fd77::1';
const PEER6 = 'fd77::2';
const PROXY_UID = 1337;

function skipReason(): string | undefined {
  const netns = netnsUnsupportedReason();
  if (netns) return netns;
  if (!hasCommand('iptables-nft-restore') && !hasCommand('iptables-legacy-restore') && !hasCommand('iptables-restore')) {
    return 'iptables is not installed: apt-get install -y iptables';
  }
  if (!hasCommand('setpriv')) return 'setpriv (util-linux) is not installed';
  return undefined;
}
const skip = skipReason();
if (skip) process.stderr.write(`netinit e2e skipped: ${skip}\n`);

const ORIGINAL_DST_MODULE = path.join(REPO_ROOT, 'src/proxy/original-dst.ts');

// Listens on every given port (dual stack); tells each client which listener took the connection
// and what originalDestination() says, as one JSON line.
const SERVER = `
import net from 'node:net';
const { originalDestination } = await import(${JSON.stringify(ORIGINAL_DST_MODULE)});
const ports = JSON.parse(process.argv[1]);
let pending = ports.length;
for (const port of ports) {
  net.createServer((socket) => {
    let reply;
    try {
      reply = { listener: port, original: originalDestination(socket) };
    } catch (err) {
      reply = { listener: port, error: err.code ?? String(err) };
    }
    reply.remote = socket.remoteAddress;
    socket.end(JSON.stringify(reply) + '\\n');
  }).listen({ port, host: '::' }, () => { if (--pending === 0) console.log('listening'); });
}
`;

// Connects (optionally from a given local address) and prints the server's line, or {connectError}.
const CLIENT = `
import net from 'node:net';
const [host, port, localAddress] = process.argv.slice(1);
const socket = net.connect({ host, port: Number(port), localAddress: localAddress || undefined, timeout: 5000 });
let data = '';
socket.setEncoding('utf8');
socket.on('data', (d) => (data += d));
socket.on('end', () => { process.stdout.write(data || '{"connectError":"EMPTY"}\\n'); });
socket.on('timeout', () => { process.stdout.write('{"connectError":"TIMEOUT"}\\n'); socket.destroy(); });
socket.on('error', (err) => { process.stdout.write(JSON.stringify({ connectError: err.code }) + '\\n'); });
`;

interface Reply {
  listener?: number;
  original?: { address: string; port: number; family: number };
  error?: string;
  remote?: string;
  connectError?: string;
}

async function connectFrom(ns: Netns, host: string, port: number, options: { uid?: number; localAddress?: string } = {}): Promise<Reply> {
  const res = await ns.nodeEval(CLIENT, [host, String(port), options.localAddress ?? ''], { uid: options.uid, timeoutMs: 15_000 });
  assert.equal(res.code, 0, `client failed: ${res.stderr}`);
  return JSON.parse(res.stdout.trim().split('\n').pop()!) as Reply;
}

async function init(ns: Netns, args: string[] = [], options: { setpriv?: string[] } = {}) {
  return ns.node(['bin/cinch.js', 'init', ...args], { setpriv: options.setpriv, timeoutMs: 30_000 });
}

function natSave(ns: Netns, tool: string): Promise<string> {
  return ns.check(tool, ['-t', 'nat']);
}

/** The nat table without the comment lines (which carry timestamps). */
function rulesOnly(save: string): string {
  return save.split('\n').filter((l) => !l.startsWith('#')).join('\n');
}

function countLines(save: string, line: string): number {
  return save.split('\n').filter((l) => l === line).length;
}

const INIT_FLAGS = ['--exclude-inbound-ports', '9443', '--exclude-outbound-ports', '5432', '--ipv6', 'auto'];

describe('cinch init in network namespaces', { skip }, () => {
  let lab: NetnsLab;
  let pod: Netns;
  let peer: Netns;
  const servers: Spawned[] = [];

  before(async () => {
    lab = new NetnsLab('netinit');
    pod = await lab.namespace('pod');
    peer = await lab.namespace('peer');
    await lab.connect(pod, [`${POD4}/24`, `${POD6}/64`], peer, [`${PEER4}/24`, `${PEER6}/64`]);
    // The pod: the proxy's two capture ports, its admin port, the app on 8080 and an excluded app port.
    servers.push(pod.spawnNodeEval(SERVER, [JSON.stringify([15006, 15001, 15020, 8080, 9443])]));
    servers.push(peer.spawnNodeEval(SERVER, [JSON.stringify([9000, 5432])]));
    await Promise.all(servers.map((s) => s.waitFor(/^listening$/m)));
  });

  after(async () => {
    if (!lab) return;
    await lab.cleanup();
    assert.deepEqual(lab.remaining(), [], 'every namespace of the lab is gone');
  });

  test('before init nothing is captured', async () => {
    const reply = await connectFrom(peer, POD4, 8080);
    assert.equal(reply.listener, 8080);
    assert.equal(reply.error, 'NO_NAT_ENTRY', 'a connection that was not redirected has no original destination');
  });

  test('--dry-run prints the rules (IPv6 too: the pod has a global IPv6 address) and changes nothing', async () => {
    const before4 = rulesOnly(await natSave(pod, 'iptables-nft-save'));
    const res = await init(pod, [...INIT_FLAGS, '--dry-run']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^-A CINCH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006$/m);
    assert.match(res.stdout, /^-A CINCH_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN$/m);
    assert.match(res.stdout, /# IPv6: ip6tables-restore/);
    assert.equal(rulesOnly(await natSave(pod, 'iptables-nft-save')), before4);
    assert.doesNotMatch(await natSave(pod, 'iptables-legacy-save'), /CINCH/);
    assert.doesNotMatch(await natSave(pod, 'ip6tables-nft-save'), /CINCH/);
  });

  test('invalid flags are refused with the flag named, before anything is touched', async () => {
    const res = await init(pod, ['--exclude-outbound-cidrs', '*']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--exclude-outbound-cidrs: "\*" is not allowed in an exclude list/);
    const bad = await init(pod, ['--inbound-ports', '80,http']);
    assert.match(bad.stderr, /--inbound-ports: invalid port "http"/);
  });

  test('without NET_ADMIN it fails and says so', async () => {
    const res = await init(pod, INIT_FLAGS, { setpriv: ['--inh-caps=-net_admin', '--bounding-set=-net_admin'] });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /NET_ADMIN capability is missing/);
    assert.doesNotMatch(await natSave(pod, 'iptables-nft-save'), /CINCH/);
  });

  test('init installs the rules with iptables-nft in an empty namespace', async () => {
    const res = await init(pod, INIT_FLAGS);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /"backend":"nft"/);
    const save = await natSave(pod, 'iptables-nft-save');
    assert.equal(countLines(save, '-A PREROUTING -p tcp -j CINCH_INBOUND'), 1);
    assert.equal(countLines(save, '-A OUTPUT -p tcp -j CINCH_OUTPUT'), 1);
    assert.match(await natSave(pod, 'ip6tables-nft-save'), /^-A OUTPUT -p tcp -j CINCH_OUTPUT$/m);
  });

  test('inbound: peer → pod:8080 lands on 15006 and the original destination is pod:8080', async () => {
    const reply = await connectFrom(peer, POD4, 8080);
    assert.equal(reply.listener, 15006);
    assert.deepEqual(reply.original, { address: POD4, port: 8080, family: 4 });
    assert.equal(reply.remote, `::ffff:${PEER4}`, 'REDIRECT keeps the client address');
  });

  test('outbound: pod → peer:9000 lands on 15001 and the original destination is peer:9000', async () => {
    const reply = await connectFrom(pod, PEER4, 9000);
    assert.equal(reply.listener, 15001);
    assert.deepEqual(reply.original, { address: PEER4, port: 9000, family: 4 });
  });

  test('the proxy uid (1337) is never captured outbound', async () => {
    const reply = await connectFrom(pod, PEER4, 9000, { uid: PROXY_UID });
    assert.equal(reply.listener, 9000);
    assert.equal(reply.error, 'NO_NAT_ENTRY');
  });

  test('excluded ports are not captured: outbound 5432, inbound 9443 and the proxy admin port 15020', async () => {
    assert.equal((await connectFrom(pod, PEER4, 5432)).listener, 5432);
    assert.equal((await connectFrom(peer, POD4, 9443)).listener, 9443);
    assert.equal((await connectFrom(peer, POD4, 15020)).listener, 15020);
  });

  test('loopback: the app reaching its own pod IP stays local; the proxy reaching it goes through inbound, unless from 127.0.0.6', async () => {
    const app = await connectFrom(pod, POD4, 8080);
    assert.equal(app.listener, 8080, 'app → own pod IP is not captured');
    const proxy = await connectFrom(pod, POD4, 8080, { uid: PROXY_UID });
    assert.equal(proxy.listener, 15006, 'proxy → own pod IP is treated as inbound');
    assert.deepEqual(proxy.original, { address: POD4, port: 8080, family: 4 });
    const passthrough = await connectFrom(pod, POD4, 8080, { uid: PROXY_UID, localAddress: '127.0.0.6' });
    assert.equal(passthrough.listener, 8080, "the proxy's inbound passthrough from 127.0.0.6 reaches the app");
    assert.equal((await connectFrom(pod, '127.0.0.1', 8080)).listener, 8080, '127.0.0.1 is never captured');
    // Conntrack now tracks every connection; one that no rule redirected must still read as "not redirected".
    const direct = await connectFrom(pod, '127.0.0.1', 15006);
    assert.equal(direct.listener, 15006);
    assert.equal(direct.error, 'NO_NAT_ENTRY', 'a direct connection to the capture port has no original destination');
    assert.equal((await connectFrom(peer, POD4, 9443)).error, 'NO_NAT_ENTRY', 'nor has one to an excluded port');
  });

  test('IPv6: inbound and outbound are captured and the original destination is an IPv6 address', async () => {
    const inbound = await connectFrom(peer, POD6, 8080);
    assert.equal(inbound.listener, 15006);
    assert.deepEqual(inbound.original, { address: POD6, port: 8080, family: 6 });
    const outbound = await connectFrom(pod, PEER6, 9000);
    assert.equal(outbound.listener, 15001);
    assert.deepEqual(outbound.original, { address: PEER6, port: 9000, family: 6 });
    assert.equal((await connectFrom(pod, PEER6, 9000, { uid: PROXY_UID })).listener, 9000);
  });

  test('running init again changes nothing: one jump per hook, the same rules', async () => {
    const before4 = rulesOnly(await natSave(pod, 'iptables-nft-save'));
    const before6 = rulesOnly(await natSave(pod, 'ip6tables-nft-save'));
    for (let i = 0; i < 2; i++) {
      const res = await init(pod, INIT_FLAGS);
      assert.equal(res.code, 0, res.stderr);
    }
    const after4 = rulesOnly(await natSave(pod, 'iptables-nft-save'));
    assert.equal(after4, before4);
    assert.equal(rulesOnly(await natSave(pod, 'ip6tables-nft-save')), before6);
    assert.equal(countLines(after4, '-A PREROUTING -p tcp -j CINCH_INBOUND'), 1);
    assert.equal(countLines(after4, '-A OUTPUT -p tcp -j CINCH_OUTPUT'), 1);
    assert.equal((await connectFrom(peer, POD4, 8080)).listener, 15006, 'still capturing');
  });

  test('re-running with other options replaces the rules atomically (no inbound capture now)', async () => {
    const res = await init(pod, ['--inbound-ports', '', '--ipv6', 'false']);
    assert.equal(res.code, 0, res.stderr);
    const save = await natSave(pod, 'iptables-nft-save');
    assert.equal(countLines(save, '-A PREROUTING -p tcp -j CINCH_INBOUND'), 0);
    assert.equal(countLines(save, '-A OUTPUT -p tcp -j CINCH_OUTPUT'), 1);
    assert.equal((await connectFrom(peer, POD4, 8080)).listener, 8080);
    assert.equal((await connectFrom(pod, PEER4, 9000)).listener, 15001);
    // Back to the full set for anything that follows.
    assert.equal((await init(pod, INIT_FLAGS)).code, 0);
  });

  test('a namespace that already uses legacy iptables gets legacy rules', async () => {
    const legacyPod = await lab.namespace('legacy');
    await legacyPod.check('iptables-legacy', ['-t', 'nat', '-A', 'POSTROUTING', '-p', 'udp', '-j', 'RETURN']);
    const res = await init(legacyPod, ['--ipv6', 'false']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /"backend":"legacy"/);
    const legacy = await natSave(legacyPod, 'iptables-legacy-save');
    assert.equal(countLines(legacy, '-A OUTPUT -p tcp -j CINCH_OUTPUT'), 1);
    assert.match(legacy, /^-A POSTROUTING -p udp -j RETURN$/m, "others' rules are kept");
    assert.doesNotMatch(await natSave(legacyPod, 'iptables-nft-save'), /CINCH/);
  });
});

describe('netns helper', { skip }, () => {
  test('a bridged LAN joins several namespaces on one subnet', async () => {
    const lab = new NetnsLab('lan');
    try {
      const [a, b, c] = [await lab.namespace('a'), await lab.namespace('b'), await lab.namespace('c')];
      await lab.lan('sw', [
        { ns: a, addresses: ['10.79.0.1/24', 'fd79::1/64'] },
        { ns: b, addresses: ['10.79.0.2/24'] },
        { ns: c, addresses: ['10.79.0.3/24', 'fd79::3/64'] },
      ]);
      const server = a.spawnNodeEval(SERVER, ['[7000]']);
      await server.waitFor(/^listening$/m);
      assert.equal((await connectFrom(b, '10.79.0.1', 7000)).remote, '::ffff:10.79.0.2');
      assert.equal((await connectFrom(c, 'fd79::1', 7000)).remote, 'fd79::3');
    } finally {
      await lab.cleanup();
    }
    assert.deepEqual(lab.remaining(), []);
  });

  test('cleanup removes namespaces and stops processes even after a failure', async () => {
    const lab = new NetnsLab('cleanup');
    try {
      const a = await lab.namespace('a');
      const b = await lab.namespace('b');
      await lab.connect(a, ['10.78.0.1/30'], b, ['10.78.0.2/30']);
      const sleeper = a.spawn('sleep', ['300']);
      // A process started with plain `ip netns exec` (not tracked by the lab) is killed too.
      await a.check('sh', ['-c', 'sleep 300 >/dev/null 2>&1 &']);
      assert.match(await a.ip('addr', 'show', 'eth0'), /10\.78\.0\.1\/30/);
      await assert.rejects(a.check('false'), /\[a\] false failed \(1\)/);
      assert.equal(lab.remaining().length, 2);
      await lab.cleanup();
      assert.deepEqual(lab.remaining(), []);
      assert.equal((await sleeper.exited).code, null, 'the tracked process was stopped by a signal');
    } finally {
      await lab.cleanup();
    }
  });
});
