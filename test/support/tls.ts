// Throwaway TLS material for tests, made by the real openssl.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface ServingCert {
  key: string;
  cert: string;
  ca: string;
}

/** A CA and a server certificate for 127.0.0.1/localhost (plus extra DNS names). */
export function makeServingCert(dnsNames: string[] = []): ServingCert {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-tls-'));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    ssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
    ssl('req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=test-ca', '-days', '1', '-out', 'ca.crt');
    ssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'srv.key');
    ssl('req', '-new', '-key', 'srv.key', '-subj', '/CN=test-server', '-out', 'srv.csr');
    const sans = ['IP:127.0.0.1', 'DNS:localhost', ...dnsNames.map((d) => `DNS:${d}`)].join(',');
    fs.writeFileSync(path.join(dir, 'ext'), `subjectAltName=${sans}\nextendedKeyUsage=serverAuth\n`);
    ssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext', '-out', 'srv.crt');
    const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
    return { key: read('srv.key'), cert: read('srv.crt'), ca: read('ca.crt') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
