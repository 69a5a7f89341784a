// Serving certificates for the control plane's own HTTPS listeners (CA API, webhook), issued by
// the CA itself so clients that trust the bundle trust them. Rare, so the generic generator is fine.
import type { KeyObject } from 'node:crypto';
import { x509 } from './x509.ts';
import type { CaMaterial } from './material.ts';
import { toSigningCryptoKey, webCryptoAlgorithm } from './create.ts';
import type { SignedLeaf } from './fast-signer.ts';
import { leafValidity, randomSerial } from './profile.ts';

export interface ServingCertRequest {
  /** The server's public key. */
  readonly publicKey: KeyObject;
  /** DNS names, e.g. cinch-ca.cinch-system.svc; the first is also the subject CN. */
  readonly dnsNames: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly ttlSeconds: number;
  readonly now?: Date;
}

export async function issueServingCertificate(material: CaMaterial, request: ServingCertRequest): Promise<SignedLeaf> {
  if (request.dnsNames.length === 0) throw new Error('a serving certificate needs at least one DNS name');
  if (!Number.isSafeInteger(request.ttlSeconds) || request.ttlSeconds < 1) throw new Error(`bad ttlSeconds ${request.ttlSeconds}`);
  const validity = leafValidity(request.now ?? new Date(), request.ttlSeconds, material.validity);
  const publicKey = new x509.PublicKey(request.publicKey.export({ format: 'der', type: 'spki' }));
  const serial = randomSerial();
  const keyUsage =
    request.publicKey.asymmetricKeyType === 'rsa' ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: new x509.Name([{ '2.5.4.3': [request.dnsNames[0]] }]),
    issuer: new x509.Name(material.subject),
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
    publicKey,
    signingKey: toSigningCryptoKey(material.signingKey),
    signingAlgorithm: webCryptoAlgorithm(material.signingKey).signParams,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(keyUsage, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      new x509.AuthorityKeyIdentifierExtension(material.subjectKeyId.toString('hex'), false),
      new x509.SubjectAlternativeNameExtension([
        ...request.dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...(request.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
      ]),
    ],
  });
  return {
    certChain: [`${leaf.toString('pem')}\n`, ...material.chainPems],
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
    serialNumber: serial.toString('hex'),
    leafDer: Buffer.from(leaf.rawData),
  };
}
