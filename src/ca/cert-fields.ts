// The few certificate fields the CA needs as exact bytes, read straight from the DER: the
// subject (copied verbatim as each leaf's issuer, so name matching is byte-exact), the key, and
// the extensions that make a CA certificate a CA.
import { hash } from 'node:crypto';
import { DerError, TAG, childrenOf, contentOf, decodeBoolean, decodeOid, expectNode, rawOf } from './der.ts';
import { OID } from './profile.ts';

export interface CertificateExtension {
  readonly critical: boolean;
  /** The extnValue OCTET STRING's content. */
  readonly value: Buffer;
}

export interface CertificateFields {
  readonly subject: Buffer;
  readonly issuer: Buffer;
  readonly subjectPublicKeyInfo: Buffer;
  readonly extensions: ReadonlyMap<string, CertificateExtension>;
}

export function readCertificateFields(der: Uint8Array): CertificateFields {
  const cert = expectNode(der, 0, TAG.SEQUENCE, 'Certificate');
  if (cert.end !== der.length) throw new DerError('trailing data after the certificate');
  const [tbs] = childrenOf(der, cert);
  if (!tbs) throw new DerError('certificate has no tbsCertificate');
  const fields = childrenOf(der, tbs);
  // Version [0] is optional (absent for v1); every other field has a fixed position after it.
  const base = fields[0]?.tag === 0xa0 ? 1 : 0;
  const issuer = fields[base + 2];
  const subject = fields[base + 4];
  const spki = fields[base + 5];
  if (!issuer || !subject || !spki) throw new DerError('tbsCertificate is missing fields');
  const extensions = new Map<string, CertificateExtension>();
  const extensionsField = fields.slice(base + 6).find((f) => f.tag === 0xa3);
  if (extensionsField) {
    const [list] = childrenOf(der, extensionsField);
    if (!list) throw new DerError('empty extensions field');
    for (const extension of childrenOf(der, list)) {
      const parts = childrenOf(der, extension);
      const id = decodeOid(contentOf(der, parts[0]));
      const critical = parts.length === 3 ? decodeBoolean(contentOf(der, parts[1])) : false;
      if (extensions.has(id)) throw new DerError(`extension ${id} appears twice`);
      extensions.set(id, { critical, value: contentOf(der, parts[parts.length - 1]) });
    }
  }
  return { subject: rawOf(der, subject), issuer: rawOf(der, issuer), subjectPublicKeyInfo: rawOf(der, spki), extensions };
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bits. */
export function keyIdentifier(subjectPublicKeyInfo: Uint8Array): Buffer {
  const spki = expectNode(subjectPublicKeyInfo, 0, TAG.SEQUENCE, 'SubjectPublicKeyInfo');
  const [, key] = childrenOf(subjectPublicKeyInfo, spki);
  if (!key || key.tag !== TAG.BIT_STRING) throw new DerError('SubjectPublicKeyInfo has no key BIT STRING');
  // One-shot hash(): once per signed leaf, cheaper than createHash().update().digest().
  return hash('sha1', contentOf(subjectPublicKeyInfo, key).subarray(1), 'buffer');
}

/** The certificate's SKI, or one computed from its key when the extension is absent. */
export function subjectKeyIdentifier(fields: CertificateFields): Buffer {
  const ski = fields.extensions.get(OID.subjectKeyIdentifier);
  if (!ski) return keyIdentifier(fields.subjectPublicKeyInfo);
  const node = expectNode(ski.value, 0, TAG.OCTET_STRING, 'subjectKeyIdentifier');
  return Buffer.from(contentOf(ski.value, node));
}

export interface BasicConstraints {
  readonly ca: boolean;
  readonly pathLength?: number;
}

export function basicConstraints(fields: CertificateFields): BasicConstraints | undefined {
  const ext = fields.extensions.get(OID.basicConstraints);
  if (!ext) return undefined;
  const seq = expectNode(ext.value, 0, TAG.SEQUENCE, 'basicConstraints');
  let ca = false;
  let pathLength: number | undefined;
  for (const part of childrenOf(ext.value, seq)) {
    if (part.tag === TAG.BOOLEAN) ca = decodeBoolean(contentOf(ext.value, part));
    else if (part.tag === TAG.INTEGER) pathLength = contentOf(ext.value, part).reduce((n, b) => n * 256 + b, 0);
  }
  return pathLength === undefined ? { ca } : { ca, pathLength };
}

/** The set KeyUsage bit numbers, or undefined when the extension is absent (meaning: unrestricted). */
export function keyUsageBits(fields: CertificateFields): Set<number> | undefined {
  const ext = fields.extensions.get(OID.keyUsage);
  if (!ext) return undefined;
  const node = expectNode(ext.value, 0, TAG.BIT_STRING, 'keyUsage');
  const content = contentOf(ext.value, node);
  const bits = new Set<number>();
  for (let i = 1; i < content.length; i++) {
    for (let bit = 0; bit < 8; bit++) if (content[i] & (0x80 >> bit)) bits.add((i - 1) * 8 + bit);
  }
  return bits;
}
