// watchCaDir: a plugged-in cacerts folder (--ca-dir) is followed like Secret cinch-ca: new consistent
// files become the signing material, inconsistent or missing ones are refused and the old material stays.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { generateCaKey, createRootAndIntermediate } from '../../../src/ca/create.ts';
import type { CaMaterialError } from '../../../src/ca/errors.ts';
import { writeCaDir } from '../../../src/ca/files.ts';
import { CA_KEY_FILE } from '../../../src/ca/material.ts';
import { watchCaDir } from '../../../src/controlplane/ca-watch.ts';
import { loadCaDir, type CaSource } from '../../../src/controlplane/ca-store.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('watchCaDir', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-ca-dir-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('takes new consistent files, refuses inconsistent or missing ones and keeps the material in use', async () => {
    writeCaDir(dir, await createRootAndIntermediate({ trustDomain: 'cluster.local' }));
    const first = loadCaDir(dir);
    const changes: CaSource[] = [];
    const refusals: CaMaterialError[] = [];
    const logLines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    const watch = watchCaDir(dir, {
      current: first.material,
      logger: createLogger({ stream, level: 'debug' }),
      onChange: (next) => changes.push(next),
      onInvalid: (err) => refusals.push(err),
      intervalMs: 20,
    });
    try {
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(changes.length, 0, 'the files it started with are not a change');

      // A key that does not match ca-cert.pem: refused, with the failed check named.
      const wrongKey = generateCaKey().privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
      fs.writeFileSync(path.join(dir, CA_KEY_FILE), wrongKey, { mode: 0o600 });
      await until(() => refusals.length > 0);
      assert.equal(changes.length, 0);
      assert.ok(refusals[0].check, 'the refusal names its check');
      await until(() => logLines.some((l) => l.includes('CA material changed but is refused')));
      assert.ok(!logLines.some((l) => l.includes('PRIVATE KEY')), 'no key material in the logs');
      // The same refused set, polled again and again, is refused (and logged) once.
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(refusals.length, 1);
      assert.equal(logLines.filter((l) => l.includes('CA material changed but is refused')).length, 1);

      // A whole new consistent set (a replaced intermediate under a new root): it becomes current.
      writeCaDir(dir, await createRootAndIntermediate({ trustDomain: 'cluster.local' }), true);
      await until(() => changes.length === 1);
      assert.equal(changes[0].origin, `dir ${dir}`);
      assert.notEqual(changes[0].material.signingCert.serialNumber, first.material.signingCert.serialNumber);
      await until(() => logLines.some((l) => l.includes('CA material reloaded')));

      // The folder gone (a broken mount): refused, nothing changes, nothing throws.
      const before = refusals.length;
      fs.rmSync(dir, { recursive: true, force: true });
      await until(() => refusals.length > before);
      assert.equal(changes.length, 1);
    } finally {
      await watch.stop();
    }
  });
});
