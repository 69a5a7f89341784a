// `cinch ca inspect`: what a certificate file holds, as data (for tests and -o json) and as text.
// Private keys are never read, only counted, so they can never reach the output.
import { X509Certificate } from 'node:crypto';
import { x509 } from './x509.ts';
import { basicConstraints, keyUsageBits, readCertificateFields } from './cert-fields.ts';
import { decodePem } from './pem.ts';

const DAY_MS = 86_400_000;
const KEY_USAGE_NAMES = ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment', 'keyAgreement', 'keyCertSign', 'cRLSign', 'encipherOnly', 'decipherOnly'];
const EKU_NAMES: Readonly<Record<string, string>> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
};
const SAN_PREFIX: Readonly<Record<string, string>> = { url: 'URI', dns: 'DNS', ip: 'IP', email: 'email', dn: 'DirName', id: 'RID', upn: 'UPN', guid: 'GUID' };

export interface CertificateSummary {
  readonly subject: string;
  readonly issuer: string;
  readonly serialNumber: string;
  readonly sans: readonly string[];
  /** e.g. "EC P-256", "RSA 2048". */
  readonly key: string;
  readonly signatureAlgorithm: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** Negative once expired. */
  readonly daysLeft: number;
  readonly validNow: boolean;
  readonly isCa: boolean;
  readonly pathLength?: number;
  readonly keyUsage: readonly string[];
  readonly extendedKeyUsage: readonly string[];
  readonly selfSigned: boolean;
  readonly fingerprintSha256: string;
}

export interface ChainCheck {
  readonly ok: boolean;
  readonly message: string;
}

export interface Inspection {
  readonly certificates: readonly CertificateSummary[];
  /** Present when the file holds more than one certificate. */
  readonly chain?: ChainCheck;
  /** Non-certificate PEM blocks that were skipped (e.g. a private key in a combined file). */
  readonly skippedBlocks: readonly string[];
}

export class InspectError extends Error {
  override readonly name = 'InspectError';
}

export function inspectCertificates(pemText: string, now: Date = new Date()): Inspection {
  const blocks = decodePem(pemText);
  const certBlocks = blocks.filter((b) => b.label === 'CERTIFICATE');
  const skippedBlocks = blocks.filter((b) => b.label !== 'CERTIFICATE').map((b) => b.label);
  if (certBlocks.length === 0) {
    const what = skippedBlocks.length > 0 ? `only ${skippedBlocks.join(', ')} blocks (inspect shows certificates, never keys)` : 'no PEM certificate';
    throw new InspectError(`the file holds ${what}`);
  }
  const certs = certBlocks.map((block, index) => {
    try {
      return { der: block.der, node: new X509Certificate(block.der), peculiar: new x509.X509Certificate(block.der), fields: readCertificateFields(block.der) };
    } catch (err) {
      throw new InspectError(`certificate #${index + 1} cannot be parsed: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  const certificates = certs.map(({ node, peculiar, fields }): CertificateSummary => {
    const constraints = basicConstraints(fields);
    const usage = keyUsageBits(fields);
    const san = peculiar.getExtension(x509.SubjectAlternativeNameExtension);
    const eku = peculiar.getExtension(x509.ExtendedKeyUsageExtension);
    const notAfter = node.validToDate;
    return {
      subject: oneLine(node.subject),
      issuer: oneLine(node.issuer),
      serialNumber: node.serialNumber.toLowerCase(),
      sans: san ? san.names.toJSON().map((n) => `${SAN_PREFIX[n.type] ?? n.type}:${n.value}`) : [],
      key: describeKey(node),
      signatureAlgorithm: node.signatureAlgorithm ?? node.signatureAlgorithmOid,
      notBefore: node.validFromDate.toISOString(),
      notAfter: notAfter.toISOString(),
      daysLeft: Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS),
      validNow: node.validFromDate <= now && now < notAfter,
      isCa: constraints?.ca ?? false,
      ...(constraints?.pathLength === undefined ? {} : { pathLength: constraints.pathLength }),
      keyUsage: usage ? [...usage].sort((a, b) => a - b).map((bit) => KEY_USAGE_NAMES[bit] ?? `bit${bit}`) : [],
      extendedKeyUsage: eku ? eku.usages.map((oid) => EKU_NAMES[String(oid)] ?? String(oid)) : [],
      selfSigned: node.checkIssued(node) && node.verify(node.publicKey),
      fingerprintSha256: node.fingerprint256,
    };
  });
  const chain = certs.length > 1 ? checkChain(certs.map((c) => c.node), certificates) : undefined;
  return chain ? { certificates, chain, skippedBlocks } : { certificates, skippedBlocks };
}

function checkChain(certs: readonly X509Certificate[], summaries: readonly CertificateSummary[]): ChainCheck {
  if (summaries.every((s) => s.selfSigned)) return { ok: true, message: `a bundle of ${certs.length} self-signed roots` };
  for (let i = 0; i + 1 < certs.length; i++) {
    const child = certs[i];
    const parent = certs[i + 1];
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      return { ok: false, message: `broken: #${i + 1} (${summaries[i].subject || 'empty subject'}) is not issued by #${i + 2} (${summaries[i + 1].subject})` };
    }
    if (!summaries[i + 1].isCa) return { ok: false, message: `broken: #${i + 2} (${summaries[i + 1].subject}) signs #${i + 1} but is not a CA` };
  }
  const expired = summaries.findIndex((s) => !s.validNow);
  if (expired !== -1) return { ok: false, message: `links verify, but #${expired + 1} is not valid now` };
  const top = summaries[summaries.length - 1];
  return {
    ok: true,
    message: top.selfSigned
      ? `ok: each certificate is issued by the next, ending at the self-signed root ${top.subject}`
      : `ok: each certificate is issued by the next; the root (${top.issuer}) is not in the file`,
  };
}

function describeKey(cert: X509Certificate): string {
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    const curves: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };
    return `EC ${curves[details.namedCurve ?? ''] ?? details.namedCurve ?? 'explicit curve'}`;
  }
  if (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') return `${key.asymmetricKeyType.toUpperCase()} ${details.modulusLength ?? '?'}`;
  return key.asymmetricKeyType ?? 'unknown';
}

/** Node reports an empty name as undefined, despite its typing. */
function oneLine(name: string | undefined): string {
  return (name ?? '').split('\n').join(', ');
}

export function formatInspection(inspection: Inspection, file: string): string {
  const lines: string[] = [];
  const many = inspection.certificates.length > 1;
  inspection.certificates.forEach((cert, index) => {
    if (many) lines.push(`${index > 0 ? '\n' : ''}#${index + 1}`);
    const validity =
      cert.daysLeft < 0
        ? `EXPIRED ${-cert.daysLeft} day(s) ago`
        : cert.validNow
          ? `${cert.daysLeft} day(s) left`
          : 'NOT YET VALID';
    lines.push(
      `  subject:     ${cert.subject || '(empty)'}`,
      `  issuer:      ${cert.issuer}${cert.selfSigned ? ' (self-signed)' : ''}`,
      `  SANs:        ${cert.sans.length > 0 ? cert.sans.join(', ') : '(none)'}`,
      `  key:         ${cert.key}`,
      `  signature:   ${cert.signatureAlgorithm}`,
      `  validity:    ${cert.notBefore} → ${cert.notAfter} (${validity})`,
      `  CA:          ${cert.isCa ? `yes${cert.pathLength === undefined ? '' : `, path length ${cert.pathLength}`}` : 'no'}`,
      `  key usage:   ${cert.keyUsage.join(', ') || '(any)'}`,
      `  ext. usage:  ${cert.extendedKeyUsage.join(', ') || '(any)'}`,
      `  serial:      ${cert.serialNumber}`,
      `  sha256:      ${cert.fingerprintSha256}`,
    );
  });
  const header = `${file}: ${inspection.certificates.length} certificate${many ? 's' : ''}`;
  const skipped = inspection.skippedBlocks.length > 0 ? [`(skipped ${inspection.skippedBlocks.join(', ')} block(s): keys are never shown)`] : [];
  const chain = inspection.chain ? [`\nchain: ${inspection.chain.message}`] : [];
  return [header, ...skipped, ...lines, ...chain].join('\n') + '\n';
}
