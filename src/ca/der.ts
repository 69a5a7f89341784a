// A small, strict DER (X.690) encoder and reader: just what certificates and CSRs need.
// The fast signer builds leaves with it; the CSR check reads with it. Both refuse anything
// outside DER (indefinite lengths, non-minimal lengths, high tag numbers) instead of guessing.

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

const CONTEXT = 0x80;
const CONSTRUCTED = 0x20;

export class DerError extends Error {
  override readonly name = 'DerError';
}

// ---------------------------------------------------------------- encoding

/** Definite-length octets: short form below 128, else 0x80|n followed by n big-endian bytes, minimal. */
export function encodeLength(length: number): Buffer {
  const out = Buffer.allocUnsafe(lengthSize(length));
  writeLength(out, 0, length);
  return out;
}

function lengthSize(length: number): number {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`DER length must be a non-negative safe integer, got ${length}`);
  if (length < 0x80) return 1;
  let bytes = 0;
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes++;
  return 1 + bytes;
}

function writeLength(out: Buffer, offset: number, length: number): number {
  const size = lengthSize(length);
  if (size === 1) {
    out[offset] = length;
    return offset + 1;
  }
  out[offset] = 0x80 | (size - 1);
  let rest = length;
  for (let i = size - 1; i >= 1; i--) {
    out[offset + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return offset + size;
}

/** One TLV. `tag` is the whole identifier octet (low tag numbers only, which is all X.509 uses). */
export function tlv(tag: number, ...content: readonly Uint8Array[]): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) throw new RangeError(`unsupported DER tag ${tag}`);
  let length = 0;
  for (const part of content) length += part.length;
  // One allocation per element: the signer builds a dozen of these per certificate.
  const out = Buffer.allocUnsafe(1 + lengthSize(length) + length);
  out[0] = tag;
  let offset = writeLength(out, 1, length);
  for (const part of content) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function sequence(...parts: readonly Uint8Array[]): Buffer {
  return tlv(TAG.SEQUENCE, ...parts);
}

/** SET OF: DER orders the element encodings as octet strings, the shorter padded with zeros (X.690 11.6). */
export function setOf(...elements: readonly Uint8Array[]): Buffer {
  const sorted = [...elements].sort(compareZeroPadded);
  return tlv(TAG.SET, ...sorted);
}

function compareZeroPadded(a: Uint8Array, b: Uint8Array): number {
  const length = Math.max(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const diff = (a[i] ?? 0) - (b[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

/** Context-specific constructed [n] (EXPLICIT tagging, or IMPLICIT of a constructed type). */
export function contextConstructed(tagNumber: number, ...content: readonly Uint8Array[]): Buffer {
  return tlv(CONTEXT | CONSTRUCTED | checkedTagNumber(tagNumber), ...content);
}

/** Context-specific primitive [n] (IMPLICIT of a primitive type, e.g. a GeneralName's URI). */
export function contextPrimitive(tagNumber: number, content: Uint8Array): Buffer {
  return tlv(CONTEXT | checkedTagNumber(tagNumber), content);
}

function checkedTagNumber(tagNumber: number): number {
  if (!Number.isInteger(tagNumber) || tagNumber < 0 || tagNumber > 30) throw new RangeError(`tag number ${tagNumber} needs the high-tag form, which is not supported`);
  return tagNumber;
}

/** INTEGER in minimal two's complement, for any bigint or safe integer, negative included. */
export function integer(value: bigint | number): Buffer {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError(`INTEGER must be a safe integer, got ${value}`);
  let v = BigInt(value);
  const bytes: number[] = [];
  // Emit bytes low to high until the remaining value is pure sign extension of the top byte.
  for (;;) {
    const byte = Number(v & 0xffn);
    bytes.unshift(byte);
    v >>= 8n;
    if ((v === 0n && (byte & 0x80) === 0) || (v === -1n && (byte & 0x80) !== 0)) break;
  }
  return tlv(TAG.INTEGER, Buffer.from(bytes));
}

/** INTEGER from an unsigned big-endian magnitude (serial numbers): strips leading zeros, adds one if the top bit is set. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.length === 0 ? Buffer.from([0]) : Buffer.from(magnitude.subarray(start));
  return tlv(TAG.INTEGER, (trimmed[0] & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export function boolean(value: boolean): Buffer {
  return Buffer.from([TAG.BOOLEAN, 1, value ? 0xff : 0x00]);
}

export function nullValue(): Buffer {
  return Buffer.from([TAG.NULL, 0]);
}

export function octetString(content: Uint8Array): Buffer {
  return tlv(TAG.OCTET_STRING, content);
}

export function bitString(content: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7) throw new RangeError(`unused bits must be 0-7, got ${unusedBits}`);
  if (content.length === 0 && unusedBits !== 0) throw new RangeError('an empty BIT STRING has no unused bits');
  if (unusedBits > 0 && (content[content.length - 1] & ((1 << unusedBits) - 1)) !== 0) throw new RangeError('DER requires unused bits to be zero');
  return tlv(TAG.BIT_STRING, Buffer.from([unusedBits]), content);
}

/** A NamedBitList (e.g. KeyUsage): bit 0 is the most significant bit; DER drops trailing zero bits. */
export function namedBits(bitNumbers: readonly number[]): Buffer {
  if (bitNumbers.length === 0) return bitString(Buffer.alloc(0));
  const highest = Math.max(...bitNumbers);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bitNumbers) {
    if (!Number.isInteger(bit) || bit < 0) throw new RangeError(`bad bit number ${bit}`);
    bytes[bit >> 3] |= 0x80 >> (bit & 7);
  }
  return bitString(bytes, 7 - (highest & 7));
}

export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((arc) => {
    if (!/^(0|[1-9]\d*)$/.test(arc)) throw new RangeError(`bad OID ${JSON.stringify(dotted)}`);
    return BigInt(arc);
  });
  if (arcs.length < 2 || arcs[0] > 2n || (arcs[0] < 2n && arcs[1] > 39n)) throw new RangeError(`bad OID ${JSON.stringify(dotted)}`);
  const subidentifiers = [arcs[0] * 40n + arcs[1], ...arcs.slice(2)];
  const bytes: number[] = [];
  for (const sub of subidentifiers) {
    const chunk = [Number(sub & 0x7fn)];
    for (let rest = sub >> 7n; rest > 0n; rest >>= 7n) chunk.unshift(Number(rest & 0x7fn) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(TAG.OID, Buffer.from(bytes));
}

export function ia5String(value: string): Buffer {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) throw new RangeError('IA5String holds ASCII only');
  return tlv(TAG.IA5_STRING, Buffer.from(value, 'latin1'));
}

export function utf8String(value: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(value, 'utf8'));
}

export function printableString(value: string): Buffer {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value)) throw new RangeError(`${JSON.stringify(value)} is not a PrintableString`);
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(value, 'latin1'));
}

/**
 * RFC 5280 4.1.2.5 Time: UTCTime (YYMMDDHHMMSSZ) for 1950-2049, GeneralizedTime (YYYYMMDDHHMMSSZ)
 * otherwise; always UTC, seconds present, no fractions (milliseconds are dropped, not rounded).
 */
export function time(date: Date): Buffer {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('invalid date');
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) throw new RangeError(`year ${year} cannot be encoded as an X.509 time`);
  const two = (n: number): string => String(n).padStart(2, '0');
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  if (year >= 1950 && year <= 2049) return tlv(TAG.UTC_TIME, Buffer.from(`${two(year % 100)}${rest}`, 'latin1'));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${String(year).padStart(4, '0')}${rest}`, 'latin1'));
}

// ---------------------------------------------------------------- reading

export interface DerNode {
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

/** Reads the TLV at `offset`, which must end at or before `limit`. */
export function readNode(buf: Uint8Array, offset: number, limit = buf.length): DerNode {
  if (offset >= limit) throw new DerError(`expected a DER element at offset ${offset}, found the end of the data`);
  const tag = buf[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError(`high tag number at offset ${offset} is not supported`);
  if (offset + 1 >= limit) throw new DerError(`truncated DER length at offset ${offset + 1}`);
  const first = buf[offset + 1];
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw new DerError(`indefinite length at offset ${offset + 1} is not DER`);
    if (count > 4) throw new DerError(`DER length of ${count} bytes at offset ${offset + 1} is too large`);
    if (offset + 2 + count > limit) throw new DerError(`truncated DER length at offset ${offset + 1}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[offset + 2 + i];
    if (buf[offset + 2] === 0 || length < 0x80) throw new DerError(`non-minimal DER length at offset ${offset + 1}`);
    contentStart = offset + 2 + count;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError(`DER element at offset ${offset} runs past the end of its container`);
  return { tag, start: offset, contentStart, end };
}

/** Reads a TLV and checks its tag. */
export function expectNode(buf: Uint8Array, offset: number, tag: number, what: string, limit = buf.length): DerNode {
  const node = readNode(buf, offset, limit);
  if (node.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${node.tag.toString(16)}`);
  return node;
}

/** The children of a constructed node, which must exactly fill it. */
export function childrenOf(buf: Uint8Array, node: DerNode): DerNode[] {
  if ((node.tag & CONSTRUCTED) === 0) throw new DerError(`element at offset ${node.start} is not constructed`);
  const children: DerNode[] = [];
  for (let offset = node.contentStart; offset < node.end; ) {
    const child = readNode(buf, offset, node.end);
    children.push(child);
    offset = child.end;
  }
  return children;
}

export function contentOf(buf: Uint8Array, node: DerNode): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + node.contentStart, node.end - node.contentStart);
}

export function rawOf(buf: Uint8Array, node: DerNode): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + node.start, node.end - node.start);
}

export function decodeOid(content: Uint8Array): string {
  if (content.length === 0) throw new DerError('empty OBJECT IDENTIFIER');
  // Numbers while an arc fits in 2^53 (every arc in practice); BigInt only past that (UUID arcs).
  const subidentifiers: Array<number | bigint> = [];
  let current = 0;
  let big: bigint | undefined;
  let started = false;
  let width = 0;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i];
    if (!started && byte === 0x80) throw new DerError('non-minimal OBJECT IDENTIFIER encoding');
    started = true;
    // Real arcs fit in 20 bytes (128-bit UUID arcs); longer ones only serve to make parsing slow.
    if (++width > 20) throw new DerError('OBJECT IDENTIFIER arc is too long');
    if (big !== undefined) big = (big << 7n) | BigInt(byte & 0x7f);
    else if (current >= 2 ** 46) big = (BigInt(current) << 7n) | BigInt(byte & 0x7f);
    else current = current * 128 + (byte & 0x7f);
    if ((byte & 0x80) === 0) {
      subidentifiers.push(big ?? current);
      current = 0;
      big = undefined;
      started = false;
      width = 0;
    }
  }
  if (started) throw new DerError('truncated OBJECT IDENTIFIER');
  const first = subidentifiers[0];
  let head: string;
  if (typeof first === 'bigint') head = `2.${first - 80n}`;
  else head = first < 80 ? `${Math.floor(first / 40)}.${first % 40}` : `2.${first - 80}`;
  let out = head;
  for (let i = 1; i < subidentifiers.length; i++) out += `.${subidentifiers[i]}`;
  return out;
}

/** A DER BOOLEAN content octet: 0x00 or 0xFF only. */
export function decodeBoolean(content: Uint8Array): boolean {
  if (content.length !== 1 || (content[0] !== 0 && content[0] !== 0xff)) throw new DerError('BOOLEAN is not DER (must be one octet, 0x00 or 0xFF)');
  return content[0] === 0xff;
}
