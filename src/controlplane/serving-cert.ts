// The control plane's own HTTPS certificates (webhook on 15017, CA/config on 15012), issued by the mesh
// CA (src/ca/serving.ts) so the webhook's caBundle and the proxies' trust bundle are the same roots.
import { generateKeyPairSync } from 'node:crypto';
import { isIP } from 'node:net';
import type { CaMaterial } from '../ca/material.ts';
import { issueServingCertificate as issue } from '../ca/serving.ts';

export interface ServingCertificate {
  keyPem: string;
  /** Leaf then the CA chain up to (not including) the root: what a TLS server sends. */
  certChainPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** DNS names a control plane in `namespace` is reached by, through its Service `service`. */
export function controlPlaneNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, service, `${service}.${namespace}`, `${service}.${namespace}.svc.cluster.local`, 'localhost'];
}

/** A fresh P-256 key and a certificate for `names` (DNS names and IPs mixed). */
export async function issueServingCertificate(material: CaMaterial, names: readonly string[], ttlSeconds = 7 * 86_400): Promise<ServingCertificate> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const signed = await issue(material, {
    publicKey,
    dnsNames: names.filter((n) => !isIP(n)),
    ipAddresses: names.filter((n) => isIP(n)),
    ttlSeconds,
  });
  return {
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    certChainPem: signed.certChain.slice(0, -1).join(''), // clients hold the root
    notBefore: signed.notBefore,
    notAfter: signed.notAfter,
  };
}
