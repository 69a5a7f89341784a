// The proxy's own logger writes what the shared winston logger writes, so log pipelines see one format.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createProxyLogger, stableStringify } from '../../../src/proxy/log.ts';
import { parseLogLevel } from '../../../src/telemetry/log-level.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';

const withoutTimestamp = (line: string) => {
  const record = JSON.parse(line) as Record<string, unknown>;
  assert.match(String(record.timestamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  delete record.timestamp;
  return JSON.stringify(record);
};

test('same JSON lines as the winston logger: context, fields, errors, redaction, key order', async () => {
  const stream = new PassThrough();
  const winstonLines: string[] = [];
  stream.on('data', (d: Buffer) => winstonLines.push(...d.toString().split('\n').filter(Boolean)));
  const ours: string[] = [];
  const context = { component: 'proxy', namespace: 'foo', pod: 'p-1' };
  const reference = createLogger({ level: 'debug', stream, context });
  const proxy = createProxyLogger({ level: 'debug', context, write: (l) => ours.push(l.trimEnd()) });
  const err = Object.assign(new Error('connect ECONNREFUSED with Bearer abc.def'), { code: 'ECONNREFUSED' });
  const calls: [string, Record<string, unknown> | undefined][] = [
    ['listening', { inbound: 15006, outbound: 15001, ca: 'cinch:15012' }],
    ['authorization denied', { policy: 'foo/deny', source_principal: null, nested: { token: 'secret', z: 1, a: [1, 'x'] } }],
    ['oops Bearer sometoken', { err, component: 'override' }],
    ['no meta', undefined],
  ];
  for (const [message, meta] of calls) {
    reference.child({ component: 'inbound' }).info(message, meta);
    proxy.child({ component: 'inbound' }).info(message, meta);
    reference.warn(message, meta);
    proxy.warn(message, meta);
  }
  await new Promise((r) => setImmediate(r));
  assert.equal(ours.length, winstonLines.length);
  assert.deepEqual(ours.map(withoutTimestamp), winstonLines.map(withoutTimestamp));
  assert.ok(!ours.some((l) => l.includes('secret') || l.includes('abc.def')));
});

test('levels: debug is dropped at info, an unknown level is refused', () => {
  const lines: string[] = [];
  const log = createProxyLogger({ level: 'info', write: (l) => lines.push(l) });
  log.debug('hidden');
  log.info('shown');
  assert.equal(lines.length, 1);
  assert.throws(() => parseLogLevel('loud'), /invalid log level "loud"/);
});

test('stableStringify sorts keys at every depth and leaves undefined out', () => {
  assert.equal(stableStringify({ b: 1, a: { d: undefined, c: [2, { z: 1, y: 2 }] } }), '{"a":{"c":[2,{"y":2,"z":1}]},"b":1}');
});
