// Creating CA material: a self-signed root, or a root plus an intermediate, in the `cacerts`
// layout. Rare and not latency-sensitive, so it uses the general @peculiar/x509 generator.
import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject, webcrypto } from 'node:crypto';
import { x509 } from './x509.ts';
import { CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE } from './material.ts';
import type { CaFiles, CaKeyType } from './material.ts';
import { LEAF_BACKDATE_SECONDS, randomSerial } from './profile.ts';
import { assertTrustDomain } from '../identity/spiffe.ts';

const DAY_MS = 86_400_000;
export const DEFAULT_ROOT_DAYS = 3650;
export const DEFAULT_INTERMEDIATE_DAYS = 365;

export interface CaCertificateSpec {
  /** RFC 4514 string, e.g. "O=cluster.local, CN=Cinch Root CA". */
  readonly subject: string;
  readonly publicKey: KeyObject;
  /** Absent: self-signed with `signingKey` (which must then match `publicKey`). */
  readonly issuer?: { readonly certificate: x509.X509Certificate; readonly key: KeyObject };
  readonly signingKey?: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** How many CA certificates may follow below this one; absent = unlimited. */
  readonly pathLength?: number;
}

/** WebCrypto parameters for a Node key: what @peculiar/x509 needs to sign with it. */
export function webCryptoAlgorithm(key: KeyObject): {
  importParams: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  signParams: webcrypto.EcdsaParams | webcrypto.Algorithm;
} {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    const curve = details.namedCurve === 'secp384r1' ? 'P-384' : details.namedCurve === 'prime256v1' ? 'P-256' : undefined;
    if (!curve) throw new Error(`unsupported EC curve ${details.namedCurve ?? '(explicit)'}: use P-256 or P-384`);
    return { importParams: { name: 'ECDSA', namedCurve: curve }, signParams: { name: 'ECDSA', hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' } };
  }
  if (key.asymmetricKeyType === 'rsa') {
    return { importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, signParams: { name: 'RSASSA-PKCS1-v1_5' } };
  }
  throw new Error(`unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`);
}

export function toSigningCryptoKey(key: KeyObject): webcrypto.CryptoKey {
  const { importParams } = webCryptoAlgorithm(key);
  return key.toCryptoKey(importParams, false, ['sign']);
}

/** A CA certificate: BasicConstraints CA (critical), KeyUsage keyCertSign|cRLSign (critical), SKI, and AKI when issued by another CA. */
export async function createCaCertificate(spec: CaCertificateSpec): Promise<x509.X509Certificate> {
  const signer = spec.issuer?.key ?? spec.signingKey;
  if (!signer) throw new Error('a self-signed CA certificate needs signingKey');
  const publicKey = new x509.PublicKey(spec.publicKey.export({ format: 'der', type: 'spki' }));
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, spec.pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
  ];
  if (spec.issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(spec.issuer.certificate.publicKey));
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial().toString('hex'),
    subject: spec.subject,
    issuer: spec.issuer ? spec.issuer.certificate.subjectName : spec.subject,
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    publicKey,
    signingKey: toSigningCryptoKey(signer),
    signingAlgorithm: webCryptoAlgorithm(signer).signParams,
    extensions,
  });
}

export function generateCaKey(keyType: CaKeyType = 'ec-p256'): { privateKey: KeyObject; publicKey: KeyObject } {
  if (keyType === 'rsa') return generateKeyPairSync('rsa', { modulusLength: 3072 });
  return generateKeyPairSync('ec', { namedCurve: keyType === 'ec-p384' ? 'P-384' : 'P-256' });
}

export interface CreateCaOptions {
  readonly trustDomain: string;
  readonly now?: Date;
  readonly rootDays?: number;
  readonly intermediateDays?: number;
  readonly keyType?: CaKeyType;
}

export interface CreatedCa {
  /** What the CA runs with (ca-cert, ca-key, root-cert, cert-chain). */
  readonly files: CaFiles;
  /** Only with an intermediate: the root's key, which belongs offline, not in the Secret. */
  readonly rootKeyPem?: string;
}

function window(options: CreateCaOptions, days: number): { notBefore: Date; notAfter: Date } {
  const now = options.now ?? new Date();
  // Backdated like leaves, so nodes whose clocks lag a little accept a fresh CA at once.
  return { notBefore: new Date(now.getTime() - LEAF_BACKDATE_SECONDS * 1000), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

/** A self-signed root (ECDSA P-256, 10 years, `O=<trust domain>`) that signs leaves itself. */
export async function createRootCa(options: CreateCaOptions): Promise<CreatedCa> {
  assertTrustDomain(options.trustDomain);
  const keys = generateCaKey(options.keyType);
  const root = await createCaCertificate({
    subject: `O=${options.trustDomain}, CN=Cinch Root CA`,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    ...window(options, options.rootDays ?? DEFAULT_ROOT_DAYS),
  });
  const rootPem = root.toString('pem') + '\n';
  return {
    files: {
      [CA_CERT_FILE]: rootPem,
      [CA_KEY_FILE]: pkcs8Pem(keys.privateKey),
      [ROOT_CERT_FILE]: rootPem,
      [CERT_CHAIN_FILE]: rootPem,
    },
  };
}

/** A root plus an intermediate (pathlen 0, 1 year, never past the root) that signs leaves. */
export async function createRootAndIntermediate(options: CreateCaOptions): Promise<CreatedCa> {
  assertTrustDomain(options.trustDomain);
  const rootKeys = generateCaKey(options.keyType);
  const rootWindow = window(options, options.rootDays ?? DEFAULT_ROOT_DAYS);
  const root = await createCaCertificate({
    subject: `O=${options.trustDomain}, CN=Cinch Root CA`,
    publicKey: rootKeys.publicKey,
    signingKey: rootKeys.privateKey,
    ...rootWindow,
  });
  const keys = generateCaKey(options.keyType);
  const intermediateWindow = window(options, options.intermediateDays ?? DEFAULT_INTERMEDIATE_DAYS);
  const intermediate = await createCaCertificate({
    subject: `O=${options.trustDomain}, CN=Cinch Intermediate CA`,
    publicKey: keys.publicKey,
    issuer: { certificate: root, key: rootKeys.privateKey },
    notBefore: intermediateWindow.notBefore,
    notAfter: new Date(Math.min(intermediateWindow.notAfter.getTime(), rootWindow.notAfter.getTime())),
    pathLength: 0,
  });
  const rootPem = root.toString('pem') + '\n';
  const intermediatePem = intermediate.toString('pem') + '\n';
  return {
    files: {
      [CA_CERT_FILE]: intermediatePem,
      [CA_KEY_FILE]: pkcs8Pem(keys.privateKey),
      [ROOT_CERT_FILE]: rootPem,
      [CERT_CHAIN_FILE]: intermediatePem + rootPem,
    },
    rootKeyPem: pkcs8Pem(rootKeys.privateKey),
  };
}

function pkcs8Pem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }) as string;
}
