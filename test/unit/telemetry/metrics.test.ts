import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter } from 'prom-client';
import { createRegistry } from '../../../src/telemetry/metrics.ts';

test('a registry has the default process metrics and its own default labels', async () => {
  const registry = createRegistry({ component: 'test' });
  const text = await registry.metrics();
  assert.match(text, /^process_resident_memory_bytes\{component="test"\} \d+/m);
  assert.match(text, /^nodejs_eventloop_lag_seconds/m);
});

test('two registries are independent (no duplicate-registration errors)', async () => {
  const a = createRegistry();
  const b = createRegistry();
  for (const registry of [a, b]) new Counter({ name: 'cinch_test_total', help: 'test', registers: [registry] }).inc();
  assert.match(await a.metrics(), /^cinch_test_total 1$/m);
  assert.match(await b.metrics(), /^cinch_test_total 1$/m);
});
