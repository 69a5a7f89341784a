// The DER encoder against known encodings (X.690 and RFC 5280 examples) and the reader against
// everything DER forbids.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DerError,
  bitString,
  boolean,
  childrenOf,
  contextConstructed,
  contextPrimitive,
  decodeBoolean,
  decodeOid,
  encodeLength,
  ia5String,
  integer,
  namedBits,
  nullValue,
  octetString,
  oid,
  printableString,
  readNode,
  sequence,
  setOf,
  time,
  tlv,
  unsignedInteger,
  utf8String,
} from '../../../src/ca/der.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('lengths: short form below 128, minimal long form above', () => {
  const cases: Array<[number, string]> = [
    [0, '00'],
    [1, '01'],
    [127, '7f'],
    [128, '8180'],
    [255, '81ff'],
    [256, '820100'],
    [65535, '82ffff'],
    [65536, '83010000'],
    [16777216, '8401000000'],
    [2 ** 32, '850100000000'],
  ];
  for (const [length, expected] of cases) assert.equal(hex(encodeLength(length)), expected, String(length));
  assert.throws(() => encodeLength(-1), RangeError);
  assert.throws(() => encodeLength(1.5), RangeError);
});

test('a TLV around long content carries the right header', () => {
  for (const size of [127, 128, 255, 256, 70000]) {
    const node = sequence(Buffer.alloc(size, 7));
    const parsed = readNode(node, 0);
    assert.equal(parsed.end, node.length);
    assert.equal(parsed.end - parsed.contentStart, size);
  }
  assert.throws(() => tlv(0x1f, Buffer.alloc(0)), /unsupported DER tag/);
});

test('INTEGER: minimal two’s complement for positive, zero and negative values', () => {
  const cases: Array<[bigint | number, string]> = [
    [0, '020100'],
    [1, '020101'],
    [127, '02017f'],
    [128, '02020080'],
    [255, '020200ff'],
    [256, '02020100'],
    [-1, '0201ff'],
    [-128, '020180'],
    [-129, '0202ff7f'],
    [-256, '0202ff00'],
    [2n ** 64n, '0209010000000000000000'],
    [-(2n ** 63n), '02088000000000000000'],
  ];
  for (const [value, expected] of cases) assert.equal(hex(integer(value)), expected, String(value));
  assert.throws(() => integer(2 ** 60), RangeError);
});

test('unsigned INTEGER (serials): leading zeros trimmed, sign byte added when the top bit is set', () => {
  assert.equal(hex(unsignedInteger(Buffer.from('0000017f', 'hex'))), '0202017f');
  assert.equal(hex(unsignedInteger(Buffer.from('80', 'hex'))), '02020080');
  assert.equal(hex(unsignedInteger(Buffer.from('0000', 'hex'))), '020100');
  assert.equal(hex(unsignedInteger(Buffer.alloc(0))), '020100');
  assert.equal(hex(unsignedInteger(Buffer.from('41'.repeat(16), 'hex'))), '0210' + '41'.repeat(16));
});

test('OBJECT IDENTIFIER: first two arcs combined, base-128 arcs, and back', () => {
  const cases: Array<[string, string]> = [
    ['2.5.29.17', '0603551d11'],
    ['1.2.840.113549.1.1.11', '06092a864886f70d01010b'],
    ['1.2.840.10045.4.3.2', '06082a8648ce3d040302'],
    ['1.3.6.1.5.5.7.3.1', '06082b06010505070301'],
    ['2.999.3', '0603883703'],
    ['0.0', '060100'],
  ];
  for (const [dotted, expected] of cases) {
    assert.equal(hex(oid(dotted)), expected, dotted);
    assert.equal(decodeOid(oid(dotted).subarray(2)), dotted);
  }
  // A 128-bit UUID arc (RFC 4122 OIDs under 2.25) round-trips.
  const uuidOid = '2.25.329800735698586629295641978511506172918';
  assert.equal(decodeOid(oid(uuidOid).subarray(2)), uuidOid);
  for (const bad of ['1', '3.1', '1.40', '1.2.x', '1..2', '01.2']) assert.throws(() => oid(bad), RangeError, bad);
  assert.throws(() => decodeOid(Buffer.from('2a80', 'hex')), /truncated|non-minimal/);
  assert.throws(() => decodeOid(Buffer.from('2a8001', 'hex')), /non-minimal/);
  assert.throws(() => decodeOid(Buffer.alloc(0)), /empty/);
  assert.throws(() => decodeOid(Buffer.concat([Buffer.from([0x2a]), Buffer.alloc(30, 0x81), Buffer.from([1])])), /too long/);
});

test('Time: UTCTime through 2049, GeneralizedTime from 2050 and before 1950 (RFC 5280 4.1.2.5)', () => {
  const cases: Array<[string, string]> = [
    ['2026-03-04T05:06:07Z', '170d3236303330343035303630375a'],
    ['1950-01-01T00:00:00Z', '170d3530303130313030303030305a'],
    ['2049-12-31T23:59:59Z', '170d3439313233313233353935395a'],
    ['2050-01-01T00:00:00Z', '180f32303530303130313030303030305a'],
    ['1949-12-31T23:59:59Z', '180f31393439313233313233353935395a'],
    ['9999-12-31T23:59:59Z', '180f39393939313233313233353935395a'],
  ];
  for (const [iso, expected] of cases) assert.equal(hex(time(new Date(iso))), expected, iso);
  // Fractions are dropped, never rounded up past the intended second.
  assert.equal(hex(time(new Date('2049-12-31T23:59:59.999Z'))), '170d3439313233313233353935395a');
  assert.throws(() => time(new Date('invalid')), RangeError);
  assert.throws(() => time(new Date('+010000-01-01T00:00:00Z')), RangeError);
});

test('BIT STRING, named bits (KeyUsage), BOOLEAN, NULL, strings', () => {
  assert.equal(hex(namedBits([0])), '03020780'); // digitalSignature
  assert.equal(hex(namedBits([0, 2])), '030205a0'); // + keyEncipherment
  assert.equal(hex(namedBits([5, 6])), '03020106'); // keyCertSign | cRLSign
  assert.equal(hex(namedBits([8])), '0303070080'); // decipherOnly spills into a second byte
  assert.equal(hex(namedBits([])), '030100');
  assert.equal(hex(bitString(Buffer.from([0xab]))), '030200ab');
  assert.throws(() => bitString(Buffer.from([0x81]), 1), /unused bits to be zero/);
  assert.equal(hex(boolean(true)), '0101ff');
  assert.equal(hex(boolean(false)), '010100');
  assert.equal(hex(nullValue()), '0500');
  assert.equal(hex(octetString(Buffer.from([1, 2]))), '04020102');
  assert.equal(hex(ia5String('a:b')), '1603613a62');
  assert.throws(() => ia5String('é'), /ASCII/);
  assert.equal(hex(utf8String('é')), '0c02c3a9');
  assert.equal(hex(printableString('Cinch CA')), '130843696e6368204341');
  assert.throws(() => printableString('a@b'), /PrintableString/);
  assert.equal(hex(contextPrimitive(6, Buffer.from('x'))), '860178');
  assert.equal(hex(contextConstructed(3, sequence())), 'a3023000');
  assert.throws(() => contextPrimitive(31, Buffer.alloc(0)), /high-tag/);
});

test('SET OF sorts its elements as DER requires', () => {
  const a = Buffer.from('0201ff', 'hex');
  const b = Buffer.from('020101', 'hex');
  const c = Buffer.from('02020100', 'hex');
  // Compared octet by octet: 02 01 01 < 02 01 ff < 02 02 01 00 (the length octet decides before the value).
  assert.equal(hex(setOf(a, c, b)), '310a' + '020101' + '0201ff' + '02020100');
});

test('the reader refuses BER and malformed input with the offset', () => {
  const refused: Array<[string, RegExp]> = [
    ['3080', /indefinite length/],
    ['30810100', /non-minimal/],
    ['3082000100', /non-minimal/],
    ['3085010000000000', /too large/],
    ['3004020101', /runs past the end/],
    ['30', /truncated DER length/],
    ['3082', /truncated DER length/],
    ['1f2000', /high tag number/],
    ['', /found the end/],
  ];
  for (const [input, reason] of refused) assert.throws(() => readNode(Buffer.from(input, 'hex'), 0), (e: unknown) => e instanceof DerError && reason.test(e.message), input);
  // A child that overruns its parent is caught even if the outer buffer is long enough.
  const overrun = Buffer.from('300302030102', 'hex');
  assert.throws(() => childrenOf(overrun, readNode(overrun, 0)), /runs past the end/);
  assert.throws(() => decodeBoolean(Buffer.from([1])), /BOOLEAN is not DER/);
  assert.equal(decodeBoolean(Buffer.from([0xff])), true);
});
