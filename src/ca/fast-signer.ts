// Fast leaf signing: everything in the workload profile that does not depend on the request is
// DER-encoded once per issuer; per certificate only the serial, validity, key, SKI and SPIFFE ID
// are encoded, and the TBS is signed with Node's synchronous native crypto.sign. A general ASN.1
// library spends ~3 ms per certificate building the same bytes; this spends microseconds.
import { sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { CaError } from './errors.ts';
import type { CheckedCsr } from './csr.ts';
import type { CaKeyType, CaMaterial } from './material.ts';
import {
  TAG,
  bitString,
  boolean,
  contextConstructed,
  contextPrimitive,
  namedBits,
  nullValue,
  octetString,
  oid,
  sequence,
  time,
  unsignedInteger,
} from './der.ts';
import { encodePem } from './pem.ts';
import { keyIdentifier } from './cert-fields.ts';
import { DEFAULT_TTL_POLICY, LEAF_BACKDATE_SECONDS, OID, SERIAL_BYTES, leafKeyUsageBits, leafValidity, randomSerial, resolveTtl } from './profile.ts';
import type { LeafKeyType, TtlPolicy } from './profile.ts';
import { SpiffeIdError, parseSpiffeId } from '../identity/spiffe.ts';

export interface SignerOptions {
  readonly ttl?: TtlPolicy;
  readonly backdateSeconds?: number;
}

export interface LeafRequest {
  /** The checked CSR (only its key is used: the identity comes from the caller, never the CSR). */
  readonly csr: Pick<CheckedCsr, 'spki' | 'keyType'>;
  /** The authenticated caller's SPIFFE ID: the leaf's only SAN. */
  readonly spiffeId: string;
  /** The client's ttlSeconds, unchecked (absent → default). */
  readonly ttlSeconds?: unknown;
  /** 'clamp' shortens an over-long TTL instead of refusing it (the Kubernetes CSR API allows that). */
  readonly overMaxTtl?: 'error' | 'clamp';
  readonly now?: Date;
  /** A fixed serial (16 bytes, first byte 0x01-0x7f); only tests set it. */
  readonly serial?: Uint8Array;
}

export interface SignedLeaf {
  /** Leaf PEM, intermediates, root PEM last; each PEM ends with a newline. */
  readonly certChain: string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Hex, for logs and audit. */
  readonly serialNumber: string;
  readonly leafDer: Buffer;
}

interface SignatureProfile {
  readonly algorithmIdentifier: Buffer;
  readonly hash: 'sha256' | 'sha384';
}

/** ECDSA signs with the hash that matches the curve (RFC 5480); RSA issuers sign PKCS#1 v1.5 SHA-256. */
export function signatureProfile(keyType: CaKeyType): SignatureProfile {
  switch (keyType) {
    case 'ec-p256':
      return { algorithmIdentifier: sequence(oid(OID.ecdsaWithSha256)), hash: 'sha256' };
    case 'ec-p384':
      return { algorithmIdentifier: sequence(oid(OID.ecdsaWithSha384)), hash: 'sha384' };
    case 'rsa':
      return { algorithmIdentifier: sequence(oid(OID.sha256WithRsa), nullValue()), hash: 'sha256' };
  }
}

export function extension(id: string, critical: boolean, value: Uint8Array): Buffer {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

const VERSION_3 = contextConstructed(0, Buffer.from([TAG.INTEGER, 1, 2]));
const EMPTY_SUBJECT = sequence();
const SKI_EXTENSION_HEAD = extension(OID.subjectKeyIdentifier, false, octetString(Buffer.alloc(20))).subarray(0, -20);
const SAN_OID = oid(OID.subjectAltName);
const CRITICAL = boolean(true);

/** The leaf profile's extensions, in the order both signers emit them. */
export const LEAF_EXTENSION_ORDER = [
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.subjectAltName,
] as const;

export class FastLeafSigner {
  readonly #key: KeyObject;
  readonly #hash: 'sha256' | 'sha384';
  readonly #algorithmIdentifier: Buffer;
  readonly #issuer: Buffer;
  /** BasicConstraints + KeyUsage + EKU, per leaf key class (KeyUsage differs for RSA). */
  readonly #headExtensions: Readonly<Record<'ec' | 'rsa', Buffer>>;
  readonly #akiExtension: Buffer;
  readonly #chainPems: readonly string[];
  readonly #issuerValidity: CaMaterial['validity'];
  readonly #ttl: TtlPolicy;
  readonly #backdateSeconds: number;
  /**
   * The last leaf ID checked and its SAN extension: a caller renews with the same ID, and its
   * requests come in runs, so the check and encoding are done once per run (the ID is a pure input).
   */
  #lastLeaf: { readonly spiffeId: string; readonly sanExtension: Buffer } | undefined;
  /** The last Validity encoded: it changes once a second, and leaves are signed by the thousand. */
  #lastValidity: { readonly notBefore: number; readonly notAfter: number; readonly der: Buffer } | undefined;

  constructor(material: CaMaterial, options: SignerOptions = {}) {
    const profile = signatureProfile(material.keyType);
    this.#key = material.signingKey;
    this.#hash = profile.hash;
    this.#algorithmIdentifier = profile.algorithmIdentifier;
    this.#issuer = Buffer.from(material.subject);
    const basicConstraints = extension(OID.basicConstraints, true, sequence());
    const eku = extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth), oid(OID.clientAuth)));
    const head = (keyType: LeafKeyType): Buffer =>
      Buffer.concat([basicConstraints, extension(OID.keyUsage, true, namedBits(leafKeyUsageBits(keyType))), eku]);
    this.#headExtensions = { ec: head('ec-p256'), rsa: head('rsa') };
    this.#akiExtension = extension(OID.authorityKeyIdentifier, false, sequence(contextPrimitive(0, material.subjectKeyId)));
    this.#chainPems = material.chainPems;
    this.#issuerValidity = material.validity;
    this.#ttl = options.ttl ?? DEFAULT_TTL_POLICY;
    this.#backdateSeconds = options.backdateSeconds ?? LEAF_BACKDATE_SECONDS;
  }

  sign(request: LeafRequest): SignedLeaf {
    const sanExtension = this.#sanExtension(request.spiffeId);
    const ttlSeconds = resolveTtl(request.ttlSeconds, this.#ttl, request.overMaxTtl);
    const validity = leafValidity(request.now ?? new Date(), ttlSeconds, this.#issuerValidity, this.#backdateSeconds);
    const serial = request.serial ?? randomSerial();
    if (serial.length !== SERIAL_BYTES || serial[0] === 0 || serial[0] >= 0x80) throw new RangeError('serial must be 16 bytes with a first byte of 0x01-0x7f');
    const spki = request.csr.spki;

    const extensions = contextConstructed(
      3,
      sequence(
        this.#headExtensions[request.csr.keyType === 'rsa' ? 'rsa' : 'ec'],
        SKI_EXTENSION_HEAD,
        keyIdentifier(spki),
        this.#akiExtension,
        sanExtension,
      ),
    );
    const tbs = sequence(
      VERSION_3,
      unsignedInteger(serial),
      this.#algorithmIdentifier,
      this.#issuer,
      this.#validityDer(validity.notBefore, validity.notAfter),
      EMPTY_SUBJECT,
      spki,
      extensions,
    );
    const signature = sign(this.#hash, tbs, this.#key);
    const leafDer = sequence(tbs, this.#algorithmIdentifier, bitString(signature));
    return {
      certChain: [encodePem('CERTIFICATE', leafDer), ...this.#chainPems],
      notBefore: validity.notBefore,
      notAfter: validity.notAfter,
      serialNumber: Buffer.from(serial).toString('hex'),
      leafDer,
    };
  }

  /** Validity ::= SEQUENCE { notBefore Time, notAfter Time }. */
  #validityDer(notBefore: Date, notAfter: Date): Buffer {
    const last = this.#lastValidity;
    if (last !== undefined && last.notBefore === notBefore.getTime() && last.notAfter === notAfter.getTime()) return last.der;
    const der = sequence(time(notBefore), time(notAfter));
    this.#lastValidity = { notBefore: notBefore.getTime(), notAfter: notAfter.getTime(), der };
    return der;
  }

  /** The subjectAltName extension naming `spiffeId`, after checkedLeafId accepts it. */
  #sanExtension(spiffeId: string): Buffer {
    const last = this.#lastLeaf;
    if (last !== undefined && last.spiffeId === spiffeId) return last.sanExtension;
    checkedLeafId(spiffeId);
    // Critical because the subject is empty (RFC 5280 4.2.1.6). The ID is ASCII (checkedLeafId),
    // so its bytes are the URI's IA5String content.
    const sanExtension = sequence(SAN_OID, CRITICAL, octetString(sequence(contextPrimitive(6, Buffer.from(spiffeId, 'latin1')))));
    this.#lastLeaf = { spiffeId, sanExtension };
    return sanExtension;
  }
}

/** The leaf's SPIFFE ID must be valid and name a workload (a trust-domain-only ID is for signing certs). */
export function checkedLeafId(spiffeId: string): string {
  try {
    if (parseSpiffeId(spiffeId).path === '') throw new SpiffeIdError(`${spiffeId} has no path; a workload ID needs one`);
  } catch (err) {
    if (err instanceof SpiffeIdError) throw new CaError('bad_identity', `cannot issue for ${JSON.stringify(spiffeId)}: ${err.message}`);
    throw err;
  }
  return spiffeId;
}
