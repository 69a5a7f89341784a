// The pure parts of the data path: first-byte sniffing, ClientHello ALPN/SNI, the peer's SPIFFE ID
// from DER, and path normalization.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { before, describe, it } from 'node:test';
import { parseClientHello, peek, peerIdentity, sniffPlaintext, startsWithTls, uriSans } from '../../../src/proxy/detect.ts';
import { normalizeTarget } from '../../../src/proxy/http-authz.ts';
import { createTestCa, issueLeaf } from './certs.ts';
import { CLIENT_ID, collect, listen } from './harness.ts';

/** A real ClientHello, as Node's TLS client sends it. */
async function clientHello(options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  const port = await listen(server);
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (s: net.Socket) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
      });
    }),
  );
  const client = tls.connect({ port, host: '127.0.0.1', ...options });
  client.on('error', () => {});
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

describe('first bytes', () => {
  it('tells a TLS handshake record from anything else', () => {
    assert.equal(startsWithTls(Buffer.from([0x16, 0x03, 0x01])), true);
    assert.equal(startsWithTls(Buffer.from([0x16])), undefined);
    assert.equal(startsWithTls(Buffer.alloc(0)), undefined);
    assert.equal(startsWithTls(Buffer.from('GET /')), false);
    assert.equal(startsWithTls(Buffer.from([0x16, 0x00])), false);
  });

  it('recognises HTTP/1.x request lines, the HTTP/2 preface and everything else', () => {
    const cases: [string, boolean, string | undefined][] = [
      ['GET / HTTP/1.1\r\n', false, 'http1'],
      ['POST /a?b=c HTTP/1.0\r\nhost: x\r\n', false, 'http1'],
      ['OPTIONS * HTTP/1.1\r\n', false, 'http1'],
      ['GET / HTTP/1.1', false, undefined],
      ['GET / HTTP/1.1', true, 'tcp'],
      ['GET', false, undefined],
      ['GET / HTTP/2.0\r\n', false, 'tcp'],
      ['get / HTTP/1.1\r\n', false, 'tcp'],
      ['PING\r\n', false, 'tcp'],
      ['SSH-2.0-OpenSSH_9.6\r\n', false, 'tcp'],
      ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', false, 'h2'],
      ['PRI * HTTP/2.0\r\n', false, undefined],
      ['PRI * HTTP/2.0\r\n', true, 'tcp'],
      ['\x00\x01\x02', false, 'tcp'],
      ['', false, undefined],
      ['', true, 'tcp'],
    ];
    for (const [text, final, expected] of cases) assert.equal(sniffPlaintext(Buffer.from(text, 'latin1'), final), expected, JSON.stringify(text));
  });

  it('gives up on an endless request line', () => {
    assert.equal(sniffPlaintext(Buffer.from('GET /' + 'a'.repeat(9000)), false), 'tcp');
  });
});

describe('ClientHello', () => {
  it('reads ALPN and SNI from a real ClientHello', async () => {
    const hello = await clientHello({ ALPNProtocols: ['cinch-http/1.1', 'h2'], servername: 'Shop.Example' });
    assert.deepEqual(parseClientHello(hello), { alpn: ['cinch-http/1.1', 'h2'], sni: 'shop.example' });
  });

  it('reads a ClientHello without ALPN or SNI', async () => {
    const hello = await clientHello({});
    assert.deepEqual(parseClientHello(hello), { alpn: [] });
  });

  it('asks for more bytes while the record is incomplete, and refuses garbage', async () => {
    const hello = await clientHello({ ALPNProtocols: ['cinch-tcp'] });
    for (const n of [1, 4, 5, 40, hello.length - 1]) assert.equal(parseClientHello(hello.subarray(0, n)), 'more');
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')), 'invalid');
    const broken = Buffer.from(hello);
    broken[5] = 0x02; // ServerHello, not ClientHello
    assert.equal(parseClientHello(broken), 'invalid');
  });

  it('reassembles a ClientHello split over two TLS records', async () => {
    const hello = await clientHello({ ALPNProtocols: ['cinch-h2'], servername: 'a.b' });
    const body = hello.subarray(5);
    const cut = 30;
    const record = (payload: Buffer): Buffer => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, payload.length >> 8, payload.length & 0xff]), payload]);
    const split = Buffer.concat([record(body.subarray(0, cut)), record(body.subarray(cut))]);
    assert.equal(parseClientHello(split.subarray(0, 5 + cut + 3)), 'more');
    assert.deepEqual(parseClientHello(split), { alpn: ['cinch-h2'], sni: 'a.b' });
  });
});

describe('peer identity from DER', () => {
  let ca: Awaited<ReturnType<typeof createTestCa>>;
  before(async () => {
    ca = await createTestCa();
  });

  it('reads the one SPIFFE ID of a workload certificate', async () => {
    const leaf = await issueLeaf(ca, CLIENT_ID);
    assert.deepEqual(peerIdentity(leaf.cert.rawData ? Buffer.from(leaf.cert.rawData) : undefined, 'cluster.local'), {
      ok: true,
      spiffeId: CLIENT_ID,
      principal: 'cluster.local/ns/bar/sa/sleep',
      trustDomain: 'cluster.local',
    });
  });

  it('ignores DNS names next to the URI', async () => {
    const leaf = await issueLeaf(ca, { uris: [CLIENT_ID], dns: ['sleep.bar.svc'] });
    assert.deepEqual(uriSans(Buffer.from(leaf.cert.rawData)), [CLIENT_ID]);
  });

  it('refuses no URI, two URIs, a non-SPIFFE URI and another trust domain', async () => {
    const cases: [Parameters<typeof issueLeaf>[1], RegExp][] = [
      [{ dns: ['a.example'] }, /0 URI SANs/],
      [{ uris: [CLIENT_ID, 'spiffe://cluster.local/ns/a/sa/b'] }, /2 URI SANs/],
      [{ uris: ['https://cluster.local/ns/a/sa/b'] }, /not a SPIFFE ID/],
      [{ uris: ['spiffe://evil.example/ns/a/sa/b'] }, /not in trust domain cluster\.local/],
    ];
    for (const [spec, reason] of cases) {
      const leaf = await issueLeaf(ca, spec);
      const result = peerIdentity(Buffer.from(leaf.cert.rawData), 'cluster.local');
      assert.equal(result.ok, false);
      if (!result.ok) assert.match(result.reason, reason);
    }
  });

  it('reads a URI with characters Node quotes in its display string, exactly', async () => {
    const odd = 'spiffe://cluster.local/ns/a/sa/b,URI:spiffe://cluster.local/ns/kube-system/sa/admin';
    const leaf = await issueLeaf(ca, { uris: [odd] });
    assert.deepEqual(uriSans(Buffer.from(leaf.cert.rawData)), [odd]);
    assert.equal(peerIdentity(Buffer.from(leaf.cert.rawData)).ok, false);
  });

  it('refuses truncated or absent certificates', async () => {
    const leaf = await issueLeaf(ca, CLIENT_ID);
    const der = Buffer.from(leaf.cert.rawData);
    assert.equal(peerIdentity(der.subarray(0, der.length - 10)).ok, false);
    assert.deepEqual(peerIdentity(undefined), { ok: false, reason: 'no peer certificate' });
    assert.equal(peerIdentity(Buffer.alloc(0)).ok, false);
  });
});

describe('path normalization', () => {
  it('removes dot segments, decodes unreserved characters and splits the query', () => {
    const cases: [string, string, string][] = [
      ['/headers', '/headers', ''],
      ['/a?b=c', '/a', '?b=c'],
      ['/a/../admin', '/admin', ''],
      ['/./admin/', '/admin/', ''],
      ['/a/b/..', '/a/', ''],
      ['/../../x', '/x', ''],
      ['/%61dmin', '/admin', ''],
      ['/a%2fb', '/a%2Fb', ''],
      ['/a%2e%2e/b', '/a../b', ''],
      ['/%2e%2e/admin', '/admin', ''],
      ['/p#frag', '/p', ''],
      ['http://host:80/x/../y?z', '/y', '?z'],
      ['*', '*', ''],
    ];
    for (const [target, path, query] of cases) assert.deepEqual(normalizeTarget(target), { path, query }, target);
  });
});

describe('peek', () => {
  it('puts the bytes back so the next reader sees them all', async () => {
    const server = net.createServer();
    const port = await listen(server);
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const client = net.connect(port, '127.0.0.1');
    client.write('GET /x HT');
    const socket = await accepted;
    setTimeout(() => client.write('TP/1.1\r\n\r\n'), 20);
    const peeked = await new Promise<{ verdict: string; ended: boolean }>((resolve, reject) =>
      peek(socket, sniffPlaintext, 1000, 8192, (err, r) => (err || !r ? reject(err ?? new Error('none')) : resolve(r))),
    );
    assert.equal(peeked.verdict, 'http1');
    assert.equal(peeked.ended, false);
    client.end();
    const rest = collect(socket);
    socket.resume(); // peek leaves the socket paused for whoever takes it next
    assert.equal((await rest).data.toString(), 'GET /x HTTP/1.1\r\n\r\n');
    server.close();
  });

  it('hands the bytes over when the peer half-closed during the peek', async () => {
    const server = net.createServer({ allowHalfOpen: true });
    const port = await listen(server);
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    net.connect(port, '127.0.0.1').end('GET /');
    const socket = await accepted;
    const peeked = await new Promise<{ verdict: string; ended: boolean; head: Buffer }>((resolve, reject) =>
      peek(socket, sniffPlaintext, 1000, 8192, (err, r) => (err || !r ? reject(err ?? new Error('none')) : resolve(r))),
    );
    assert.deepEqual([peeked.verdict, peeked.ended, peeked.head.toString()], ['tcp', true, 'GET /']);
    socket.destroy();
    server.close();
  });
});
