// The control plane's own HTTPS certificates (webhook on 15017, CA/config on 15012), issued by the
// mesh CA so the webhook's caBundle and the proxies' trust bundle are the same roots. Rare (startup
// and half-life renewal), so the general @peculiar/x509 generator is fine here.
import { generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import type { CaMaterial } from '../ca/material.ts';
import { toSigningCryptoKey, webCryptoAlgorithm } from '../ca/create.ts';
import { x509 } from '../ca/x509.ts';

export interface ServingCertificate {
  keyPem: string;
  /** Leaf then the CA chain up to (not including) the root: what a TLS server sends. */
  certChainPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** DNS names a control plane in `namespace` is reached by, through its Service `service`. */
export function controlPlaneNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, 'localhost'];
}

export async function issueServingCertificate(material: CaMaterial, names: readonly string[], ttlSeconds = 7 * 86_400, now = new Date()): Promise<ServingCertificate> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const leafKey = new x509.PublicKey(publicKey.export({ format: 'der', type: 'spki' }));
  const issuer = new x509.X509Certificate(material.chain[0]);
  const notBefore = new Date(now.getTime() - 60_000);
  const notAfter = new Date(Math.min(now.getTime() + ttlSeconds * 1000, material.validity.notAfter.getTime()));
  const sans = names.map((n) => (isIP(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
  const serial = randomBytes(16);
  serial[0] = (serial[0] & 0x7f) | 0x01; // positive and never shortened
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: `CN=${names.find((n) => !isIP(n)) ?? 'cinch'}`,
    issuer: issuer.subject,
    publicKey: leafKey,
    signingKey: toSigningCryptoKey(material.signingKey),
    signingAlgorithm: webCryptoAlgorithm(material.signingKey).signParams,
    notBefore,
    notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.SubjectKeyIdentifierExtension.create(leafKey, false, webcrypto),
      await x509.AuthorityKeyIdentifierExtension.create(issuer, false, webcrypto),
    ],
  });
  const chain = material.chainPems.slice(0, -1); // the signing cert and intermediates; clients hold the root
  return {
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    certChainPem: [cert.toString('pem'), ...chain].map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join(''),
    notBefore,
    notAfter,
  };
}
