// The sidecar bundle (bin/build-dist.ts) runs on its own: one JavaScript file, koffi the only package left outside.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { bundle, inputsFile, PROXY_ENTRY } from '../../../bin/build-dist.ts';

test('the proxy bundle runs `cinch proxy` and lists the sources it was made from', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-dist-'));
  try {
    const outfile = path.join(dir, 'proxy.js');
    await bundle(PROXY_ENTRY, outfile);
    const inputs = fs.readFileSync(inputsFile(outfile), 'utf8').split('\n').filter(Boolean);
    for (const file of ['src/proxy/inbound.ts', 'src/proxy/run.ts', 'src/cli/proxy.ts', 'package-lock.json']) assert.ok(inputs.includes(file), file);
    assert.ok(!inputs.some((f) => f.startsWith('src/kube/') || f.startsWith('src/controlplane/')), 'the control plane stays out of the sidecar');
    const help = spawnSync(process.execPath, [outfile, 'proxy', '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /Usage: cinch proxy/);
    // Without its environment it fails as the source does: exit 2 and the missing variable named.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POD_') && !k.startsWith('CINCH_')));
    const bare = spawnSync(process.execPath, [outfile, 'proxy'], { encoding: 'utf8', env });
    assert.equal(bare.status, 2, bare.stderr);
    assert.match(bare.stderr, /cinch proxy: environment variable \w+ is not set/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
