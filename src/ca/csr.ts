// CSR checks for workload certificates: size cap before any parsing, strict PKCS#10 structure
// (RFC 2986), key policy, proof of possession (the self-signature), and "names no identity but
// the caller's". Parsing is our own strict DER reader plus Node's native key parsing and
// signature check: a tenth of the cost of a general ASN.1 library, and nothing left to guess.
import { createPublicKey, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { CaError } from './errors.ts';
import { DerError, TAG, childrenOf, contentOf, decodeBoolean, decodeOid, expectNode, rawOf, readNode } from './der.ts';
import type { DerNode } from './der.ts';
import { OID } from './profile.ts';
import type { LeafKeyType } from './profile.ts';
import { PemError, decodePem, decodeSinglePem } from './pem.ts';

/** Far above any real CSR (P-256 < 1 KiB, RSA 4096 < 2 KiB); far below what makes parsing costly. */
export const MAX_CSR_PEM_BYTES = 16 * 1024;
const MAX_RSA_BITS = 8192;

export type SanType = 'uri' | 'dns' | 'ip' | 'email' | 'otherName' | 'directoryName' | 'registeredID' | 'x400Address' | 'ediPartyName';

export interface CsrSan {
  readonly type: SanType;
  readonly value: string;
}

export interface CheckedCsr {
  /**
   * The CSR's DER SubjectPublicKeyInfo, copied as is into the certificate. Node parsed it and the
   * signature verified with it, so it is a well-formed key; re-exporting would cost ~75 µs for nothing.
   */
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
  readonly keyType: LeafKeyType;
  /** Curve size or RSA modulus length. */
  readonly keyBits: number;
  /** Every subjectAltName entry the CSR asks for. */
  readonly sans: readonly CsrSan[];
}

interface SignatureAlgorithm {
  readonly hash: 'sha256' | 'sha384' | 'sha512';
  readonly keyFamily: 'ec' | 'rsa';
}

const SIGNATURE_ALGORITHMS: Readonly<Record<string, SignatureAlgorithm>> = {
  [OID.ecdsaWithSha256]: { hash: 'sha256', keyFamily: 'ec' },
  [OID.ecdsaWithSha384]: { hash: 'sha384', keyFamily: 'ec' },
  [OID.ecdsaWithSha512]: { hash: 'sha512', keyFamily: 'ec' },
  [OID.sha256WithRsa]: { hash: 'sha256', keyFamily: 'rsa' },
  [OID.sha384WithRsa]: { hash: 'sha384', keyFamily: 'rsa' },
  [OID.sha512WithRsa]: { hash: 'sha512', keyFamily: 'rsa' },
};

const CURVES: Readonly<Record<string, { keyType: LeafKeyType; bits: number } | undefined>> = {
  prime256v1: { keyType: 'ec-p256', bits: 256 },
  secp384r1: { keyType: 'ec-p384', bits: 384 },
};

const CURVE_NAMES: Readonly<Record<string, string>> = { prime192v1: 'P-192', secp224r1: 'P-224', secp521r1: 'P-521', secp256k1: 'secp256k1' };

/**
 * Parses a PEM CSR and checks everything but the identity: size, structure, key policy and the
 * self-signature. Throws CaError `csr_too_large`, `bad_csr` or `weak_key`.
 */
export function parseCsr(pem: string): CheckedCsr {
  const size = Buffer.byteLength(pem, 'utf8');
  if (size > MAX_CSR_PEM_BYTES) throw new CaError('csr_too_large', `CSR is ${size} bytes; the limit is ${MAX_CSR_PEM_BYTES}`);
  const der = csrDer(pem);
  try {
    return parseCsrDer(der);
  } catch (err) {
    if (err instanceof DerError) throw new CaError('bad_csr', `CSR is not a valid PKCS#10 request: ${err.message}`);
    throw err;
  }
}

/** Throws `identity_mismatch` unless every SAN in the CSR is a URI equal to `spiffeId` (none at all is fine). */
export function checkCsrIdentity(csr: CheckedCsr, spiffeId: string): void {
  for (const san of csr.sans) {
    if (san.type === 'uri' && san.value === spiffeId) continue;
    throw new CaError(
      'identity_mismatch',
      `CSR asks for ${san.type} SAN ${shorten(san.value)}, but the caller is ${spiffeId}; a CSR may name only the caller's SPIFFE ID`,
    );
  }
}

/** parseCsr + checkCsrIdentity: the whole check the CA runs on a request. */
export function checkCsr(pem: string, spiffeId: string): CheckedCsr {
  const csr = parseCsr(pem);
  checkCsrIdentity(csr, spiffeId);
  return csr;
}

function csrDer(pem: string): Buffer {
  // What every encoder writes, without decodePem's regular expressions; anything else goes the long way.
  const der = decodeSinglePem(pem, 'CERTIFICATE REQUEST');
  if (der !== undefined) return der;
  let blocks;
  try {
    blocks = decodePem(pem);
  } catch (err) {
    if (err instanceof PemError) throw new CaError('bad_csr', `CSR is not valid PEM: ${err.message}`);
    throw err;
  }
  const requests = blocks.filter((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
  if (blocks.length === 0) throw new CaError('bad_csr', 'CSR is not PEM: no "-----BEGIN CERTIFICATE REQUEST-----" block found');
  if (requests.length !== 1 || blocks.length !== 1) {
    throw new CaError('bad_csr', `expected exactly one CERTIFICATE REQUEST PEM block, found ${blocks.map((b) => b.label).join(', ')}`);
  }
  return requests[0].der;
}

function parseCsrDer(der: Buffer): CheckedCsr {
  // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
  const outer = expectNode(der, 0, TAG.SEQUENCE, 'CertificationRequest');
  if (outer.end !== der.length) throw new DerError(`${der.length - outer.end} bytes of trailing data after the request`);
  const [infoNode, algNode, sigNode, ...extra] = childrenOf(der, outer);
  if (!infoNode || !algNode || !sigNode || extra.length > 0) throw new DerError('CertificationRequest must have exactly three fields');
  expectTag(infoNode, TAG.SEQUENCE, 'certificationRequestInfo');
  expectTag(algNode, TAG.SEQUENCE, 'signatureAlgorithm');
  expectTag(sigNode, TAG.BIT_STRING, 'signature');

  // CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name, subjectPKInfo, attributes [0] }
  const infoFields = childrenOf(der, infoNode);
  const [versionNode, subjectNode, spkiNode, attributesNode, ...infoExtra] = infoFields;
  if (!versionNode || !subjectNode || !spkiNode || infoExtra.length > 0) throw new DerError('certificationRequestInfo has the wrong number of fields');
  expectTag(versionNode, TAG.INTEGER, 'version');
  const version = contentOf(der, versionNode);
  if (version.length !== 1 || version[0] !== 0) throw new DerError('version must be 0 (v1)');
  expectTag(subjectNode, TAG.SEQUENCE, 'subject');
  expectTag(spkiNode, TAG.SEQUENCE, 'subjectPKInfo');
  // The attributes field is required by RFC 2986, but some tools leave it out when empty.
  if (attributesNode) expectTag(attributesNode, 0xa0, 'attributes');

  const spki = Buffer.from(rawOf(der, spkiNode));
  const { publicKey, keyType, keyBits } = checkKey(spki);
  const algorithm = signatureAlgorithm(der, algNode);
  if (algorithm.keyFamily !== (keyType === 'rsa' ? 'rsa' : 'ec')) {
    throw new CaError('bad_csr', `CSR is signed with ${algorithm.keyFamily.toUpperCase()} but its key is ${keyType === 'rsa' ? 'RSA' : 'EC'}`);
  }
  const sigContent = contentOf(der, sigNode);
  if (sigContent.length < 2 || sigContent[0] !== 0) throw new DerError('signature BIT STRING must have whole bytes');
  let valid: boolean;
  try {
    valid = verify(algorithm.hash, rawOf(der, infoNode), publicKey, sigContent.subarray(1));
  } catch {
    valid = false; // a malformed ECDSA signature throws instead of failing
  }
  if (!valid) throw new CaError('bad_csr', 'CSR signature does not verify with its own public key (no proof of possession)');

  const sans = attributesNode ? requestedSans(der, attributesNode) : [];
  return { spki, publicKey, keyType, keyBits, sans };
}

function expectTag(node: DerNode, tag: number, what: string): void {
  if (node.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${node.tag.toString(16)}`);
}

/**
 * The whole SubjectPublicKeyInfo up to the point, for the two accepted curves with an uncompressed
 * point: SEQUENCE { SEQUENCE { id-ecPublicKey, namedCurve }, BIT STRING { 0 unused bits, 0x04 … } }.
 * Almost every CSR is one of these; knowing the curve from the bytes spares asking OpenSSL for it.
 */
const EC_SPKI_PREFIXES: ReadonlyArray<{ prefix: Buffer; length: number; keyType: LeafKeyType; bits: number }> = [
  { prefix: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'), length: 91, keyType: 'ec-p256', bits: 256 },
  { prefix: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex'), length: 120, keyType: 'ec-p384', bits: 384 },
];

/** The accepted curve whose uncompressed-point SPKI layout `spki` has, if any (pure; the point itself is not checked). */
export function knownEcSpki(spki: Uint8Array): { keyType: LeafKeyType; bits: number } | undefined {
  for (const known of EC_SPKI_PREFIXES) {
    if (spki.length !== known.length) continue;
    let i = 0;
    while (i < known.prefix.length && spki[i] === known.prefix[i]) i++;
    if (i === known.prefix.length && spki[i] === 0x04) return { keyType: known.keyType, bits: known.bits };
  }
  return undefined;
}

/**
 * The same SubjectPublicKeyInfo as a PEM string. Node imports a PEM string for a third of the cost of
 * the same bytes given as `{format: 'der', type: 'spki'}`: for an options object (or a Buffer) it
 * first probes whether the argument is a KeyObject or CryptoKey, and each failed probe builds a
 * TypeError with a stack trace (Node 24). OpenSSL parses and checks the key (point on the curve)
 * the same way either way.
 */
function spkiPem(spki: Buffer): string {
  return `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----\n`;
}

function checkKey(spki: Buffer): { publicKey: KeyObject; keyType: LeafKeyType; keyBits: number } {
  const known = knownEcSpki(spki);
  if (known) {
    try {
      return { publicKey: createPublicKey(spkiPem(spki)), keyType: known.keyType, keyBits: known.bits };
    } catch {
      // Not a valid key after all (e.g. a point off the curve): the general path below says why.
    }
  }
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new CaError('bad_csr', `CSR public key cannot be parsed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const type = publicKey.asymmetricKeyType;
  const details = publicKey.asymmetricKeyDetails ?? {};
  if (type === 'ec') {
    const curve = details.namedCurve ?? 'explicit parameters';
    const accepted = CURVES[curve];
    if (!accepted) throw new CaError('weak_key', `EC curve ${CURVE_NAMES[curve] ?? curve} is not accepted; use P-256 or P-384`);
    return { publicKey, ...accepted, keyBits: accepted.bits };
  }
  if (type === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < 2048) throw new CaError('weak_key', `RSA key of ${bits} bits is too weak; use at least 2048 bits`);
    if (bits > MAX_RSA_BITS) throw new CaError('weak_key', `RSA key of ${bits} bits is not accepted; the maximum is ${MAX_RSA_BITS}`);
    const exponent = details.publicExponent ?? 0n;
    if (exponent < 3n || exponent % 2n === 0n) throw new CaError('weak_key', `RSA public exponent ${exponent} is not accepted`);
    return { publicKey, keyType: 'rsa', keyBits: bits };
  }
  throw new CaError('weak_key', `key type ${type ?? 'unknown'} is not accepted; use ECDSA P-256/P-384 or RSA >= 2048 bits`);
}

function signatureAlgorithm(der: Buffer, algNode: DerNode): SignatureAlgorithm {
  const [oidNode, params, ...extra] = childrenOf(der, algNode);
  if (!oidNode || extra.length > 0) throw new DerError('signatureAlgorithm must be an OID and optional parameters');
  expectTag(oidNode, TAG.OID, 'signatureAlgorithm');
  const oid = decodeOid(contentOf(der, oidNode));
  if (oid === OID.sha1WithRsa || oid === OID.ecdsaWithSha1) throw new CaError('bad_csr', 'CSR is signed with SHA-1, which is not accepted');
  if (oid === OID.rsaPss) throw new CaError('bad_csr', 'RSASSA-PSS signed CSRs are not supported; sign with ECDSA or RSA PKCS#1 v1.5');
  const algorithm = SIGNATURE_ALGORITHMS[oid];
  if (!algorithm) throw new CaError('bad_csr', `CSR signature algorithm ${oid} is not supported`);
  // ECDSA takes no parameters (RFC 5758); PKCS#1 v1.5 takes NULL, which some encoders omit.
  if (params && !(algorithm.keyFamily === 'rsa' && params.tag === TAG.NULL && params.end === params.contentStart)) {
    throw new DerError(`signatureAlgorithm ${oid} has unexpected parameters`);
  }
  return algorithm;
}

/** Every GeneralName in every subjectAltName extension the CSR requests. */
function requestedSans(der: Buffer, attributesNode: DerNode): CsrSan[] {
  const sans: CsrSan[] = [];
  for (const attribute of childrenOf(der, attributesNode)) {
    expectTag(attribute, TAG.SEQUENCE, 'attribute');
    const [typeNode, valuesNode, ...extra] = childrenOf(der, attribute);
    if (!typeNode || !valuesNode || extra.length > 0) throw new DerError('attribute must be a type and a set of values');
    expectTag(typeNode, TAG.OID, 'attribute type');
    expectTag(valuesNode, TAG.SET, 'attribute values');
    const type = decodeOid(contentOf(der, typeNode));
    if (type !== OID.extensionRequest && type !== OID.msExtensionRequest) continue;
    for (const extensions of childrenOf(der, valuesNode)) {
      expectTag(extensions, TAG.SEQUENCE, 'extensions');
      for (const extension of childrenOf(der, extensions)) {
        expectTag(extension, TAG.SEQUENCE, 'extension');
        const fields = childrenOf(der, extension);
        const [idNode] = fields;
        const valueNode = fields[fields.length - 1];
        if (!idNode || !valueNode || fields.length < 2 || fields.length > 3) throw new DerError('extension must be an OID, optional critical flag and a value');
        expectTag(idNode, TAG.OID, 'extension id');
        if (fields.length === 3) {
          expectTag(fields[1], TAG.BOOLEAN, 'extension critical flag');
          decodeBoolean(contentOf(der, fields[1]));
        }
        expectTag(valueNode, TAG.OCTET_STRING, 'extension value');
        if (decodeOid(contentOf(der, idNode)) !== OID.subjectAltName) continue;
        sans.push(...generalNames(contentOf(der, valueNode)));
      }
    }
  }
  return sans;
}

function generalNames(value: Buffer): CsrSan[] {
  const outer = expectNode(value, 0, TAG.SEQUENCE, 'subjectAltName');
  if (outer.end !== value.length) throw new DerError('trailing data after subjectAltName');
  return childrenOf(value, outer).map((name): CsrSan => {
    const content = contentOf(value, name);
    switch (name.tag) {
      case 0x81:
        return { type: 'email', value: content.toString('latin1') };
      case 0x82:
        return { type: 'dns', value: content.toString('latin1') };
      case 0x86:
        return { type: 'uri', value: content.toString('latin1') };
      case 0x87:
        return { type: 'ip', value: formatIp(content) };
      case 0x88:
        return { type: 'registeredID', value: decodeOid(content) };
      case 0xa0: {
        const typeId = readNode(value, name.contentStart, name.end);
        return { type: 'otherName', value: typeId.tag === TAG.OID ? decodeOid(contentOf(value, typeId)) : '(malformed)' };
      }
      case 0xa3:
        return { type: 'x400Address', value: '(x400 address)' };
      case 0xa4:
        return { type: 'directoryName', value: '(directory name)' };
      case 0xa5:
        return { type: 'ediPartyName', value: '(EDI party name)' };
      default:
        throw new DerError(`subjectAltName holds an unknown name type 0x${name.tag.toString(16)}`);
    }
  });
}

function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length === 16) return (bytes.toString('hex').match(/.{4}/g) ?? []).join(':');
  return `(${bytes.length}-byte address)`;
}

function shorten(value: string): string {
  return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}…` : value);
}
