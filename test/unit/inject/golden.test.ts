// Golden patches: exactly what the webhook would send for representative pods, native and classic.
// Regenerate after a deliberate template change with: UPDATE_GOLDEN=1 npx node --test test/unit/inject/golden.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { injectPod } from '../../../src/inject/index.ts';
import { SHAPES, classic, native } from './fixtures.ts';

const GOLDEN_DIR = path.join(import.meta.dirname, 'golden');
const GOLDEN_SHAPES = [
  'minimal',
  'no-metadata',
  'multi-container-every-probe',
  'existing-init-and-volumes',
  'user-native-sidecar',
  'traffic-annotations',
  'proxy-overrides',
  'keys-with-slash-and-tilde',
  'defaulted-by-api-server',
];

for (const shape of GOLDEN_SHAPES) {
  for (const [mode, ctx] of [
    ['native', native],
    ['classic', classic],
  ] as const) {
    test(`golden: ${shape} (${mode})`, () => {
      const { patch, warnings } = injectPod(SHAPES[shape], ctx);
      const actual = `${JSON.stringify({ warnings, patch }, null, 2)}\n`;
      const file = path.join(GOLDEN_DIR, `${shape}.${mode}.json`);
      if (process.env.UPDATE_GOLDEN === '1') {
        fs.mkdirSync(GOLDEN_DIR, { recursive: true });
        fs.writeFileSync(file, actual);
      }
      assert.equal(actual, fs.readFileSync(file, 'utf8'), `${shape} (${mode}): patch differs from ${file}`);
    });
  }
}
