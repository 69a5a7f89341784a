// The executable as users run it: a child process on the pinned Node.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const root = path.resolve(import.meta.dirname, '../../..');
const cinch = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/cinch.js'), ...args], { encoding: 'utf8' });

test('--help lists every subcommand of the design', () => {
  const res = cinch('--help');
  assert.equal(res.status, 0, res.stderr);
  for (const cmd of ['control-plane', 'proxy', 'init', 'inject', 'ca', 'authz', 'check']) {
    assert.match(res.stdout, new RegExp(`^\\s+${cmd}\\b`, 'm'), `missing ${cmd}`);
  }
});

test('subcommand help explains the nested commands', () => {
  assert.match(cinch('ca', '--help').stdout, /init[\s\S]*inspect[\s\S]*rotate/);
  assert.match(cinch('authz', 'check', '--help').stdout, /--policies <path>[\s\S]*--request <file>/);
});

test('an unknown flag exits non-zero with a message', () => {
  const res = cinch('--no-such-flag');
  assert.notEqual(res.status, 0);
  assert.match(res.stderr, /unknown option '--no-such-flag'/);
});

test('an unknown command exits non-zero with a message', () => {
  const res = cinch('frobnicate');
  assert.notEqual(res.status, 0);
  assert.match(res.stderr, /unknown command 'frobnicate'/);
});

test('an invalid --log-level is refused by the command that uses it', () => {
  const res = cinch('--log-level', 'loud', 'control-plane', '--kubeconfig', '/nonexistent');
  assert.notEqual(res.status, 0);
  assert.match(res.stderr, /loud/);
});
