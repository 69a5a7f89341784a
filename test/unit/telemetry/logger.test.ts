import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createLogger, parseLogLevel } from '../../../src/telemetry/logger.ts';
import { redact, REDACTED } from '../../../src/telemetry/redact.ts';

function capture(level = 'debug', context?: Record<string, unknown>) {
  const stream = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  stream.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
  });
  return { logger: createLogger({ level, stream, context }), lines };
}

const flush = () => new Promise((r) => setImmediate(r));
const JWT = 'eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIn0.c2lnbmF0dXJlLWJ5dGVz';
const KEY_PEM = '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB2\n-----END EC PRIVATE KEY-----\n';

test('one JSON object per line with level, message, timestamp and child context', async () => {
  const { logger, lines } = capture('info', { component: 'ca' });
  logger.child({ namespace: 'foo', pod: 'web-1', identity: 'spiffe://cluster.local/ns/foo/sa/web' }).info('issued', { ttl: 3600 });
  await flush();
  assert.equal(lines.length, 1);
  const [line] = lines;
  assert.equal(line.level, 'info');
  assert.equal(line.message, 'issued');
  assert.equal(line.component, 'ca');
  assert.equal(line.namespace, 'foo');
  assert.equal(line.pod, 'web-1');
  assert.equal(line.identity, 'spiffe://cluster.local/ns/foo/sa/web');
  assert.equal(line.ttl, 3600);
  assert.match(String(line.timestamp), /^\d{4}-\d\d-\d\dT/);
});

test('the level filters lines', async () => {
  const { logger, lines } = capture('warn');
  logger.info('hidden');
  logger.debug('hidden');
  logger.warn('shown');
  await flush();
  assert.deepEqual(lines.map((l) => l.message), ['shown']);
});

test('errors are logged with message and stack, also through child loggers', async () => {
  const { logger, lines } = capture();
  logger.child({ component: 'webhook' }).error('review failed', { err: new Error('boom') });
  await flush();
  const err = lines[0].err as Record<string, string>;
  assert.equal(err.message, 'boom');
  assert.match(err.stack, /Error: boom\n\s+at /);
});

test('secrets never reach a log line: credential fields, PEM keys, JWTs, bearer headers', async () => {
  const { logger, lines } = capture();
  logger.info(`got token ${JWT}`, {
    token: JWT,
    headers: { authorization: `Bearer ${JWT}` },
    material: { key: KEY_PEM, 'ca-key': 'x' },
    note: `key was ${KEY_PEM}`,
    err: new Error(`bad ${JWT}`),
  });
  await flush();
  const text = JSON.stringify(lines[0]);
  assert.ok(!text.includes('eyJhbGciOiJSUzI1NiIs'), text);
  assert.ok(!text.includes('MHcCAQEEIB2'), text);
  assert.ok(text.includes(REDACTED));
  assert.equal(lines[0].token, REDACTED);
});

test('redact keeps ordinary data and cuts cycles', () => {
  const value: Record<string, unknown> = { namespace: 'foo', port: 8080, list: ['a', 1], publicInfo: 'ok' };
  value.self = value;
  const out = redact(value) as Record<string, unknown>;
  assert.equal(out.namespace, 'foo');
  assert.equal(out.port, 8080);
  assert.deepEqual(out.list, ['a', 1]);
  assert.equal(out.self, '[Circular]');
});

test('parseLogLevel accepts the four levels, any case, and refuses others with a message', () => {
  assert.equal(parseLogLevel('DEBUG'), 'debug');
  assert.equal(parseLogLevel(undefined), 'info');
  assert.throws(() => parseLogLevel('verbose'), /invalid log level "verbose": expected one of error, warn, info, debug/);
});

test("a child logger's fields override its parent's context", async () => {
  const { logger, lines } = capture('info', { component: 'control-plane', namespace: 'cinch-system' });
  logger.child({ component: 'webhook' }).child({ pod: 'web-1' }).info('x');
  await flush();
  assert.equal(lines[0].component, 'webhook');
  assert.equal(lines[0].namespace, 'cinch-system');
  assert.equal(lines[0].pod, 'web-1');
});
