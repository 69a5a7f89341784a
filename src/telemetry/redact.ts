// Pure redaction of log records: secrets never reach a log line, whatever a caller passes.
// Field names that carry credentials are masked; PEM private keys and JWTs are masked wherever they appear.

const SECRET_FIELD = /^(token|bearer|authorization|password|passwd|secret|private_?key|key|key_?pem|ca_?key|client_?secret|cookie)$/i;
const PRIVATE_KEY_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;
// Three base64url segments starting with a JSON header: a JWT (ServiceAccount tokens are JWTs).
const JWT = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;
const BEARER = /\b(Bearer)\s+[A-Za-z0-9._~+/=-]+/gi;

// Each pattern above needs one of these literally ("bearer" in any ASCII case, as the i flag matches it):
// a string holding none of them is returned as is, without running the three replaces. Most logged
// strings (names, IDs, addresses, dates) hold none, and the scans cost a fraction of the replaces.
const BEARER_WORD = /bearer/i;

export const REDACTED = '[REDACTED]';

/** True when `value` could hold something redactString masks: a PEM private key, a bearer credential or a JWT. */
export function mayHoldSecret(value: string): boolean {
  return value.includes('-----BEGIN ') || value.includes('eyJ') || BEARER_WORD.test(value);
}

export function redactString(value: string): string {
  if (!mayHoldSecret(value)) return value;
  return value.replace(PRIVATE_KEY_PEM, REDACTED).replace(BEARER, `$1 ${REDACTED}`).replace(JWT, REDACTED);
}

/** Returns a copy of `value` with secret fields and secret-looking strings masked. Cycles are cut. */
export function redact(value: unknown, seen?: WeakSet<object>): unknown {
  if (typeof value === 'string') return redactString(value);
  if (value === null || typeof value !== 'object') return value;
  if (Buffer.isBuffer(value)) return `<${value.length} bytes>`;
  // Made on the first object only: most calls (one per field of a log line) are for strings.
  seen ??= new WeakSet<object>();
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  if (value instanceof Error) return errorFields(value, seen);
  if (Array.isArray(value)) return value.map((v) => redact(v, seen));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_FIELD.test(k) && v !== undefined && v !== null && v !== '' ? REDACTED : redact(v, seen);
  }
  return out;
}

/** An Error as plain fields (winston serialises a bare Error as `{}`). */
export function errorFields(err: Error, seen = new WeakSet<object>()): Record<string, unknown> {
  const out: Record<string, unknown> = { name: err.name, message: redactString(err.message) };
  if (err.stack) out.stack = redactString(err.stack);
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (err.cause !== undefined) out.cause = redact(err.cause, seen);
  return out;
}
