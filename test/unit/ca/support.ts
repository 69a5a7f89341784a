// Shared test fixtures for the CA: CSRs made with @peculiar/x509 or `openssl req`, and a
// deterministic random source so property-test failures can be replayed from their seed.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { x509 } from '../../../src/ca/x509.ts';

export type TestKeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-1024';

export interface TestKeyPair {
  readonly type: TestKeyType;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export function generateTestKey(type: TestKeyType): TestKeyPair {
  const pair =
    type === 'ec-p256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : type === 'ec-p384'
        ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
        : generateKeyPairSync('rsa', { modulusLength: Number(type.slice(4)) });
  return { type, ...pair };
}

export type SanSpec = x509.JsonGeneralName;

/** A PKCS#10 CSR signed by `key`, asking for `sans` (none by default). */
export async function makeCsr(key: TestKeyPair, sans: readonly SanSpec[] = [], subject = ''): Promise<string> {
  const ec = key.type.startsWith('ec');
  const importParams = ec
    ? { name: 'ECDSA', namedCurve: key.type === 'ec-p384' ? 'P-384' : 'P-256' }
    : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const keys = {
    privateKey: key.privateKey.toCryptoKey(importParams, false, ['sign']),
    publicKey: key.publicKey.toCryptoKey(importParams, true, ['verify']),
  };
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    ...(subject ? { name: subject } : {}),
    keys,
    signingAlgorithm: ec ? { name: 'ECDSA', hash: key.type === 'ec-p384' ? 'SHA-384' : 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5' },
    extensions: sans.length > 0 ? [new x509.SubjectAlternativeNameExtension([...sans])] : [],
  });
  return csr.toString('pem');
}

/** Runs `fn` with a fresh temporary folder that is removed afterwards. */
export function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(path.join(tmpdir(), 'cinch-ca-test-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A CSR made by the real `openssl req` (key arguments as for `-newkey`, e.g. "ec" + pkeyopts). */
export function opensslCsr(newkey: string[], subject = '/CN=ignored', extra: string[] = []): { csr: string; keyPem: string } {
  return withTempDir((dir) => {
    const keyFile = path.join(dir, 'key.pem');
    const csrFile = path.join(dir, 'req.pem');
    execFileSync('openssl', ['req', '-new', ...newkey, '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', subject, ...extra], { stdio: 'pipe' });
    return { csr: readFileSync(csrFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
  });
}

/** `openssl verify` of a leaf against roots (and untrusted intermediates); returns openssl's output, throws on failure. */
export function opensslVerify(leafPem: string, rootsPem: string, intermediatesPem = '', atTime?: Date): string {
  return withTempDir((dir) => {
    const write = (name: string, text: string): string => {
      const file = path.join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    const args = ['verify', '-x509_strict', '-CAfile', write('roots.pem', rootsPem)];
    if (intermediatesPem) args.push('-untrusted', write('chain.pem', intermediatesPem));
    if (atTime) args.push('-attime', String(Math.floor(atTime.getTime() / 1000)));
    args.push(write('leaf.pem', leafPem));
    return execFileSync('openssl', args, { encoding: 'utf8', stdio: 'pipe' });
  });
}

export function opensslText(certPem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-text'], { input: certPem, encoding: 'utf8' });
}

/** mulberry32: small, fast, seedable; good enough to pick test inputs. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
