// Fast-path leaves in a real mutual-TLS handshake (node:tls over loopback): each side presents
// its chain, trusts only the bundle, and sees the other's SPIFFE ID.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import { createRootAndIntermediate } from '../../../src/ca/create.ts';
import { FastLeafSigner } from '../../../src/ca/fast-signer.ts';
import { loadCaMaterial } from '../../../src/ca/material.ts';

test('two fast-path leaves complete an mTLS handshake and see each other’s SPIFFE IDs', async () => {
  const material = loadCaMaterial((await createRootAndIntermediate({ trustDomain: 'cluster.local' })).files);
  const signer = new FastLeafSigner(material);
  const identity = (spiffeId: string): { key: string; cert: string } => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    // Sign a leaf for the key directly: the CSR path is covered elsewhere.
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const signed = signer.sign({ csr: { spki, keyType: 'ec-p256' }, spiffeId });
    return { key: String(privateKey.export({ format: 'pem', type: 'pkcs8' })), cert: signed.certChain.slice(0, -1).join('') };
  };
  const ca = material.trustBundle.join('');
  const serverId = 'spiffe://cluster.local/ns/foo/sa/httpbin';
  const clientId = 'spiffe://cluster.local/ns/bar/sa/sleep';

  const server = tls.createServer({ ...identity(serverId), ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (socket) => {
    socket.end(socket.getPeerCertificate().subjectaltname ?? 'no client certificate');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const { port } = server.address() as AddressInfo;
    const client = tls.connect({
      host: '127.0.0.1',
      port,
      ...identity(clientId),
      ca,
      // A SPIFFE-only certificate has no DNS name: check the URI SAN instead of the host name.
      checkServerIdentity: (_host, cert) => (cert.subjectaltname === `URI:${serverId}` ? undefined : new Error(`unexpected server ${cert.subjectaltname}`)),
    });
    await once(client, 'secureConnect');
    assert.equal(client.authorized, true, String(client.authorizationError));
    let seen = '';
    client.on('data', (chunk: Buffer) => (seen += chunk.toString()));
    await once(client, 'end');
    assert.equal(seen, `URI:${clientId}`);
    client.destroy();
  } finally {
    server.close();
  }
});
