// The destination a connection had before iptables REDIRECT sent it to the proxy, read from the
// kernel's NAT entry with getsockopt(SO_ORIGINAL_DST). Node has no getsockopt, so libc is called
// through koffi (no compiler needed at install). Facts: shared/reference/node-building-blocks.md §8.
import { createRequire } from 'node:module';
import { isIPv4 } from 'node:net';
import { endianness } from 'node:os';
import type { Socket } from 'node:net';
import type * as Koffi from 'koffi';

export interface OriginalDestination {
  address: string;
  port: number;
  family: 4 | 6;
}

export type OriginalDestinationErrorCode =
  /** The connection has no NAT entry: it was not redirected (e.g. a direct connection to the proxy port). */
  | 'NO_NAT_ENTRY'
  /** The socket has no usable file descriptor (closed, not yet connected, or not a TCP socket). */
  | 'NO_FD'
  /** Not Linux, or libc/koffi could not be loaded. */
  | 'UNSUPPORTED'
  | 'SYSCALL_FAILED';

export class OriginalDestinationError extends Error {
  override readonly name = 'OriginalDestinationError';
  readonly code: OriginalDestinationErrorCode;
  readonly errno: number | undefined;
  constructor(code: OriginalDestinationErrorCode, message: string, errno?: number) {
    super(message);
    this.code = code;
    this.errno = errno;
  }
}

// Linux UAPI: linux/in.h, linux/netfilter_ipv4.h, linux/netfilter_ipv6/ip6_tables.h.
const SOL_IP = 0;
const SOL_IPV6 = 41;
const SO_ORIGINAL_DST = 80;
const IP6T_SO_ORIGINAL_DST = 80;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCKADDR_IN_SIZE = 16;
const SOCKADDR_IN6_SIZE = 28;
const ENOENT = 2;
const EBADF = 9;
const ENOTSOCK = 88;
const ENOPROTOOPT = 92;

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: number[]) => number;
interface Libc {
  getsockopt: GetSockOpt;
  errno: () => number;
}

let libc: Libc | OriginalDestinationError | undefined;

// Loaded on first use and only once: the FFI costs nothing for processes that never ask.
function loadLibc(): Libc {
  if (libc === undefined) {
    if (process.platform !== 'linux') {
      libc = new OriginalDestinationError('UNSUPPORTED', `original destination lookup needs Linux (SO_ORIGINAL_DST); this is ${process.platform}`);
    } else {
      try {
        const koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;
        // dlopen(NULL): the libc node itself is linked against, whether glibc or musl.
        const getsockopt = koffi.load(null).func('int getsockopt(int, int, int, _Out_ uint8_t *optval, _Inout_ uint32_t *optlen)') as GetSockOpt;
        libc = { getsockopt, errno: () => koffi.errno() };
      } catch (err) {
        libc = new OriginalDestinationError('UNSUPPORTED', `cannot call getsockopt through koffi: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
  if (libc instanceof OriginalDestinationError) throw libc;
  return libc;
}

/** The descriptor behind a net.Socket (a private field of libuv's TCP handle). */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new OriginalDestinationError('NO_FD', 'the socket has no file descriptor (closed, or not a TCP socket)');
  }
  return fd;
}

/** Whether the connection is IPv4, including IPv4 peers of a dual-stack `::` listener (`::ffff:a.b.c.d`). */
export function isIpv4Connection(address: string): boolean {
  return isIPv4(address) || (/^::ffff:/i.test(address) && isIPv4(address.slice(7)));
}

/** Decodes the sockaddr_in / sockaddr_in6 that getsockopt filled in. */
export function decodeSockaddr(buf: Buffer, length: number): OriginalDestination {
  // sin_family is in host byte order, the port and address in network byte order.
  const family = endianness() === 'LE' ? buf.readUInt16LE(0) : buf.readUInt16BE(0);
  if (family === AF_INET && length >= 8) {
    return { address: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port: buf.readUInt16BE(2), family: 4 };
  }
  if (family === AF_INET6 && length >= 24) {
    const groups: string[] = [];
    for (let i = 8; i < 24; i += 2) groups.push(buf.readUInt16BE(i).toString(16));
    return { address: compressIpv6(groups), port: buf.readUInt16BE(2), family: 6 };
  }
  throw new OriginalDestinationError('SYSCALL_FAILED', `getsockopt returned an unexpected address (family ${family}, ${length} bytes)`);
}

function compressIpv6(groups: string[]): string {
  // RFC 5952: the longest run of two or more zero groups becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < groups.length; i++) {
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/**
 * The pre-REDIRECT destination of an accepted connection. The query follows the connection's
 * family, not the listener's: an IPv4 peer on a `::` listener needs the IPv4 query.
 * Throws OriginalDestinationError (code NO_NAT_ENTRY when the connection was not redirected).
 */
export function originalDestination(socket: Socket): OriginalDestination {
  const { getsockopt, errno } = loadLibc();
  const fd = socketFd(socket);
  const v4 = isIpv4Connection(socket.localAddress ?? socket.remoteAddress ?? '');
  const size = v4 ? SOCKADDR_IN_SIZE : SOCKADDR_IN6_SIZE;
  const buf = Buffer.alloc(size);
  const length = [size];
  const rc = getsockopt(fd, v4 ? SOL_IP : SOL_IPV6, v4 ? SO_ORIGINAL_DST : IP6T_SO_ORIGINAL_DST, buf, length);
  if (rc !== 0) {
    const e = errno();
    if (e === ENOENT) {
      throw new OriginalDestinationError('NO_NAT_ENTRY', 'the connection has no original destination: it was not redirected by iptables', e);
    }
    if (e === ENOPROTOOPT) {
      // nf_conntrack is not loaded, so no NAT rule can have matched this connection.
      throw new OriginalDestinationError('NO_NAT_ENTRY', 'the connection has no original destination: connection tracking (nf_conntrack) is not active', e);
    }
    if (e === EBADF || e === ENOTSOCK) throw new OriginalDestinationError('NO_FD', `the socket's file descriptor is not usable (errno ${e})`, e);
    throw new OriginalDestinationError('SYSCALL_FAILED', `getsockopt(SO_ORIGINAL_DST) failed with errno ${e}`, e);
  }
  const dst = decodeSockaddr(buf, length[0]);
  // With connection tracking active, a connection that no rule redirected still has an entry, whose
  // original destination is simply the listener itself; forwarding there would loop into the proxy.
  if (dst.port === socket.localPort && sameAddress(dst.address, socket.localAddress ?? '')) {
    throw new OriginalDestinationError('NO_NAT_ENTRY', "the connection was not redirected: its original destination is the proxy's own address");
  }
  return dst;
}

function sameAddress(a: string, b: string): boolean {
  const plain = (x: string) => (isIpv4Connection(x) ? x.replace(/^::ffff:/i, '') : x.toLowerCase());
  return plain(a) === plain(b);
}
