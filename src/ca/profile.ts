// The workload leaf profile, shared by the fast and the generic signer so both issue the same
// certificate: OIDs, key usage per key type, serials, TTL policy and the validity window.
import { randomFillSync } from 'node:crypto';
import { CaError } from './errors.ts';

export const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  sha1WithRsa: '1.2.840.113549.1.1.5',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sha384WithRsa: '1.2.840.113549.1.1.12',
  sha512WithRsa: '1.2.840.113549.1.1.13',
  rsaPss: '1.2.840.113549.1.1.10',
  ecdsaWithSha1: '1.2.840.10045.4.1',
  extensionRequest: '1.2.840.113549.1.9.14',
  msExtensionRequest: '1.3.6.1.4.1.311.2.1.14',
} as const;

/** The leaf key types the CA accepts in a CSR. */
export type LeafKeyType = 'ec-p256' | 'ec-p384' | 'rsa';

/** KeyUsage bit numbers (RFC 5280 4.2.1.3). */
export const KEY_USAGE_BIT = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

/** digitalSignature, plus keyEncipherment for RSA keys (RSA key transport in TLS 1.2). */
export function leafKeyUsageBits(keyType: LeafKeyType): number[] {
  return keyType === 'rsa' ? [KEY_USAGE_BIT.digitalSignature, KEY_USAGE_BIT.keyEncipherment] : [KEY_USAGE_BIT.digitalSignature];
}

export const SERIAL_BYTES = 16;

/**
 * A positive serial of fixed width with 126 random bits: the top byte is 0b01xxxxxx, so the DER
 * INTEGER needs neither a sign byte nor trimming and every leaf's serial has the same length.
 */
export function randomSerial(): Buffer {
  if (serialPoolOffset + SERIAL_BYTES > serialPool.length) {
    randomFillSync(serialPool);
    serialPoolOffset = 0;
  }
  // A copy, so a caller holding the serial never sees the pool refilled under it.
  const serial = Buffer.from(serialPool.subarray(serialPoolOffset, serialPoolOffset + SERIAL_BYTES));
  serialPoolOffset += SERIAL_BYTES;
  serial[0] = 0x40 | (serial[0] & 0x3f);
  return serial;
}

// One CSPRNG call per 256 serials instead of one per certificate (it showed up at ~7 % of a signing).
const serialPool = Buffer.alloc(SERIAL_BYTES * 256);
let serialPoolOffset = serialPool.length;

export interface TtlPolicy {
  readonly defaultSeconds: number;
  readonly maxSeconds: number;
}

export const DEFAULT_TTL_POLICY: TtlPolicy = { defaultSeconds: 3600, maxSeconds: 86_400 };

/** How far notBefore is backdated so a peer whose clock is a little behind accepts a fresh cert. */
export const LEAF_BACKDATE_SECONDS = 60;

/**
 * The TTL to issue for a requested ttlSeconds (a JSON value, unchecked). Absent → default.
 * Over the maximum is an error by default, as in Istio: a client that asks for 48 h learns at once
 * rather than discovering a 24 h cert later. `overMax: 'clamp'` is for the Kubernetes CSR API,
 * whose `expirationSeconds` a signer may shorten by contract.
 */
export function resolveTtl(requested: unknown, policy: TtlPolicy = DEFAULT_TTL_POLICY, overMax: 'error' | 'clamp' = 'error'): number {
  if (requested === undefined || requested === null) return Math.min(policy.defaultSeconds, policy.maxSeconds);
  if (typeof requested !== 'number' || !Number.isSafeInteger(requested) || requested < 1) {
    throw new CaError('bad_ttl', `ttlSeconds must be a whole number of seconds from 1 to ${policy.maxSeconds}, got ${JSON.stringify(requested)}`);
  }
  if (requested > policy.maxSeconds) {
    if (overMax === 'clamp') return policy.maxSeconds;
    throw new CaError('bad_ttl', `ttlSeconds ${requested} is over the maximum of ${policy.maxSeconds}`);
  }
  return requested;
}

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * The leaf's validity: backdated notBefore (never before the issuer's), notAfter = now + ttl but
 * never past `issuerWindow.notAfter` (the earliest expiry in the signing chain). Whole seconds,
 * as X.509 times carry no fractions.
 */
export function leafValidity(now: Date, ttlSeconds: number, issuerWindow: Validity, backdateSeconds = LEAF_BACKDATE_SECONDS): Validity {
  const nowSeconds = Math.floor(now.getTime() / 1000);
  const issuerFrom = Math.ceil(issuerWindow.notBefore.getTime() / 1000);
  const issuerUntil = Math.floor(issuerWindow.notAfter.getTime() / 1000);
  if (nowSeconds < issuerFrom) {
    throw new CaError('ca_expired', `the signing certificate is not valid until ${issuerWindow.notBefore.toISOString()}`);
  }
  if (nowSeconds >= issuerUntil) {
    throw new CaError('ca_expired', `the signing chain expired at ${issuerWindow.notAfter.toISOString()}`);
  }
  const notBefore = Math.max(nowSeconds - backdateSeconds, issuerFrom);
  const notAfter = Math.min(nowSeconds + ttlSeconds, issuerUntil);
  return { notBefore: new Date(notBefore * 1000), notAfter: new Date(notAfter * 1000) };
}
