// Connection primitives of the data path. What is on a connection, from its first bytes and its
// certificate: TLS or plaintext, HTTP/1.1, HTTP/2 or opaque TCP, the ClientHello's ALPN/SNI, the
// peer's SPIFFE ID (pure functions), plus `peek`, which hands the bytes it read back to the socket,
// and `spliceSockets`, which joins two sockets both ways.
import type net from 'node:net';
import { parseSpiffeId, SPIFFE_PREFIX } from '../identity/spiffe.ts';

// ---------------------------------------------------------------- peeking

export interface Peeked<T> {
  verdict: T;
  /** Every byte read so far. Already put back into the socket with unshift unless `ended`. */
  head: Buffer;
  /** The peer half-closed during the peek: `head` could not be put back and must be written on by hand. */
  ended: boolean;
}

/**
 * Reads until `decide(bytes, final)` returns a verdict, then puts the bytes back (`unshift`) and
 * leaves the socket paused. `final` is true once no more bytes will be waited for (timeout, end,
 * `maxBytes`), and `decide` must then return a verdict.
 */
export function peek<T>(
  socket: net.Socket,
  decide: (bytes: Buffer, final: boolean) => T | undefined,
  timeoutMs: number,
  maxBytes: number,
  done: (err: Error | null, result?: Peeked<T>) => void,
): void {
  let head: Buffer = EMPTY;
  let finished = false;
  const finish = (err: Error | null, verdict: T | undefined, ended: boolean): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('error', onError);
    socket.removeListener('close', onClose);
    if (err || verdict === undefined) {
      done(err ?? new Error('connection closed before its protocol could be detected'));
      return;
    }
    socket.pause();
    if (!ended && head.length > 0) socket.unshift(head);
    done(null, { verdict, head, ended });
  };
  const onData = (chunk: Buffer): void => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const final = head.length >= maxBytes;
    const verdict = decide(head, final);
    if (verdict !== undefined) finish(null, verdict, false);
    else if (final) finish(new Error(`no protocol verdict after ${head.length} bytes`), undefined, false);
  };
  const onEnd = (): void => finish(null, decide(head, true), true);
  const onError = (err: Error): void => finish(err, undefined, false);
  const onClose = (): void => finish(null, undefined, false);
  const timer = setTimeout(() => finish(null, decide(head, true), false), timeoutMs);
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('error', onError);
  socket.once('close', onClose);
  socket.resume();
}

const EMPTY: Buffer = Buffer.alloc(0);

// ---------------------------------------------------------------- TLS

/** A TLS record carrying a handshake (ClientHello) starts 0x16 0x03. `undefined`: need another byte. */
export function startsWithTls(bytes: Buffer): boolean | undefined {
  if (bytes.length === 0) return undefined;
  if (bytes[0] !== 0x16) return false;
  if (bytes.length === 1) return undefined;
  return bytes[1] === 0x03;
}

export interface ClientHello {
  alpn: string[];
  sni?: string;
}

const MAX_CLIENT_HELLO = 64 * 1024;

/**
 * The ALPN list and SNI of a ClientHello, which may span several TLS records.
 * `'more'`: incomplete so far; `'invalid'`: not a well-formed ClientHello.
 */
export function parseClientHello(bytes: Buffer): ClientHello | 'more' | 'invalid' {
  // Reassemble the handshake message from the records' payloads.
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  let pos = 0;
  while (need < 0 || have < need) {
    if (bytes.length - pos < 5) return 'more';
    if (bytes[pos] !== 0x16 || bytes[pos + 1] !== 0x03) return 'invalid';
    const length = bytes.readUInt16BE(pos + 3);
    if (length === 0 || length > 16384 + 2048) return 'invalid';
    if (bytes.length - pos - 5 < length) return 'more';
    parts.push(bytes.subarray(pos + 5, pos + 5 + length));
    have += length;
    pos += 5 + length;
    if (need < 0 && have >= 4) {
      const first = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      if (first[0] !== 0x01) return 'invalid';
      need = 4 + first.readUIntBE(1, 3);
      if (need > MAX_CLIENT_HELLO) return 'invalid';
    }
  }
  const message = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  try {
    return readClientHelloBody(message.subarray(4, need));
  } catch {
    return 'invalid';
  }
}

function readClientHelloBody(body: Buffer): ClientHello {
  let pos = 2 + 32; // legacy_version, random
  pos = skipVector(body, pos, 1); // session id
  pos = skipVector(body, pos, 2); // cipher suites
  pos = skipVector(body, pos, 1); // compression methods
  const result: ClientHello = { alpn: [] };
  if (pos === body.length) return result; // no extensions at all
  const extensionsEnd = pos + 2 + body.readUInt16BE(pos);
  if (extensionsEnd > body.length) throw new RangeError('extensions overrun');
  pos += 2;
  while (pos < extensionsEnd) {
    const type = body.readUInt16BE(pos);
    const length = body.readUInt16BE(pos + 2);
    const start = pos + 4;
    const end = start + length;
    if (end > extensionsEnd) throw new RangeError('extension overrun');
    if (type === 0x0010) result.alpn = readAlpn(body, start, end);
    else if (type === 0x0000) result.sni = readSni(body, start, end);
    pos = end;
  }
  return result;
}

function skipVector(buf: Buffer, pos: number, lengthBytes: 1 | 2): number {
  const length = lengthBytes === 1 ? buf.readUInt8(pos) : buf.readUInt16BE(pos);
  const end = pos + lengthBytes + length;
  if (end > buf.length) throw new RangeError('vector overrun');
  return end;
}

function readAlpn(buf: Buffer, start: number, end: number): string[] {
  const listEnd = start + 2 + buf.readUInt16BE(start);
  if (listEnd !== end) throw new RangeError('bad ALPN list');
  const out: string[] = [];
  for (let pos = start + 2; pos < listEnd; ) {
    const length = buf[pos];
    if (length === 0 || pos + 1 + length > listEnd) throw new RangeError('bad ALPN entry');
    out.push(buf.toString('latin1', pos + 1, pos + 1 + length));
    pos += 1 + length;
  }
  return out;
}

function readSni(buf: Buffer, start: number, end: number): string | undefined {
  const listEnd = start + 2 + buf.readUInt16BE(start);
  if (listEnd !== end) throw new RangeError('bad SNI list');
  for (let pos = start + 2; pos + 3 <= listEnd; ) {
    const type = buf[pos];
    const length = buf.readUInt16BE(pos + 1);
    if (pos + 3 + length > listEnd) throw new RangeError('bad SNI entry');
    if (type === 0) return buf.toString('latin1', pos + 3, pos + 3 + length).toLowerCase();
    pos += 3 + length;
  }
  return undefined;
}

// ---------------------------------------------------------------- plaintext

export type PlainProtocol = 'http1' | 'h2' | 'tcp';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** Longest request line still taken as HTTP/1 (Node's header limit is 16 KiB). */
export const MAX_REQUEST_LINE = 8192;

/**
 * HTTP/2 prior knowledge (the connection preface), an HTTP/1.x request line, or anything else (TCP).
 * `undefined`: the bytes so far could still be either; only when `final` is false.
 */
export function sniffPlaintext(bytes: Buffer, final: boolean): PlainProtocol | undefined {
  if (bytes.length === 0) return final ? 'tcp' : undefined;
  const n = Math.min(bytes.length, H2_PREFACE.length);
  if (H2_PREFACE.compare(bytes, 0, n, 0, n) === 0) {
    if (bytes.length >= H2_PREFACE.length) return 'h2';
    return final ? 'tcp' : undefined;
  }
  const line = requestLine(bytes);
  if (line === undefined) return final ? 'tcp' : undefined;
  return line ? 'http1' : 'tcp';
}

/** true: a complete `METHOD SP target SP HTTP/1.x CRLF`; false: cannot be one; undefined: need more. */
function requestLine(bytes: Buffer): boolean | undefined {
  const limit = Math.min(bytes.length, MAX_REQUEST_LINE);
  let i = 0;
  // Method: upper-case token, as every method node:http parses.
  while (i < limit && i < 24) {
    const c = bytes[i];
    if (c >= 0x41 && c <= 0x5a) i++;
    else break;
  }
  if (i === limit) return bytes.length >= MAX_REQUEST_LINE || i >= 24 ? false : undefined;
  if (i === 0 || bytes[i] !== 0x20) return false;
  i++;
  // Target: visible ASCII, no spaces.
  const targetStart = i;
  while (i < limit) {
    const c = bytes[i];
    if (c > 0x20 && c < 0x7f) i++;
    else break;
  }
  if (i === limit) return bytes.length >= MAX_REQUEST_LINE ? false : undefined;
  if (i === targetStart || bytes[i] !== 0x20) return false;
  i++;
  const version = 'HTTP/1.x\r\n';
  for (let k = 0; k < version.length; k++, i++) {
    if (i >= bytes.length) return undefined;
    const c = bytes[i];
    if (k === 7) {
      if (c !== 0x30 && c !== 0x31) return false;
    } else if (c !== version.charCodeAt(k)) return false;
  }
  return true;
}

// ---------------------------------------------------------------- peer identity

export type PeerIdentity = { ok: true; spiffeId: string; principal: string; trustDomain: string } | { ok: false; reason: string };

/**
 * The peer's SPIFFE ID from its DER certificate: exactly one URI SAN (X509-SVID), a valid SPIFFE ID,
 * in `trustDomain` when given. Read from the DER itself, never from Node's display string.
 */
export function peerIdentity(der: Uint8Array | undefined, trustDomain?: string): PeerIdentity {
  if (!der || der.length === 0) return { ok: false, reason: 'no peer certificate' };
  let uris: string[];
  try {
    uris = uriSans(der);
  } catch (err) {
    return { ok: false, reason: `unreadable peer certificate: ${(err as Error).message}` };
  }
  if (uris.length !== 1) return { ok: false, reason: `peer certificate has ${uris.length} URI SANs, a workload certificate has exactly one` };
  const id = uris[0];
  let parsedTrustDomain: string;
  try {
    parsedTrustDomain = parseSpiffeId(id).trustDomain;
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  if (trustDomain !== undefined && parsedTrustDomain !== trustDomain) {
    return { ok: false, reason: `peer ${id} is not in trust domain ${trustDomain}` };
  }
  return { ok: true, spiffeId: id, principal: id.slice(SPIFFE_PREFIX.length), trustDomain: parsedTrustDomain };
}

const SAN_OID = Buffer.from([0x55, 0x1d, 0x11]); // 2.5.29.17

/** The URI SANs of a DER certificate (GeneralName [6] IA5String). Throws on malformed DER. */
export function uriSans(der: Uint8Array): string[] {
  const buf = Buffer.isBuffer(der) ? der : Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const cert = tlv(buf, 0, buf.length, 0x30);
  const tbs = tlv(buf, cert.start, cert.end, 0x30);
  let extensions: Tlv | undefined;
  for (let pos = tbs.start; pos < tbs.end; ) {
    const field = tlv(buf, pos, tbs.end);
    if (field.tag === 0xa3) extensions = tlv(buf, field.start, field.end, 0x30);
    pos = field.end;
  }
  if (!extensions) return [];
  let found: string[] | undefined;
  for (let pos = extensions.start; pos < extensions.end; ) {
    const ext = tlv(buf, pos, extensions.end, 0x30);
    pos = ext.end;
    const oid = tlv(buf, ext.start, ext.end, 0x06);
    if (oid.end - oid.start !== 3 || SAN_OID.compare(buf, oid.start, oid.end) !== 0) continue;
    if (found) throw new Error('duplicate subjectAltName extension');
    let next = tlv(buf, oid.end, ext.end);
    if (next.tag === 0x01) next = tlv(buf, next.end, ext.end); // critical flag
    if (next.tag !== 0x04) throw new Error('subjectAltName value is not an OCTET STRING');
    const names = tlv(buf, next.start, next.end, 0x30);
    found = [];
    for (let p = names.start; p < names.end; ) {
      const name = tlv(buf, p, names.end);
      if (name.tag === 0x86) {
        for (let k = name.start; k < name.end; k++) if (buf[k] > 0x7e || buf[k] < 0x20) throw new Error('URI SAN is not printable IA5String');
        found.push(buf.toString('latin1', name.start, name.end));
      }
      p = name.end;
    }
  }
  return found ?? [];
}

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

function tlv(buf: Buffer, pos: number, limit: number, expectTag?: number): Tlv {
  if (pos + 2 > limit) throw new Error('truncated DER');
  const tag = buf[pos];
  if ((tag & 0x1f) === 0x1f) throw new Error('high tag numbers are not used in certificates');
  if (expectTag !== undefined && tag !== expectTag) throw new Error(`expected DER tag 0x${expectTag.toString(16)}, got 0x${tag.toString(16)}`);
  let length = buf[pos + 1];
  let start = pos + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || start + bytes > limit) throw new Error('bad DER length');
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + buf[start + i];
    start += bytes;
  }
  const end = start + length;
  if (end > limit) throw new Error('DER value overruns its container');
  return { tag, start, end };
}

/** Resolves once `sockets` is empty, or after `ms`. Polled: it runs once, at shutdown. */
export function untilEmpty(sockets: ReadonlySet<unknown>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve) => {
    const check = (): void => {
      if (sockets.size === 0 || Date.now() >= deadline) resolve();
      else setTimeout(check, 25);
    };
    check();
  });
}

// ---------------------------------------------------------------- splicing

/** Ends a socket abruptly: a TCP reset where possible, so a failure upstream is not mistaken for a clean end. */
export function abort(socket: net.Socket): void {
  if (socket.destroyed) return;
  const plain = socket as net.Socket & { encrypted?: boolean };
  if (!plain.encrypted && typeof socket.resetAndDestroy === 'function' && !socket.connecting) {
    try {
      socket.resetAndDestroy();
      return;
    } catch {
      // Not a TCP handle: fall through.
    }
  }
  socket.destroy();
}

/**
 * Joins two sockets both ways: backpressure through pipe, half-close passed on (both sides must
 * have allowHalfOpen), an error or reset on one side resets the other, an idle connection is closed.
 * `onClosed` runs once both are closed.
 */
export function spliceSockets(a: net.Socket, b: net.Socket, idleTimeoutMs: number, onClosed?: () => void): void {
  let open = 2;
  const closed = (other: net.Socket) => (): void => {
    // A clean close of one side implies the other has ended both ways and is flushing; anything else is a teardown.
    if (!(other.readableEnded && other.writableEnded)) other.destroy();
    if (--open === 0) onClosed?.();
  };
  a.on('error', () => abort(b));
  b.on('error', () => abort(a));
  a.once('close', closed(b));
  b.once('close', closed(a));
  if (idleTimeoutMs > 0) {
    // Reads and writes on `a` both count as activity, so one timer covers both directions.
    a.setTimeout(idleTimeoutMs);
    a.once('timeout', () => {
      a.destroy();
      b.destroy();
    });
  }
  a.pipe(b);
  b.pipe(a);
}
