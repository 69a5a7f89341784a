// `cinch authz check` as a user runs it: a child process over fixture files, checking stdout,
// stderr and the exit code. The child is bin/cinch.js under this same Node (what `npx node` runs).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../..');
const POLICIES = path.join(HERE, 'fixtures/policies');
const request = (name: string): string => path.join(HERE, 'fixtures/requests', name);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cinch(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'bin/cinch.js'), ...args], { cwd: ROOT, env: { ...process.env, CINCH_LOG_LEVEL: 'error' } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function checkJson(requestFile: string, policies = POLICIES): Promise<{ run: Run; result: { decision: string; policy: string | null; reason: string } }> {
  const run = await cinch('authz', 'check', '--policies', policies, '--request', request(requestFile), '-o', 'json');
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { decision: string; policy: string | null; reason: string };
  assert.deepEqual(Object.keys(result), ['decision', 'policy', 'reason'], 'exactly decision, policy and reason');
  return { run, result };
}

// Each case is its own process; running them side by side keeps the file fast.
describe('cinch authz check', { concurrency: true }, () => {
  const decisions: [file: string, decision: string, policy: string | null, reason: RegExp][] = [
    ['allow-get.json', 'ALLOW', 'foo/allow-sleep-get', /ALLOW policy foo\/allow-sleep-get matched/],
    ['deny-admin.json', 'DENY', 'foo/deny-admin', /DENY policy foo\/deny-admin matched/],
    ['deny-post.json', 'DENY', null, /no ALLOW policy matched.*foo\/allow-sleep-get/],
    ['plaintext-claims-namespace.json', 'DENY', null, /no ALLOW policy matched/],
    ['plaintext-strict.json', 'DENY', 'secure/strict', /plaintext connection refused: PeerAuthentication secure\/strict requires mTLS \(STRICT\) on port 8443/],
    ['plaintext-legacy-port.json', 'ALLOW', null, /no ALLOW policy applies/],
    ['tcp-db.json', 'ALLOW', 'db/postgres', /rules\[0\]/],
    ['tcp-db-other-namespace.json', 'DENY', null, /rules \[1\] use HTTP-only fields and never match TCP traffic/],
    ['no-policy.json', 'ALLOW', null, /no ALLOW policy applies to the workload/],
  ];

  for (const [file, decision, policy, reason] of decisions) {
    test(`authz check -o json: ${file} → ${decision} ${policy ?? '(no policy)'}`, async () => {
      const { result } = await checkJson(file);
      assert.equal(result.decision, decision, result.reason);
      assert.equal(result.policy, policy);
      assert.match(result.reason, reason);
    });
  }

  test('authz check reports the invalid policy on stderr and still evaluates the valid ones', async () => {
    const { run, result } = await checkJson('deny-admin.json');
    assert.equal(result.decision, 'DENY');
    assert.match(run.stderr, /AuthorizationPolicy foo\/broken invalid rule, left out: spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: bad port "0"/);
    assert.doesNotMatch(run.stderr, /unrelated|ConfigMap/);
  });

  test('authz check text output is one line starting with the decision', async () => {
    const allow = await cinch('authz', 'check', '--policies', POLICIES, '--request', request('allow-get.json'));
    assert.equal(allow.code, 0, allow.stderr);
    assert.match(allow.stdout, /^ALLOW foo\/allow-sleep-get: ALLOW policy foo\/allow-sleep-get matched \(rules\[0\]\)\n$/);
    const deny = await cinch('authz', 'check', '--policies', POLICIES, '--request', request('deny-post.json'));
    assert.equal(deny.code, 0, deny.stderr);
    assert.match(deny.stdout, /^DENY -: no ALLOW policy matched/);
    assert.equal(deny.stdout.trimEnd().split('\n').length, 1);
  });

  test('authz check takes a single file as well as a folder', async () => {
    const { result } = await checkJson('allow-get.json', path.join(POLICIES, 'foo.yaml'));
    assert.equal(result.decision, 'ALLOW');
    const { result: secure } = await checkJson('plaintext-strict.json', path.join(POLICIES, 'foo.yaml'));
    assert.equal(secure.decision, 'ALLOW', 'without secure.yml nothing requires mTLS');
  });

  test('authz check: a request that is not JSON exits 1 and says so', async () => {
    const run = await cinch('authz', 'check', '--policies', POLICIES, '--request', request('bad-json.json'), '-o', 'json');
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /bad-json\.json is not valid JSON/);
  });

  test('authz check: a request without destination.namespace exits 1 and says so', async () => {
    const run = await cinch('authz', 'check', '--policies', POLICIES, '--request', request('missing-namespace.json'));
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /destination\.namespace is required/);
  });

  test('authz check: a port that is not a number exits 1 and says so', async () => {
    const run = await cinch('authz', 'check', '--policies', POLICIES, '--request', request('bad-port.json'));
    assert.equal(run.code, 1);
    assert.match(run.stderr, /destination\.port is required \(a number 1-65535\)/);
  });

  test('authz check: a missing request file exits 1', async () => {
    const run = await cinch('authz', 'check', '--policies', POLICIES, '--request', request('nope.json'));
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot read the request file .*nope\.json: ENOENT/);
  });

  test('authz check: a missing policies path exits 1', async () => {
    const run = await cinch('authz', 'check', '--policies', path.join(HERE, 'fixtures/none'), '--request', request('allow-get.json'));
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot read policies at .*none: ENOENT/);
  });

  test('authz check: YAML that does not parse exits 1 and names the file', async () => {
    const run = await cinch('authz', 'check', '--policies', request('bad-json.json'), '--request', request('allow-get.json'));
    assert.equal(run.code, 1);
    assert.match(run.stderr, /bad-json\.json: invalid YAML/);
  });

  test('authz check: an unknown output format exits 1', async () => {
    const run = await cinch('authz', 'check', '--policies', POLICIES, '--request', request('allow-get.json'), '-o', 'yaml');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /-o must be 'text' or 'json'/);
  });
});
