// SO_ORIGINAL_DST decoding and the error paths that need no iptables; the redirected cases are
// proven in test/e2e/netinit.test.ts.
import assert from 'node:assert/strict';
import net from 'node:net';
import { endianness } from 'node:os';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import {
  OriginalDestinationError,
  decodeSockaddr,
  isIpv4Connection,
  originalDestination,
  socketFd,
} from '../../../src/proxy/original-dst.ts';

function family(buf: Buffer, value: number): void {
  if (endianness() === 'LE') buf.writeUInt16LE(value, 0);
  else buf.writeUInt16BE(value, 0);
}

describe('decodeSockaddr', () => {
  test('sockaddr_in: port and address in network order', () => {
    const buf = Buffer.alloc(16);
    family(buf, 2);
    buf.writeUInt16BE(8080, 2);
    Buffer.from([10, 99, 0, 7]).copy(buf, 4);
    assert.deepEqual(decodeSockaddr(buf, 16), { address: '10.99.0.7', port: 8080, family: 4 });
  });

  test('sockaddr_in6: compressed address', () => {
    const buf = Buffer.alloc(28);
    family(buf, 10);
    buf.writeUInt16BE(9000, 2);
    Buffer.from('fd000000000000000000000000000007', 'hex').copy(buf, 8);
    assert.deepEqual(decodeSockaddr(buf, 28), { address: 'fd00::7', port: 9000, family: 6 });
    Buffer.from('20010db8000000010000000000000001', 'hex').copy(buf, 8);
    assert.equal(decodeSockaddr(buf, 28).address, '2001:db8:0:1::1');
    Buffer.from('00000000000000000000000000000001', 'hex').copy(buf, 8);
    assert.equal(decodeSockaddr(buf, 28).address, '::1');
  });

  test('an unknown family is an error', () => {
    assert.throws(() => decodeSockaddr(Buffer.alloc(16), 16), OriginalDestinationError);
  });
});

test('IPv4 connections include IPv4-mapped peers of a dual-stack listener', () => {
  assert.equal(isIpv4Connection('10.0.0.1'), true);
  assert.equal(isIpv4Connection('::ffff:10.0.0.1'), true);
  assert.equal(isIpv4Connection('::FFFF:127.0.0.1'), true);
  assert.equal(isIpv4Connection('fd00::1'), false);
  assert.equal(isIpv4Connection('::1'), false);
});

test('a socket without a descriptor is a typed error, not a crash', () => {
  const socket = new net.Socket();
  assert.throws(() => socketFd(socket), (e: unknown) => e instanceof OriginalDestinationError && e.code === 'NO_FD');
  assert.throws(() => originalDestination(socket), (e: unknown) => e instanceof OriginalDestinationError && (e.code === 'NO_FD' || e.code === 'UNSUPPORTED'));
});

test('a connection that was not redirected has no original destination', { skip: process.platform !== 'linux' && 'needs Linux' }, async () => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection');
  const client = net.connect(port, '127.0.0.1');
  const [socket] = (await accepted) as [net.Socket];
  try {
    assert.throws(() => originalDestination(socket), (e: unknown) => {
      assert.ok(e instanceof OriginalDestinationError);
      assert.equal(e.code, 'NO_NAT_ENTRY');
      assert.match(e.message, /no original destination/);
      return true;
    });
  } finally {
    client.destroy();
    socket.destroy();
    server.close();
  }
});
