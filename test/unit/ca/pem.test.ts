// decodeSinglePem, the CA's fast path for a CSR: whatever it accepts, decodePem reads the same way.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodePem, decodeSinglePem, encodePem } from '../../../src/ca/pem.ts';

const LABEL = 'CERTIFICATE REQUEST';

/** decodePem's reading of `text`: one block with that label and its bytes, or the error. */
function general(text: string): { der?: Buffer; error?: string } {
  try {
    const blocks = decodePem(text);
    return blocks.length === 1 && blocks[0].label === LABEL ? { der: blocks[0].der } : { error: `blocks: ${blocks.map((b) => b.label).join(',')}` };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Deterministic variations of a PEM: the layouts the fast path takes and many it must leave alone. */
function* variants(): Generator<string> {
  const ders = [Buffer.alloc(0), Buffer.from([0x30, 0x00]), randomBytes(1), randomBytes(2), randomBytes(300), randomBytes(301), randomBytes(302)];
  for (const der of ders) {
    const pem = encodePem(LABEL, der);
    const base64 = der.toString('base64');
    yield pem;
    yield pem.trimEnd();
    yield `${pem}\n`;
    yield pem.replaceAll('\n', '\r\n');
    yield `text before\n${pem}`;
    yield `${pem}text after`;
    yield ` ${pem}`;
    yield pem + pem;
    yield pem.replace('REQUEST-----\n', 'REQUEST-----');
    yield `-----BEGIN ${LABEL}-----\n${base64}\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----${base64}-----END ${LABEL}-----`;
    yield `-----BEGIN ${LABEL}-----\n${base64.replace(/(.{10})/g, '$1\n')}\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64}\n-----END CERTIFICATE-----\n`;
    yield `-----BEGIN NEW ${LABEL}-----\n${base64}\n-----END NEW ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64}=\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64}A\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64.slice(0, 4)}==${base64.slice(4)}\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64} \n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64}\t\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64.replaceAll('+', '-').replaceAll('/', '_')}\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64}\n-----BEGIN ${LABEL}-----\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n${base64}\n-----END ${LABEL}-----\n-----END ${LABEL}-----\n`;
    yield `-----BEGIN ${LABEL}-----\n-----END ${LABEL}-----`;
    yield `-----BEGIN ${LABEL}-----`;
    yield `-----END ${LABEL}-----`;
    yield `-----BEGIN ${LABEL}-----END ${LABEL}-----`;
    yield `-----BEGIN ${LABEL}-----\n${base64}\n-----END ${LABEL}-----\n\n`;
  }
}

test('whatever decodeSinglePem accepts, decodePem reads as that one block with the same bytes', () => {
  let accepted = 0;
  let left = 0;
  for (const text of variants()) {
    const fast = decodeSinglePem(text, LABEL);
    if (fast === undefined) {
      left++;
      continue;
    }
    accepted++;
    const slow = general(text);
    assert.equal(slow.error, undefined, JSON.stringify(text));
    assert.ok(slow.der?.equals(fast), JSON.stringify(text));
  }
  assert.ok(accepted >= 28 && left >= 100, `accepted ${accepted}, left ${left}`);
});

test('decodeSinglePem takes what encodePem and openssl write, with or without the last newline', () => {
  const der = randomBytes(400);
  assert.deepEqual(decodeSinglePem(encodePem(LABEL, der), LABEL), der);
  assert.deepEqual(decodeSinglePem(encodePem(LABEL, der).trimEnd(), LABEL), der);
  assert.equal(decodeSinglePem(encodePem(LABEL, der).replaceAll('\n', '\r\n'), LABEL), undefined);
  assert.equal(decodeSinglePem(encodePem('CERTIFICATE', der), LABEL), undefined);
});
