// Throwaway test PKI: a root CA (optionally with an intermediate) and SPIFFE leaf certificates,
// made in-process with @peculiar/x509 so the proxy tests never depend on src/ca.
import 'reflect-metadata';
import { generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;

export interface TestCa {
  certPem: string;
  cert: x509.X509Certificate;
  key: KeyObject;
}

export interface TestLeaf {
  keyPem: string;
  /** Leaf PEM followed by the issuing chain (without the root). */
  chainPem: string;
  cert: x509.X509Certificate;
}

function pem(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}

async function signingKey(key: KeyObject): Promise<webcrypto.CryptoKey> {
  return key.toCryptoKey(EC, false, ['sign']);
}

function publicKeyOf(key: KeyObject): x509.PublicKey {
  return new x509.PublicKey(key.export({ format: 'der', type: 'spki' }));
}

export async function createTestCa(name = 'Test Root', issuer?: TestCa): Promise<TestCa> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
    subject: `CN=${name}`,
    issuer: issuer ? issuer.cert.subject : `CN=${name}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    publicKey: publicKeyOf(publicKey),
    signingKey: await signingKey(issuer ? issuer.key : privateKey),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKeyOf(publicKey)),
    ],
  });
  return { certPem: pem(cert), cert, key: privateKey };
}

export interface LeafOptions {
  /** URI SANs; a normal workload certificate has exactly one SPIFFE ID. */
  uris?: string[];
  dns?: string[];
  /** Intermediate CAs between `ca` and the leaf are appended to the chain. */
  chain?: TestCa[];
}

export async function issueLeaf(ca: TestCa, spiffeIdOrOptions: string | LeafOptions): Promise<TestLeaf> {
  const options = typeof spiffeIdOrOptions === 'string' ? { uris: [spiffeIdOrOptions] } : spiffeIdOrOptions;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const names: x509.JsonGeneralName[] = [
    ...(options.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(options.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
    subject: '',
    issuer: ca.cert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    publicKey: publicKeyOf(publicKey),
    signingKey: await signingKey(ca.key),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names, true),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
    ],
  });
  return {
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
    chainPem: pem(cert) + (options.chain ?? []).map((c) => c.certPem).join(''),
    cert,
  };
}
