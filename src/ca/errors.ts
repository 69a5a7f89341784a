// Typed CA errors. A request error carries the HTTP status and the code the API returns
// (`{"error": {"code", "message"}}`); the code doubles as the "refused by reason" metric label.

export type CaErrorCode =
  /** The CSR is not PEM/DER, not a PKCS#10 request, uses an unsupported signature algorithm, or its signature does not verify. */
  | 'bad_csr'
  /** The CSR PEM is over the size cap; refused before parsing. */
  | 'csr_too_large'
  /** The CSR's key is not ECDSA P-256/P-384 or RSA 2048-8192. */
  | 'weak_key'
  /** The CSR names an identity (URI, DNS, IP, e-mail or other SAN) other than the caller's. */
  | 'identity_mismatch'
  /** ttlSeconds is not a whole number between 1 and the maximum. */
  | 'bad_ttl'
  /** The identity handed to the signer is not a valid SPIFFE ID: a bug in the caller, not the client. */
  | 'bad_identity'
  /** The signing certificate (or its chain) is expired or not yet valid: nothing can be issued. */
  | 'ca_expired';

const STATUS: Record<CaErrorCode, number> = {
  bad_csr: 400,
  csr_too_large: 400,
  weak_key: 400,
  identity_mismatch: 403,
  bad_ttl: 400,
  bad_identity: 500,
  ca_expired: 503,
};

export class CaError extends Error {
  override readonly name = 'CaError';
  readonly code: CaErrorCode;
  readonly status: number;
  constructor(code: CaErrorCode, message: string) {
    super(message);
    this.code = code;
    this.status = STATUS[code];
  }

  /** The API's error body. */
  toResponseBody(): { error: { code: CaErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** Which consistency check CA material failed; the control plane refuses to start on any of them. */
export type MaterialCheck =
  | 'incomplete'
  | 'unparsable'
  | 'unsupported_key'
  | 'key_mismatch'
  | 'not_ca'
  | 'expired'
  | 'not_yet_valid'
  | 'chain_broken'
  | 'untrusted_root';

export class CaMaterialError extends Error {
  override readonly name = 'CaMaterialError';
  readonly check: MaterialCheck;
  constructor(check: MaterialCheck, message: string) {
    super(`CA material: ${message}`);
    this.check = check;
  }
}
