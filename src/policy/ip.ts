// IPv4/IPv6 addresses and CIDR ranges, in pure code so validation can say exactly what is wrong
// and matching costs a few byte comparisons per range.
//
// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.7`, what a dual-stack Node socket reports for an
// IPv4 peer) are treated as the IPv4 address, both in requests and in policies, so an IPv4 block
// matches however the socket happened to report the peer.

export interface IpAddress {
  /** 4 bytes for IPv4, 16 for IPv6. */
  bytes: Uint8Array;
}

export interface IpRange {
  bytes: Uint8Array;
  prefixLength: number;
}

function parseIpv4(text: string): Uint8Array | string {
  const parts = text.split('.');
  if (parts.length !== 4) return 'an IPv4 address has four dot-separated numbers';
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i];
    if (!/^\d{1,3}$/.test(part)) return `"${part}" is not a number 0-255`;
    // Leading zeros are refused (as Go's netip does): "010" reads as octal to some tools.
    if (part.length > 1 && part.startsWith('0')) return `"${part}" has a leading zero`;
    const n = Number(part);
    if (n > 255) return `${n} is larger than 255`;
    bytes[i] = n;
  }
  return bytes;
}

function parseIpv6(text: string): Uint8Array | string {
  if (text.includes('%')) return 'zoned IPv6 addresses are not supported';
  let head = text;
  let tail = '';
  const gap = text.indexOf('::');
  if (gap !== -1) {
    if (text.indexOf('::', gap + 1) !== -1) return '"::" may appear only once';
    head = text.slice(0, gap);
    tail = text.slice(gap + 2);
  }
  const parseGroups = (part: string): number[] | string => {
    if (part === '') return [];
    const out: number[] = [];
    const groups = part.split(':');
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (i === groups.length - 1 && g.includes('.')) {
        const v4 = parseIpv4(g);
        if (typeof v4 === 'string') return v4;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return `"${g}" is not a 16-bit hexadecimal group`;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const first = parseGroups(head);
  if (typeof first === 'string') return first;
  const last = parseGroups(tail);
  if (typeof last === 'string') return last;
  if (head.includes('.') && gap !== -1) return 'an embedded IPv4 address must come last';
  const total = first.length + last.length;
  if (gap === -1 ? total !== 8 : total > 7) return 'an IPv6 address has eight 16-bit groups';
  const groups = [...first, ...new Array<number>(8 - total).fill(0), ...last];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

function isV4Mapped(bytes: Uint8Array): boolean {
  if (bytes.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** Parses an address; returns an error message (string) when it is not one. */
export function parseIp(text: string): IpAddress | string {
  if (text === '') return 'empty address';
  const bytes = text.includes(':') ? parseIpv6(text) : parseIpv4(text);
  if (typeof bytes === 'string') return bytes;
  return { bytes: isV4Mapped(bytes) ? bytes.slice(12) : bytes };
}

/** Parses `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or `x::/n`; a bare address is a single-host range. */
export function parseIpRange(text: string): IpRange | string {
  const slash = text.indexOf('/');
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const rawBytes = addressText.includes(':') ? parseIpv6(addressText) : parseIpv4(addressText);
  if (typeof rawBytes === 'string') return `bad IP address "${addressText}": ${rawBytes}`;
  const maxPrefix = rawBytes.length * 8;
  let prefixLength = maxPrefix;
  if (slash !== -1) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      return `bad prefix length "/${prefixText}": expected 0-${maxPrefix}`;
    }
    prefixLength = Number(prefixText);
  }
  if (isV4Mapped(rawBytes)) {
    // ::ffff:0:0/96 and longer prefixes are IPv4 ranges in disguise.
    if (prefixLength >= 96) return { bytes: rawBytes.slice(12), prefixLength: prefixLength - 96 };
  }
  return { bytes: rawBytes, prefixLength };
}

export function ipInRange(address: IpAddress, range: IpRange): boolean {
  const a = address.bytes;
  const r = range.bytes;
  if (a.length !== r.length) return false;
  const fullBytes = range.prefixLength >> 3;
  for (let i = 0; i < fullBytes; i++) if (a[i] !== r[i]) return false;
  const remainingBits = range.prefixLength & 7;
  if (remainingBits === 0) return true;
  const mask = (0xff << (8 - remainingBits)) & 0xff;
  return (a[fullBytes] & mask) === (r[fullBytes] & mask);
}
