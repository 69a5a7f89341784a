// The identity agent: a fresh key for every certificate (kept in memory), a CSR with the workload's
// SPIFFE ID, the projected ServiceAccount token re-read for every request, the CA's server certificate
// checked against the mounted trust bundle, renewal at half-life with jitter, backoff on failure,
// and the current certificate kept in use until it expires.
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import https from 'node:https';
import tls from 'node:tls';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { Counter, Gauge, type Registry } from 'prom-client';
import { buildSpiffeCsr } from '../ca/csr-build.ts';
import type { ProxyLogger as Logger } from './log.ts';
import { renewalDelayMs, retryDelayMs } from './rotation.ts';

export interface WorkloadCertificate {
  spiffeId: string;
  keyPem: string;
  /** Leaf first, then intermediates (what a TLS endpoint presents). */
  certChainPem: string;
  /** Roots the peers' certificates must chain to. */
  trustBundle: string[];
  notBefore: Date;
  notAfter: Date;
  secureContext: tls.SecureContext;
}

export interface AgentOptions {
  /** host:port of the CA (CINCH_CA_ADDRESS). */
  caAddress: string;
  spiffeId: string;
  tokenFile: string;
  caRootFile: string;
  ttlSeconds?: number;
  logger: Logger;
  registry?: Registry;
  requestTimeoutMs?: number;
}

interface CaResponse {
  certChain: string[];
  trustBundle: string[];
  notAfter: string;
}

export class CaRequestError extends Error {
  readonly status: number;
  readonly retryAfterMs?: number;
  constructor(status: number, message: string, retryAfterMs?: number) {
    super(message);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Mesh TLS context: our chain and key, the bundle as the only trust anchors. */
export function meshSecureContext(keyPem: string, certChainPem: string, trustBundle: readonly string[]): tls.SecureContext {
  return tls.createSecureContext({ key: keyPem, cert: certChainPem, ca: [...trustBundle], minVersion: 'TLSv1.2' });
}

function newKeyAndCsr(spiffeId: string): { keyPem: string; csrPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), csrPem: buildSpiffeCsr(privateKey, publicKey, spiffeId) };
}

export class IdentityAgent extends EventEmitter<{ rotated: [WorkloadCertificate] }> {
  private cert?: WorkloadCertificate;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private failures = 0;
  private readonly opts: AgentOptions;
  private readonly metrics?: { expiry: Gauge; rotations: Counter<'result'> };

  constructor(opts: AgentOptions) {
    super();
    this.opts = opts;
    if (opts.registry) {
      this.metrics = {
        expiry: new Gauge({ name: 'cinch_proxy_certificate_expiry_timestamp_seconds', help: 'notAfter of the workload certificate in use (Unix seconds).', registers: [opts.registry] }),
        rotations: new Counter({ name: 'cinch_proxy_certificate_rotations_total', help: 'Certificate requests to the CA by result (success, failure).', labelNames: ['result'], registers: [opts.registry] }),
      };
    }
  }

  get current(): WorkloadCertificate | undefined {
    return this.cert;
  }

  /** Resolves with the first certificate (retrying with backoff until it comes or `stop` is called). */
  start(): Promise<WorkloadCertificate> {
    return new Promise((resolve, reject) => {
      const first = (c: WorkloadCertificate) => resolve(c);
      this.once('rotated', first);
      this.stopped = false;
      void this.renew();
      this.onStop = () => {
        this.off('rotated', first);
        if (!this.cert) reject(new Error('identity agent stopped before the first certificate'));
      };
    });
  }

  private onStop?: () => void;

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.onStop?.();
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.renew(), delayMs);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    const log = this.opts.logger;
    try {
      const cert = await this.requestCertificate();
      if (this.stopped) return;
      this.cert = cert;
      this.failures = 0;
      this.metrics?.rotations.inc({ result: 'success' });
      this.metrics?.expiry.set(cert.notAfter.getTime() / 1000);
      const next = renewalDelayMs(cert.notBefore, cert.notAfter, new Date());
      log.info('workload certificate issued', { identity: cert.spiffeId, notAfter: cert.notAfter.toISOString(), renewInMs: Math.round(next) });
      this.emit('rotated', cert);
      this.schedule(next);
    } catch (err) {
      this.metrics?.rotations.inc({ result: 'failure' });
      const delay =
        err instanceof CaRequestError && err.retryAfterMs !== undefined
          ? err.retryAfterMs
          : retryDelayMs(this.failures, { expiresAt: this.cert?.notAfter, now: new Date() });
      this.failures++;
      // The current certificate stays in use until it expires; only a missing one makes us unready.
      log.warn('certificate request failed; retrying', { identity: this.opts.spiffeId, attempt: this.failures, retryInMs: delay, error: (err as Error).message, keepsCertificateUntil: this.cert?.notAfter.toISOString() });
      this.schedule(delay);
    }
  }

  private async requestCertificate(): Promise<WorkloadCertificate> {
    // Re-read both files every time: the kubelet rotates the token, the bundle changes with root rotation.
    const [token, bundleFile] = await Promise.all([fs.readFile(this.opts.tokenFile, 'utf8'), fs.readFile(this.opts.caRootFile, 'utf8')]);
    const { keyPem, csrPem } = newKeyAndCsr(this.opts.spiffeId);
    const body = JSON.stringify({ csr: csrPem, ...(this.opts.ttlSeconds ? { ttlSeconds: this.opts.ttlSeconds } : {}) });
    const res = await this.post(token.trim(), bundleFile, body);
    if (!Array.isArray(res.certChain) || res.certChain.length < 2) throw new Error('CA answered without a certificate chain');
    const leaf = new X509Certificate(res.certChain[0]);
    const chainForPeers = res.certChain.slice(0, -1).join('');
    const trustBundle = res.trustBundle?.length ? res.trustBundle : [res.certChain[res.certChain.length - 1]];
    return {
      spiffeId: this.opts.spiffeId,
      keyPem,
      certChainPem: chainForPeers,
      trustBundle,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
      secureContext: meshSecureContext(keyPem, chainForPeers, trustBundle),
    };
  }

  private post(token: string, caBundle: string, body: string): Promise<CaResponse> {
    const [host, portText] = splitHostPort(this.opts.caAddress);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host,
          port: Number(portText),
          path: '/v1/certificates',
          method: 'POST',
          ca: caBundle,
          servername: /^[\d.]+$|:/.test(host) ? undefined : host,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          timeout: this.opts.requestTimeoutMs ?? 10_000,
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            if (res.statusCode === 200 && json) return resolve(json as CaResponse);
            const message = (json as { error?: { message?: string } } | undefined)?.error?.message ?? text.slice(0, 200);
            const retryAfter = Number(res.headers['retry-after']);
            reject(new CaRequestError(res.statusCode ?? 0, `CA answered ${res.statusCode}: ${message}`, Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`CA did not answer within ${this.opts.requestTimeoutMs ?? 10_000} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }
}

export function splitHostPort(address: string): [string, string] {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!m) throw new Error(`invalid CA address "${address}": expected host:port`);
  return [m[1], m[2]];
}
