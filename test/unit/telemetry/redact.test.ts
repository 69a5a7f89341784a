import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mayHoldSecret, redact, redactString, REDACTED } from '../../../src/telemetry/redact.ts';

// The three replaces redactString ran on every string before the mayHoldSecret pre-check, verbatim:
// whatever the pre-check lets through untouched must come out of these untouched too.
const PRIVATE_KEY_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;
const JWT = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;
const BEARER = /\b(Bearer)\s+[A-Za-z0-9._~+/=-]+/gi;
const reference = (value: string): string => value.replace(PRIVATE_KEY_PEM, REDACTED).replace(BEARER, `$1 ${REDACTED}`).replace(JWT, REDACTED);

const JWT_TOKEN = 'eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIn0.c2lnbmF0dXJlLWJ5dGVz';
const KEY_PEM = '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB2\n-----END EC PRIVATE KEY-----\n';

/** The cases the logger and proxy tests redact, plus the strings an audit line carries. */
const CASES = [
  `got token ${JWT_TOKEN}`,
  JWT_TOKEN,
  `Bearer ${JWT_TOKEN}`,
  'authorization: bearer abc.def',
  'BEARER x',
  'BeArEr\t\tsecret+/=',
  KEY_PEM,
  `key was ${KEY_PEM}`,
  '-----BEGIN PRIVATE KEY-----\nunterminated',
  '-----BEGIN RSA PRIVATE KEY-----',
  '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  `bad ${JWT_TOKEN}`,
  'xeyJabcde.fghij.k',
  'eyJabcde.fghij.',
  'certificate issued',
  'spiffe://cluster.local/ns/default/sa/web',
  '127.0.0.1',
  '::ffff:10.0.0.1',
  '2026-12-04T18:15:24.000Z',
  '61a09341b616011a9b246cbadaa11361',
  '',
];

/** Deterministic pseudo-random strings built from the fragments the patterns care about. */
function* generated(count: number): Generator<string> {
  const fragments = [
    '-----BEGIN ', '-----END ', 'PRIVATE KEY-----', 'EC ', 'RSA ', '-----', 'eyJ', 'EYJ', 'eyj', 'Bearer', 'bearer', 'BEARER', 'bEaReR', 'beare', 'earer',
    ' ', '\t', '\n', '.', '_', '-', '=', '+', '/', 'abcde', 'XYZ12', '0', 'ı', 'ſ', 'K', 'é', '\u00a0',
  ];
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  for (let i = 0; i < count; i++) {
    let s = '';
    const parts = next() % 12;
    for (let j = 0; j < parts; j++) s += fragments[next() % fragments.length];
    yield s;
  }
}

test('redactString with its pre-check gives exactly what the three replaces give', () => {
  for (const value of [...CASES, ...generated(20_000)]) assert.equal(redactString(value), reference(value), JSON.stringify(value));
});

test('mayHoldSecret is true for every string the replaces change', () => {
  let changed = 0;
  for (const value of [...CASES, ...generated(20_000)]) {
    if (reference(value) !== value) {
      changed++;
      assert.ok(mayHoldSecret(value), JSON.stringify(value));
    }
  }
  assert.ok(changed > 500, `only ${changed} generated strings hold a secret`);
});

test('plain strings skip the replaces; secrets are still masked', () => {
  assert.equal(mayHoldSecret('spiffe://cluster.local/ns/default/sa/web'), false);
  assert.equal(redactString(`token ${JWT_TOKEN}`), `token ${REDACTED}`);
  assert.equal(redactString('Authorization: bearer abc'), `Authorization: bearer ${REDACTED}`);
  assert.equal(redactString(`x ${KEY_PEM}y`), `x ${REDACTED}\ny`);
});

test('redact without a cycle set still cuts cycles and masks nested fields', () => {
  const value: Record<string, unknown> = { nested: { token: 'abc', note: `Bearer ${JWT_TOKEN}` } };
  value.self = value;
  const out = redact(value) as { nested: Record<string, unknown>; self: unknown };
  assert.equal(out.nested.token, REDACTED);
  assert.equal(out.nested.note, `Bearer ${REDACTED}`);
  assert.equal(out.self, '[Circular]');
});
