// `make run`'s demo (scripts/demo.ts) end to end, run once non-interactively against the test API
// server: it must show the injected pod, the issued identity, a request over mutual TLS, the DENY
// (403 `RBAC: access denied`) and the 200 after the policy is deleted, and leave nothing behind.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { meshSkipReason } from './mesh.ts';
import { REPO_ROOT } from './netns.ts';

const skip = meshSkipReason();
if (skip) process.stderr.write(`demo e2e skipped: ${skip}\n`);

describe('make run demo (scripts/demo.ts)', { skip }, () => {
  test('shows injection, identity, mTLS and the policy decisions, then cleans up', async () => {
    const res = await new Promise<{ code: number | null; stdout: string; stderr: string; pid: number }>((resolve) => {
      const child = execFile(process.execPath, [path.join(REPO_ROOT, 'scripts/demo.ts'), '--unique-names'], { cwd: REPO_ROOT, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr, pid: child.pid! });
      });
    });
    const out = res.stdout;
    assert.equal(res.code, 0, `demo failed:\n${out}\n${res.stderr.slice(-3000)}`);
    for (const expected of [
      /pointed namespace\.inject\.cinch\.dev and object\.inject\.cinch\.dev at https:\/\/127\.0\.0\.1:\d+\/inject/,
      /\+ init container cinch-init/,
      /\+ container\s+cinch-proxy/,
      /readiness GET :15020\/app-health\/web\/readyz/,
      /proxy log: spiffe:\/\/cluster\.local\/ns\/cinch-demo-\w+\/sa\/client, valid until /,
      /URI:spiffe:\/\/cluster\.local\/ns\/cinch-demo-\w+\/sa\/server, valid /,
      /GET http:\/\/10\.78\.0\.11:8080\/hello: 200 "hello from server-app \/hello"/,
      /connection_security_policy="mutual_tls",source_principal="spiffe:\/\/cluster\.local\/ns\/cinch-demo-\w+\/sa\/client"\} [1-9]/,
      /client → server: 403 "RBAC: access denied"/,
      /client → server: 200 "hello from server-app \/hello"/,
      /deleted the Kubernetes namespaces and every network namespace/,
    ]) {
      assert.match(out, expected);
    }
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`cinchtest-${res.pid}-`));
    assert.deepEqual(left, [], 'no network namespace of the demo is left');
  });
});
