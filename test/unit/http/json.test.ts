// The JSON writer sends exactly the UTF-8 bytes of the text, whether it takes the ASCII path or not.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { sendJsonText } from '../../../src/http/json.ts';

async function served(json: string): Promise<{ length: string | undefined; type: string | undefined; body: Buffer }> {
  const server = http.createServer((_req, res) => sendJsonText(res, 200, json));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    return await new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ length: res.headers['content-length'], type: res.headers['content-type'], body: Buffer.concat(chunks) }));
        })
        .on('error', reject);
    });
  } finally {
    server.close();
  }
}

for (const [name, json] of [
  ['ASCII', `{"patch":"${Buffer.from('x'.repeat(9000)).toString('base64')}"}`],
  ['latin1 range', '{"message":"café ÿ"}'],
  ['beyond latin1', '{"message":"pod ✓ 🚀"}'],
  ['lone surrogate', '{"message":"\ud800"}'],
] as const) {
  test(`sendJsonText: ${name} text arrives as its UTF-8 bytes with their length`, async () => {
    const { length, type, body } = await served(json);
    assert.deepEqual(body, Buffer.from(json, 'utf8'));
    assert.equal(length, String(Buffer.byteLength(json)));
    assert.equal(type, 'application/json; charset=utf-8');
  });
}
