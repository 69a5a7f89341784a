// The inbound HTTP/1.1 fast path (src/proxy/http1.ts): what it parses itself, what it leaves to
// node:http, and byte-level behaviour through a real InboundProxy: pipelining, bodies both ways,
// chunked responses, responses without a body, denials mid-connection, hand-over to node:http.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ChunkedScanner, parseConnection, parseRequestHead, parseResponseHead } from '../../../src/proxy/http1.ts';
import { InboundProxy } from '../../../src/proxy/inbound.ts';
import { MutableTlsMaterial } from '../../../src/proxy/types.ts';
import type { AuthzDecision, AuthzRequest, InboundConfig } from '../../../src/proxy/types.ts';
import { collect, listen, closeServer, logSink } from './harness.ts';

const head = (text: string) => parseRequestHead(Buffer.from(text, 'latin1'));

/** Writes `bytes` to the proxy on `port` and returns all it answers, up to its close. */
async function exchange(port: number, bytes: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  const result = collect(socket);
  socket.write(bytes);
  return (await result).data.toString('latin1');
}

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));

/** An InboundProxy on a free local port in front of the app on `appPort`, with `authorize` as its policy. */
async function startProxy(appPort: number, authorize: (r: AuthzRequest) => AuthzDecision): Promise<{ proxy: InboundProxy; port: number }> {
  const config = (): InboundConfig => ({
    trustDomain: 'cluster.local',
    workload: { name: 'httpbin', namespace: 'foo', labels: {} },
    modeForPort: () => 'PERMISSIVE',
    authorize,
  });
  const proxy = new InboundProxy({ tls: new MutableTlsMaterial(), config, originalDestination: () => ({ address: '127.0.0.1', port: appPort }), logger: logSink().logger, detectionTimeoutMs: 200 });
  const { port } = await proxy.listen(0, '127.0.0.1');
  return { proxy, port };
}

describe('parseRequestHead', () => {
  it('reads a plain request and leaves hop-by-hop headers and any XFCC out of what it forwards', () => {
    const h = head('GET /a/b?x=1 HTTP/1.1\r\nHost: httpbin.foo\r\nX-Token:  a b \r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\nx-forwarded-client-cert: URI=evil\r\nContent-Length: 3\r\n\r\nabc');
    assert.ok(typeof h === 'object');
    assert.equal(h.method, 'GET');
    assert.equal(h.target, '/a/b?x=1');
    assert.equal(h.headers.host, 'httpbin.foo');
    assert.equal(h.headers['x-token'], 'a b');
    assert.equal(h.contentLength, 3);
    assert.equal(h.close, false);
    assert.deepEqual(h.forward, ['Host', 'httpbin.foo', 'X-Token', 'a b', 'Content-Length', '3']);
    assert.equal(h.length, Buffer.byteLength('GET /a/b?x=1 HTTP/1.1\r\nHost: httpbin.foo\r\nX-Token:  a b \r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\nx-forwarded-client-cert: URI=evil\r\nContent-Length: 3\r\n\r\n'));
    const c = head('GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    assert.ok(typeof c === 'object' && c.close);
  });

  it('waits for the rest of an incomplete head', () => {
    assert.equal(head('GET / HTTP/1.1\r\nhost: a\r\n'), 'more');
    assert.equal(head('GET / HT'), 'more');
  });

  it('leaves everything unusual to node:http', () => {
    for (const text of [
      'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n',
      'POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n',
      'POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\n',
      'POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n',
      'GET / HTTP/1.1\r\nhost: a\r\nHost: b\r\n\r\n',
      'GET / HTTP/1.0\r\n\r\n',
      'GET / HTTP/1.1\r\nconnection: close\r\n\r\n', // no Host: node:http answers 400
      'GET http://a/ HTTP/1.1\r\n\r\n',
      'CONNECT a:443 HTTP/1.1\r\n\r\n',
      'OPTIONS * HTTP/1.1\r\n\r\n',
      'get / HTTP/1.1\r\n\r\n',
      'GET /a b HTTP/1.1\r\n\r\n',
      'GET /"<> HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.1\r\nx-a: 1\r\n folded\r\n\r\n',
      'GET / HTTP/1.1\nhost: a\n\n\r\n\r\n',
      'GET / HTTP/1.1\r\nhost : a\r\n\r\n',
      'GET / HTTP/1.1\r\nx-a: caf\xe9\r\n\r\n',
      'GET / HTTP/1.1\r\nx-a: a\x00b\r\n\r\n',
      'GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n',
      'GET /ws HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n',
      'GET /ws HTTP/1.1\r\nupgrade: websocket\r\n\r\n',
      'GET / HTTP/1.1\r\n__proto__: x\r\n\r\n',
      `GET / HTTP/1.1\r\nx-big: ${'a'.repeat(17 * 1024)}\r\n\r\n`,
    ]) {
      assert.equal(head(text), 'other', JSON.stringify(text.slice(0, 60)));
    }
  });
});

describe('parseConnection', () => {
  it('reads close, keep-alive and upgrade in any case and spacing, and names other headers but never those that frame the bytes', () => {
    const c = parseConnection(' Close ,KEEP-ALIVE,, X-Hop , upgrade, Content-Length, transfer-encoding, HOST');
    assert.equal(c.close, true);
    assert.equal(c.keepAlive, true);
    assert.equal(c.upgrade, true);
    assert.deepEqual([...(c.named ?? [])], ['x-hop']);
    assert.deepEqual(parseConnection(undefined), { close: false, keepAlive: false, upgrade: false, named: undefined });
    assert.deepEqual(parseConnection(''), { close: false, keepAlive: false, upgrade: false, named: undefined });
  });
});

describe('parseResponseHead', () => {
  const res = (text: string, method = 'GET') => parseResponseHead(Buffer.from(text, 'latin1'), method);
  it('finds the framing and drops hop-by-hop headers', () => {
    const r = res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello');
    assert.ok(!(r instanceof Error) && r !== 'more');
    assert.equal(r.framing, 'length');
    assert.equal(r.contentLength, 5);
    assert.equal(r.text, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n');
    assert.equal(r.appCloses, false);
    const chunked = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
    assert.ok(!(chunked instanceof Error) && chunked !== 'more' && chunked.framing === 'chunked');
    const closed = res('HTTP/1.1 200 OK\r\n\r\n');
    assert.ok(!(closed instanceof Error) && closed !== 'more' && closed.framing === 'close' && closed.appCloses);
    for (const [text, method] of [
      ['HTTP/1.1 204 No Content\r\n\r\n', 'GET'],
      ['HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n', 'GET'],
      ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n', 'HEAD'],
      ['HTTP/1.1 100 Continue\r\n\r\n', 'POST'],
    ]) {
      const r2 = res(text, method);
      assert.ok(!(r2 instanceof Error) && r2 !== 'more' && r2.framing === 'none', text);
    }
  });
  it('refuses what is not an HTTP/1.x response or has conflicting lengths', () => {
    assert.ok(res('SSH-2.0-OpenSSH\r\n\r\n') instanceof Error);
    assert.ok(res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n') instanceof Error);
    assert.equal(res('HTTP/1.1 200 OK\r\n'), 'more');
  });
});

describe('ChunkedScanner', () => {
  it('finds the end of a chunked body split anywhere, trailers included', () => {
    const body = Buffer.from('5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT', 'latin1');
    for (let split = 1; split < body.length - 4; split++) {
      const s = new ChunkedScanner();
      const a = s.scan(body.subarray(0, split), 0);
      assert.equal(a.done, false, `split ${split}`);
      assert.equal(a.used, split);
      const b = s.scan(body.subarray(split), 0);
      assert.equal(b.done, true, `split ${split}`);
      assert.equal(split + b.used, body.length - 4);
    }
  });
  it('throws on bad framing', () => {
    assert.throws(() => new ChunkedScanner().scan(Buffer.from('zz\r\n'), 0));
    assert.throws(() => new ChunkedScanner().scan(Buffer.from('3\r\nabcX'), 0));
    // Trailers end with CRLF, as the client's parser expects: a bare LF or CR would end the body elsewhere for it.
    for (const bad of ['0\r\n\n\r\n', '0\r\nx: a\n\r\n', '0\r\nx: a\rb\r\n\r\n', '0\r\nx: a\x00\r\n\r\n']) {
      assert.throws(() => new ChunkedScanner().scan(Buffer.from(bad, 'latin1'), 0), JSON.stringify(bad));
    }
  });
});

describe('inbound HTTP/1.1 fast path, byte by byte', () => {
  let app: http.Server;
  let appPort = 0;
  let proxy: InboundProxy;
  let port = 0;
  const seen: string[] = [];
  const deny = (r: AuthzRequest): AuthzDecision =>
    r.request?.protocol === 'http' && r.request.path.startsWith('/admin') ? { allow: false, policy: 'foo/deny', reason: 'deny' } : { allow: true, policy: null, reason: 'allow' };

  before(async () => {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      let body = '';
      req.setEncoding('latin1');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} ${body.length}`);
        if (req.url === '/chunked') {
          res.write('part one,');
          setTimeout(() => res.end('part two'), 20);
        } else if (req.url === '/empty') {
          res.writeHead(204).end();
        } else if (req.url === '/conn-named') {
          // Connection names a framing header and a hop-by-hop one: the first must stay (it frames these bytes), the second go.
          req.socket.end('HTTP/1.1 200 OK\r\nconnection: content-length, x-hop, close\r\ncontent-length: 5\r\nx-hop: 1\r\n\r\nhello');
        } else if (req.url === '/raw-close') {
          // An app that answers without a length and closes (HTTP/1.0 style).
          req.socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close');
        } else {
          res.setHeader('x-echo-xfcc', String(req.headers['x-forwarded-client-cert'] ?? 'none'));
          // CGI and WSGI servers turn '-' and '_' into the same variable name: this header would pass for XFCC there.
          res.setHeader('x-echo-underscored', String(req.headers['x_forwarded_client_cert'] ?? req.headers['x-forwarded_client-cert'] ?? 'none'));
          res.end(`${req.method} ${req.url} ${body.length}`);
        }
      });
    };
    app = http.createServer(handler);
    // An app that ignores Expect: 100-continue (never sends a 100 itself), as many do.
    app.on('checkContinue', handler);
    appPort = await listen(app);
    ({ proxy, port } = await startProxy(appPort, deny));
  });
  after(async () => {
    await proxy.close();
    app.closeAllConnections();
    await closeServer(app);
  });

  it('answers pipelined requests in order, a denial in the middle included, and the app sees only the allowed ones', async () => {
    seen.length = 0;
    const text = await exchange(
      port,
      'GET /a HTTP/1.1\r\nhost: h\r\n\r\n' + 'POST /admin/x HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\n\r\nnope' + 'POST /c HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nhello' + 'GET /d HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n',
    );
    assert.deepEqual(statuses(text), [200, 403, 200, 200]);
    assert.match(text, /GET \/a 0[\s\S]*RBAC: access denied[\s\S]*POST \/c 5[\s\S]*GET \/d 0$/);
    assert.deepEqual(seen, ['GET /a 0', 'POST /c 5', 'GET /d 0']);
  });

  it('relays a chunked response and keeps the connection for the next request', async () => {
    const text = await exchange(port, 'GET /chunked HTTP/1.1\r\nhost: h\r\n\r\n' + 'GET /after HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n');
    assert.deepEqual(statuses(text), [200, 200]);
    assert.match(text, /transfer-encoding: chunked\r\n[\s\S]*part one,[\s\S]*part two\r\n0\r\n\r\nHTTP\/1\.1 200[\s\S]*GET \/after 0$/i);
  });

  it('knows that HEAD, 204 and 304 answers have no body', async () => {
    const text = await exchange(port, 'HEAD /h HTTP/1.1\r\nhost: h\r\n\r\n' + 'GET /empty HTTP/1.1\r\nhost: h\r\n\r\n' + 'GET /last HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n');
    assert.deepEqual(statuses(text), [200, 204, 200]);
    assert.match(text, /GET \/last 0$/);
  });

  it('passes a response without a length on until the app closes, then closes the client', async () => {
    const text = await exchange(port, 'GET /raw-close HTTP/1.1\r\nhost: h\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*connection: close\r\n\r\nuntil close$/);
  });

  it('hands a chunked upload to node:http, after fast-path requests on the same connection', async () => {
    seen.length = 0;
    const text = await exchange(port, 'GET /first HTTP/1.1\r\nhost: h\r\n\r\n' + 'POST /up HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
    assert.deepEqual(statuses(text), [200, 200]);
    assert.deepEqual(seen, ['GET /first 0', 'POST /up 5']);
  });

  it('keeps Content-Length when the app\'s Connection header names it, on both paths, and drops the hop-by-hop header it names', async () => {
    const fast = await exchange(port, 'GET /conn-named HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n');
    const viaNode = await exchange(port, 'POST /conn-named HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n');
    for (const text of [fast, viaNode]) {
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(text, /\r\ncontent-length: 5\r\n/i);
      assert.doesNotMatch(text, /x-hop|transfer-encoding/i);
      assert.match(text, /\r\n\r\nhello$/);
    }
  });

  it('lets node:http refuse what it refuses (smuggling attempts never reach the app)', async () => {
    seen.length = 0;
    const text = await exchange(port, 'POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/secret HTTP/1.1\r\nhost: h\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 400/);
    assert.ok(!seen.some((s) => s.includes('/admin')));
  });

  it('answers Expect: 100-continue only after authorization: a denied client is told 403 before it sends its body', async () => {
    seen.length = 0;
    const socket = net.connect(port, '127.0.0.1');
    const result = collect(socket);
    socket.write('POST /admin/upload HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n');
    const text = (await result).data.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 403 /);
    assert.doesNotMatch(text, /100 Continue/);
    assert.deepEqual(seen, []);
  });

  it('answers 100 Continue itself once a request is allowed, even when the app never sends one, and keeps the connection', async () => {
    seen.length = 0;
    const socket = net.connect(port, '127.0.0.1');
    const result = collect(socket);
    const firstData = () => new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
    let next = firstData();
    socket.write('POST /upload HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n');
    assert.match(await next, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
    next = firstData();
    socket.write('hello');
    const answer = await next;
    assert.match(answer, /^HTTP\/1\.1 200 [\s\S]*POST \/upload 5$/);
    assert.doesNotMatch(answer, /connection: close/i, 'the connection stays open for the next request');
    socket.write('GET /again HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n');
    const text = (await result).data.toString('latin1');
    assert.deepEqual(statuses(text), [100, 200, 200]);
    assert.deepEqual(seen, ['POST /upload 5', 'GET /again 0']);
  });

  it('drops XFCC spelt with underscores, which CGI/WSGI apps would read as the real one (fast path and node:http)', async () => {
    const fast = await exchange(port, 'GET /x HTTP/1.1\r\nhost: h\r\nx_forwarded_client_cert: URI=spiffe://cluster.local/ns/a/sa/admin\r\nconnection: close\r\n\r\n');
    assert.match(fast, /x-echo-underscored: none/i);
    const viaNode = await exchange(
      port,
      'POST /x HTTP/1.1\r\nhost: h\r\nX-Forwarded_Client-Cert: URI=spiffe://cluster.local/ns/a/sa/admin\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n',
    );
    assert.match(viaNode, /x-echo-underscored: none/i);
    assert.deepEqual(statuses(fast + viaNode), [200, 200]);
  });

  it('sets XFCC only from a verified peer (plaintext: none, whatever the caller sent)', async () => {
    const text = await exchange(port, 'GET /x HTTP/1.1\r\nhost: h\r\nx-forwarded-client-cert: URI=spiffe://cluster.local/ns/a/sa/admin\r\nconnection: close\r\n\r\n');
    assert.match(text, /x-echo-xfcc: none/i);
  });
});

describe('inbound HTTP/1.1 fast path, adversarial framing', () => {
  let app: http.Server;
  let raw: net.Server;
  let proxy: InboundProxy;
  let rawProxy: InboundProxy;
  let port = 0;
  let rawPort = 0;
  const seen: string[] = [];
  const rawSeen: string[] = [];
  let authorized = 0;
  const deny = (r: AuthzRequest): AuthzDecision => {
    authorized++;
    return r.request?.protocol === 'http' && r.request.path.startsWith('/admin') ? { allow: false, policy: 'foo/deny', reason: 'deny' } : { allow: true, policy: null, reason: 'allow' };
  };
  // Canned responses of a buggy or hostile app, by request path.
  const canned: Record<string, string> = {
    '/conn-cl': 'HTTP/1.1 200 OK\r\nconnection: content-length\r\ncontent-length: 5\r\n\r\nhello',
    '/conn-te': 'HTTP/1.1 200 OK\r\nconnection: transfer-encoding\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    '/bare-lf': 'HTTP/1.1 200 OK\r\nx-a: 1\ncontent-length: 40\r\ncontent-length: 0\r\n\r\n',
    '/status-099': 'HTTP/1.1 099 Odd\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok',
    '/space-colon': 'HTTP/1.1 200 OK\r\ncontent-length : 2\r\ncontent-length: 0\r\n\r\n',
  };

  before(async () => {
    app = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('latin1');
      req.on('data', (d: string) => (body += d));
      req.on('close', () => {
        if (!req.complete) seen.push(`aborted ${req.url}`);
      });
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} ${body.length} host=${req.headers.host ?? '-'}`);
        res.end(`${req.method} ${req.url} ${body.length}`);
      });
    });
    raw = net.createServer((s) => {
      let buf = '';
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        let end;
        while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
          const line = buf.slice(0, buf.indexOf('\r\n'));
          buf = buf.slice(end + 4);
          rawSeen.push(line);
          const path = line.split(' ')[1];
          s.write(canned[path] ?? 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        }
      });
    });
    const appPort = await listen(app);
    const rawAppPort = await listen(raw);
    ({ proxy, port } = await startProxy(appPort, deny));
    ({ proxy: rawProxy, port: rawPort } = await startProxy(rawAppPort, deny));
  });
  after(async () => {
    await proxy.close();
    await rawProxy.close();
    app.closeAllConnections();
    await closeServer(app);
    await closeServer(raw);
  });

  it('never lets Connection: content-length turn an allowed body into a denied request at the app', async () => {
    seen.length = 0;
    const smuggled = 'GET /admin/secret HTTP/1.1\r\nhost: h\r\n\r\n';
    const out = await exchange(port, `POST /ok HTTP/1.1\r\nhost: h\r\nconnection: content-length\r\ncontent-length: ${smuggled.length}\r\n\r\n${smuggled}` + 'GET /z HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n');
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(!seen.some((s) => s.includes('/admin')), JSON.stringify([seen, out]));
    assert.ok(seen.includes(`POST /ok ${smuggled.length} host=h`), JSON.stringify(seen));
  });

  it('keeps Host when Connection names it on the node:http path too (a chunked upload goes there): the app sees the host the policy saw', async () => {
    seen.length = 0;
    const out = await exchange(port, 'POST /up HTTP/1.1\r\nhost: a.example\r\nconnection: host, close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    assert.deepEqual(statuses(out), [200]);
    assert.deepEqual(seen, ['POST /up 5 host=a.example']);
  });

  it('answers a request without Host as node:http does (400): the policy never sees host "" and the app never sees it', async () => {
    rawSeen.length = 0;
    const text = await exchange(rawPort, 'GET /nohost HTTP/1.1\r\nconnection: close\r\n\r\n');
    assert.deepEqual(statuses(text), [400]);
    assert.deepEqual(rawSeen, []);
  });

  it('keeps the framing headers of a response even when its Connection header names them', async () => {
    for (const path of ['/conn-cl', '/conn-te']) {
      const text = await exchange(rawPort, `GET ${path} HTTP/1.1\r\nhost: h\r\n\r\nGET /next HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n`);
      // A client must be able to tell where the first response ends.
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n(?:[^\r]*\r\n)*?(content-length: 5|transfer-encoding: chunked)\r\n/i, `${path}: ${JSON.stringify(text)}`);
      assert.deepEqual(statuses(text), [200, 200], path);
    }
  });

  it('refuses a response head with a bare LF or CR instead of passing it to the client', async () => {
    const text = await exchange(rawPort, 'GET /bare-lf HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n');
    assert.deepEqual(statuses(text), [503]);
    assert.ok(!/x-a: 1\n/.test(text), JSON.stringify(text));
  });

  it('stops reading a client that pipelines denied requests without reading the 403s (memory stays bounded)', async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise((r) => socket.once('connect', r));
    socket.pause(); // never reads: every 403 the proxy writes past the kernel's buffers would sit in its memory
    const one = 'GET /admin HTTP/1.1\r\nhost: h\r\n\r\n';
    const batch = one.repeat(Math.ceil((1024 * 1024) / one.length));
    const sent = 16 * (batch.length / one.length);
    const before = authorized;
    for (let k = 0; k < 16; k++) socket.write(batch);
    // With backpressure the proxy stops once the socket buffers are full of 403s (~50k here); without it,
    // it reads and answers all of them, holding ~50 MiB of 403s, and the count never settles early.
    let last = -1;
    for (let t = 0; t < 40 && authorized !== last; t++) {
      last = authorized;
      await new Promise((r) => setTimeout(r, 500));
    }
    const denied = authorized - before;
    socket.destroy();
    assert.ok(authorized === last && denied < sent / 2, `${denied} of ${sent} pipelined requests answered to a client that reads nothing`);
  });

  it('gives up the app connection when the client half-closes before sending the whole body', async () => {
    seen.length = 0;
    const socket = net.connect(port, '127.0.0.1');
    const result = collect(socket);
    socket.end('POST /partial HTTP/1.1\r\nhost: h\r\ncontent-length: 10\r\n\r\n01234');
    const closed = await Promise.race([result.then(() => true), new Promise((r) => setTimeout(() => r(false), 1000))]);
    socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
    // The request can never complete: neither the app connection nor the client's should wait for it.
    assert.deepEqual([closed, seen], [true, ['aborted /partial']]);
  });

  it('refuses a status outside 100-599 and a header name that is not a token (a client could frame them differently)', async () => {
    for (const path of ['/status-099', '/space-colon']) {
      const text = await exchange(rawPort, `GET ${path} HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n`);
      assert.deepEqual(statuses(text), [503], `${path}: ${JSON.stringify(text)}`);
    }
  });
});
