// The reference leaf signer: the same profile as FastLeafSigner, built with the general
// @peculiar/x509 generator. Tests compare the two field by field and the bench measures the gap;
// the server signs with the fast one.
import type { webcrypto } from 'node:crypto';
import { x509 } from './x509.ts';
import type { CaMaterial } from './material.ts';
import { toSigningCryptoKey, webCryptoAlgorithm } from './create.ts';
import { checkedLeafId } from './fast-signer.ts';
import type { LeafRequest, SignedLeaf, SignerOptions } from './fast-signer.ts';
import { DEFAULT_TTL_POLICY, LEAF_BACKDATE_SECONDS, SERIAL_BYTES, leafValidity, randomSerial, resolveTtl } from './profile.ts';
import type { TtlPolicy } from './profile.ts';

export class GenericLeafSigner {
  readonly #material: CaMaterial;
  readonly #signingKey: webcrypto.CryptoKey;
  readonly #signingAlgorithm: webcrypto.Algorithm;
  readonly #issuer: x509.Name;
  readonly #aki: x509.AuthorityKeyIdentifierExtension;
  readonly #ttl: TtlPolicy;
  readonly #backdateSeconds: number;

  private constructor(material: CaMaterial, signingKey: webcrypto.CryptoKey, options: SignerOptions) {
    this.#material = material;
    this.#signingKey = signingKey;
    this.#signingAlgorithm = webCryptoAlgorithm(material.signingKey).signParams;
    this.#issuer = new x509.Name(material.subject);
    this.#aki = new x509.AuthorityKeyIdentifierExtension(material.subjectKeyId.toString('hex'), false);
    this.#ttl = options.ttl ?? DEFAULT_TTL_POLICY;
    this.#backdateSeconds = options.backdateSeconds ?? LEAF_BACKDATE_SECONDS;
  }

  static async create(material: CaMaterial, options: SignerOptions = {}): Promise<GenericLeafSigner> {
    return new GenericLeafSigner(material, toSigningCryptoKey(material.signingKey), options);
  }

  async sign(request: LeafRequest): Promise<SignedLeaf> {
    const spiffeId = checkedLeafId(request.spiffeId);
    const ttlSeconds = resolveTtl(request.ttlSeconds, this.#ttl, request.overMaxTtl);
    const validity = leafValidity(request.now ?? new Date(), ttlSeconds, this.#material.validity, this.#backdateSeconds);
    const serial = Buffer.from(request.serial ?? randomSerial());
    if (serial.length !== SERIAL_BYTES) throw new RangeError('serial must be 16 bytes');
    const publicKey = new x509.PublicKey(request.csr.spki);
    const keyUsage = request.csr.keyType === 'rsa' ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature;
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial.toString('hex'),
      issuer: this.#issuer,
      notBefore: validity.notBefore,
      notAfter: validity.notAfter,
      publicKey,
      signingKey: this.#signingKey,
      signingAlgorithm: this.#signingAlgorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(keyUsage, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        this.#aki,
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true),
      ],
    });
    const leafDer = Buffer.from(leaf.rawData);
    return {
      certChain: [`${leaf.toString('pem')}\n`, ...this.#material.chainPems],
      notBefore: validity.notBefore,
      notAfter: validity.notAfter,
      serialNumber: serial.toString('hex'),
      leafDer,
    };
  }
}
