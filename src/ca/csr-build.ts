// A PKCS#10 CSR for a workload key and its SPIFFE ID, built with the DER encoder and signed with
// Node's crypto. The proxy uses this instead of @peculiar/x509, which (with its ASN.1 schema
// libraries and reflect-metadata) costs the sidecar ~10 MB of memory and tens of ms at start.
import { sign, type KeyObject } from 'node:crypto';
import { bitString, boolean, contextConstructed, contextPrimitive, integer, octetString, oid, sequence, setOf } from './der.ts';
import { encodePem } from './pem.ts';
import { OID } from './profile.ts';

const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

/** CSR with an empty subject and one critical URI SAN (`spiffeId`); `privateKey` must be ECDSA P-256. */
export function buildSpiffeCsr(privateKey: KeyObject, publicKey: KeyObject, spiffeId: string): string {
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('buildSpiffeCsr needs an ECDSA P-256 key');
  const san = sequence(contextPrimitive(6, Buffer.from(spiffeId, 'ascii')));
  const extensions = sequence(sequence(oid(OID.subjectAltName), boolean(true), octetString(san)));
  const info = sequence(
    integer(0),
    sequence(), // empty subject: the identity is the SAN (SPIFFE X.509-SVID)
    publicKey.export({ format: 'der', type: 'spki' }),
    contextConstructed(0, sequence(oid(EXTENSION_REQUEST), setOf(extensions))),
  );
  const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
  return encodePem('CERTIFICATE REQUEST', sequence(info, sequence(oid(ECDSA_WITH_SHA256)), bitString(signature)));
}
