// PEM (RFC 7468) in and out. Strict about the base64 inside a block, tolerant of text between
// blocks (openssl writes explanatory text before certificates).

export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

export class PemError extends Error {
  override readonly name = 'PemError';
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function decodePem(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) {
    const [, label, body, endLabel] = match as unknown as [string, string, string, string];
    if (label !== endLabel) throw new PemError(`PEM block "BEGIN ${label}" ends with "END ${endLabel}"`);
    const base64 = body.replace(/\s+/g, '');
    if (!BASE64.test(base64) || base64.length % 4 !== 0) throw new PemError(`PEM block "${label}" does not hold valid base64`);
    blocks.push({ label, der: Buffer.from(base64, 'base64') });
  }
  const begins = text.match(/-----BEGIN /g)?.length ?? 0;
  if (begins !== blocks.length) throw new PemError('a PEM block is not terminated by its END line');
  return blocks;
}

export function encodePem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let lines = '';
  for (let i = 0; i < base64.length; i += 64) lines += `${base64.slice(i, i + 64)}\n`;
  return `-----BEGIN ${label}-----\n${lines}-----END ${label}-----\n`;
}

/** The DER of every CERTIFICATE block, in order; other blocks are an error (a key in a cert file is a mistake worth reporting). */
export function decodeCertificates(text: string, what: string): Buffer[] {
  const blocks = decodePem(text);
  const certs: Buffer[] = [];
  for (const block of blocks) {
    if (block.label !== 'CERTIFICATE') throw new PemError(`${what} holds a "${block.label}" block where only certificates belong`);
    certs.push(block.der);
  }
  return certs;
}
