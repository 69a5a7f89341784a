// CA material in Istio's `cacerts` layout (also the data of Secret `cinch-ca`), checked for
// consistency before anything is signed with it. Every failure names the check and the file.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { CaMaterialError } from './errors.ts';
import { DerError } from './der.ts';
import { basicConstraints, keyUsageBits, readCertificateFields, subjectKeyIdentifier } from './cert-fields.ts';
import type { CertificateFields } from './cert-fields.ts';
import { KEY_USAGE_BIT } from './profile.ts';
import type { Validity } from './profile.ts';
import { PemError, decodePem, encodePem } from './pem.ts';

export const CA_CERT_FILE = 'ca-cert.pem';
export const CA_KEY_FILE = 'ca-key.pem';
export const ROOT_CERT_FILE = 'root-cert.pem';
export const CERT_CHAIN_FILE = 'cert-chain.pem';
export const CA_FILE_NAMES = [CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE, CERT_CHAIN_FILE] as const;
export type CaFileName = (typeof CA_FILE_NAMES)[number];

/** The four PEM files, keyed by file name: the same shape as the Secret's (decoded) data. */
export type CaFiles = Readonly<Record<CaFileName, string>>;

export type CaKeyType = 'ec-p256' | 'ec-p384' | 'rsa';

export interface CaMaterial {
  readonly files: CaFiles;
  readonly signingKey: KeyObject;
  readonly keyType: CaKeyType;
  /** The signing certificate's subject, byte for byte: each leaf's issuer. */
  readonly subject: Buffer;
  /** The signing certificate's key identifier: each leaf's AKI. */
  readonly subjectKeyId: Buffer;
  readonly signingCert: X509Certificate;
  /** Signing cert, intermediates, root: DER, in the order they follow a leaf. */
  readonly chain: readonly Buffer[];
  /** The same as `chain`, PEM. */
  readonly chainPems: readonly string[];
  /** Every root in root-cert.pem, PEM: the trust bundle. */
  readonly trustBundle: readonly string[];
  /** The window in which every certificate of the chain is valid; leaves never outlive it. */
  readonly validity: Validity;
  readonly signingCertNotAfter: Date;
  readonly rootNotAfter: Date;
}

/** The Secret's data (already base64-decoded) as CaFiles; throws `incomplete` if a key is missing. */
export function fromSecretData(data: Readonly<Record<string, string | undefined>>): CaFiles {
  const missing = CA_FILE_NAMES.filter((name) => typeof data[name] !== 'string');
  if (missing.length > 0) throw new CaMaterialError('incomplete', `incomplete CA bundle: missing ${missing.join(', ')}`);
  return {
    [CA_CERT_FILE]: data[CA_CERT_FILE]!,
    [CA_KEY_FILE]: data[CA_KEY_FILE]!,
    [ROOT_CERT_FILE]: data[ROOT_CERT_FILE]!,
    [CERT_CHAIN_FILE]: data[CERT_CHAIN_FILE]!,
  };
}

/** The Secret's data (to be base64-encoded by the caller): exactly the four files. */
export function toSecretData(files: CaFiles): Record<string, string> {
  return Object.fromEntries(CA_FILE_NAMES.map((name) => [name, files[name]]));
}

interface ParsedCert {
  readonly der: Buffer;
  readonly x509: X509Certificate;
  readonly fields: CertificateFields;
  readonly where: string;
}

/**
 * Checks the material and prepares it for signing. `cert-chain.pem` may be empty when the signing
 * cert is itself a root (Istio's self-signed layout); otherwise it starts with the signing cert and
 * leads up to, or just below, a root in `root-cert.pem`. Throws CaMaterialError naming the failed check.
 */
export function loadCaMaterial(data: Readonly<Record<string, string | undefined>>, now: Date = new Date()): CaMaterial {
  const files = fromSecretData(data);
  const empty = ([CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE] as const).filter((name) => files[name].trim() === '');
  if (empty.length > 0) throw new CaMaterialError('incomplete', `incomplete CA bundle: ${empty.join(', ')} ${empty.length > 1 ? 'are' : 'is'} empty`);

  const [signing, ...extraSigning] = parseCerts(files[CA_CERT_FILE], CA_CERT_FILE);
  if (!signing || extraSigning.length > 0) {
    throw new CaMaterialError('unparsable', `${CA_CERT_FILE} must hold exactly one certificate, found ${extraSigning.length + (signing ? 1 : 0)}`);
  }
  const roots = parseCerts(files[ROOT_CERT_FILE], ROOT_CERT_FILE);
  if (roots.length === 0) throw new CaMaterialError('unparsable', `${ROOT_CERT_FILE} holds no certificate`);
  const listedChain = parseCerts(files[CERT_CHAIN_FILE], CERT_CHAIN_FILE);
  const signingKey = parseKey(files[CA_KEY_FILE]);
  const keyType = caKeyType(signingKey);

  if (!signing.x509.checkPrivateKey(signingKey)) {
    throw new CaMaterialError('key_mismatch', `${CA_KEY_FILE} does not match the certificate in ${CA_CERT_FILE} (${describe(signing)})`);
  }
  requireCa(signing);
  if (!isCaCertSigner(signing.fields)) {
    throw new CaMaterialError('not_ca', `${CA_CERT_FILE} (${describe(signing)}) has a KeyUsage without keyCertSign, so it may not sign certificates`);
  }
  for (const root of roots) requireCa(root);

  if (listedChain.length > 0 && !listedChain[0].der.equals(signing.der)) {
    throw new CaMaterialError('chain_broken', `${CERT_CHAIN_FILE} must start with the certificate in ${CA_CERT_FILE}, but starts with ${describe(listedChain[0])}`);
  }
  // The signing cert keeps its own file name in messages, wherever the chain lists it.
  const chain = [signing, ...listedChain.slice(1)];
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i];
    const parent = chain[i + 1];
    requireCa(parent);
    if (!issued(parent, child)) throw new CaMaterialError('chain_broken', `${child.where} (${describe(child)}) is not signed by the next one, ${parent.where} (${describe(parent)})`);
  }

  const top = chain[chain.length - 1];
  if (issued(top, top)) {
    if (!roots.some((root) => root.der.equals(top.der))) {
      throw new CaMaterialError('untrusted_root', `the chain ends at the root ${describe(top)}, which is not in ${ROOT_CERT_FILE}`);
    }
  } else {
    const root = roots.find((candidate) => issued(candidate, top));
    if (!root) throw new CaMaterialError('untrusted_root', `no root in ${ROOT_CERT_FILE} issued ${top.where} (${describe(top)})`);
    chain.push(root);
  }
  checkPathLengths(chain);

  for (const cert of chain) {
    const from = cert.x509.validFromDate;
    const to = cert.x509.validToDate;
    if (now < from) throw new CaMaterialError('not_yet_valid', `${cert.where} (${describe(cert)}) is not valid until ${from.toISOString()}`);
    if (now >= to) throw new CaMaterialError('expired', `${cert.where} (${describe(cert)}) expired at ${to.toISOString()}`);
  }

  const notBefore = new Date(Math.max(...chain.map((c) => c.x509.validFromDate.getTime())));
  const notAfter = new Date(Math.min(...chain.map((c) => c.x509.validToDate.getTime())));
  const chainDer = chain.map((c) => c.der);
  return {
    files,
    signingKey,
    keyType,
    subject: signing.fields.subject,
    subjectKeyId: subjectKeyIdentifier(signing.fields),
    signingCert: signing.x509,
    chain: chainDer,
    chainPems: chainDer.map((der) => encodePem('CERTIFICATE', der)),
    trustBundle: roots.map((root) => encodePem('CERTIFICATE', root.der)),
    validity: { notBefore, notAfter },
    signingCertNotAfter: signing.x509.validToDate,
    rootNotAfter: chain[chain.length - 1].x509.validToDate,
  };
}

function parseCerts(pem: string, file: string): ParsedCert[] {
  let blocks;
  try {
    blocks = decodePem(pem);
  } catch (err) {
    if (err instanceof PemError) throw new CaMaterialError('unparsable', `${file}: ${err.message}`);
    throw err;
  }
  return blocks.map((block, index): ParsedCert => {
    const where = blocks.length > 1 ? `${file} #${index + 1}` : file;
    if (block.label !== 'CERTIFICATE') throw new CaMaterialError('unparsable', `${where} is a "${block.label}" block, not a certificate`);
    try {
      return { der: block.der, x509: new X509Certificate(block.der), fields: readCertificateFields(block.der), where };
    } catch (err) {
      if (err instanceof DerError || err instanceof Error) throw new CaMaterialError('unparsable', `${where} is not a valid certificate: ${err.message}`);
      throw err;
    }
  });
}

function parseKey(pem: string): KeyObject {
  const labels = (() => {
    try {
      return decodePem(pem).map((b) => b.label);
    } catch (err) {
      throw new CaMaterialError('unparsable', `${CA_KEY_FILE}: ${err instanceof Error ? err.message : String(err)}`);
    }
  })();
  if (labels.length !== 1 || !labels[0].endsWith('PRIVATE KEY')) {
    throw new CaMaterialError('unparsable', `${CA_KEY_FILE} must hold exactly one private key, found ${labels.length === 0 ? 'none' : labels.join(', ')}`);
  }
  if (labels[0] === 'ENCRYPTED PRIVATE KEY') throw new CaMaterialError('unparsable', `${CA_KEY_FILE} is encrypted; the CA needs an unencrypted key`);
  try {
    return createPrivateKey(pem);
  } catch (err) {
    // Node's messages describe the parse failure, never the key material.
    throw new CaMaterialError('unparsable', `${CA_KEY_FILE} is not a valid private key: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The fast signer supports exactly these issuer keys (ECDSA P-256/P-384 with SHA-256/384, RSA with SHA-256). */
function caKeyType(key: KeyObject): CaKeyType {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') return 'ec-p256';
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'secp384r1') return 'ec-p384';
  if (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048) return 'rsa';
  const shown = key.asymmetricKeyType === 'ec' ? `EC ${details.namedCurve ?? 'explicit curve'}` : `${key.asymmetricKeyType ?? 'unknown'}${details.modulusLength ? ` ${details.modulusLength} bits` : ''}`;
  throw new CaMaterialError('unsupported_key', `${CA_KEY_FILE} is a ${shown} key; the CA signs with ECDSA P-256, P-384 or RSA >= 2048 only`);
}

function requireCa(cert: ParsedCert): void {
  if (!basicConstraints(cert.fields)?.ca) throw new CaMaterialError('not_ca', `${cert.where} (${describe(cert)}) is not a CA certificate (BasicConstraints CA:TRUE is missing)`);
}

function isCaCertSigner(fields: CertificateFields): boolean {
  const bits = keyUsageBits(fields);
  return bits === undefined || bits.has(KEY_USAGE_BIT.keyCertSign);
}

function issued(issuer: ParsedCert, subject: ParsedCert): boolean {
  // checkIssued matches names as RFC 5280 does (and AKI/SKI); verify checks the signature itself.
  return subject.x509.checkIssued(issuer.x509) && subject.x509.verify(issuer.x509.publicKey);
}

/** pathLenConstraint counts the CA certificates allowed below a CA (the signing cert included). */
function checkPathLengths(chain: readonly ParsedCert[]): void {
  chain.forEach((cert, index) => {
    const limit = basicConstraints(cert.fields)?.pathLength;
    if (limit !== undefined && index > limit) {
      throw new CaMaterialError('chain_broken', `${cert.where} (${describe(cert)}) allows ${limit} CA certificate(s) below it, but the chain has ${index}`);
    }
  });
}

function describe(cert: ParsedCert): string {
  // Node reports an empty subject as undefined, despite its typing.
  const subject = (cert.x509.subject as string | undefined)?.replace(/\n/g, ', ') ?? '';
  return subject === '' ? 'empty subject' : subject;
}
