// Leader election on a real Lease: one leader at a time, takeover after a crash within the lease duration,
// immediate handover on a clean stop.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { LeaderElector } from '../../src/kube/leader.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';

const kc = testKubeConfig();
const logger = createLogger({ stream: new PassThrough(), level: 'error' });
let ns: { name: string; cleanup: () => Promise<void> };
before(async () => (ns = await createNamespace(kc, 'leader')));
after(async () => ns.cleanup());

function candidate(identity: string, lease: string, events: string[]) {
  return new LeaderElector(kc, {
    namespace: ns.name,
    name: lease,
    identity,
    leaseDurationSeconds: 2,
    retryPeriodMs: 200,
    renewDeadlineMs: 1500,
    logger,
    onStartedLeading: () => events.push(`${identity}:start`),
    onStoppedLeading: () => events.push(`${identity}:stop`),
  });
}

async function waitFor(cond: () => boolean, ms: number): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - start;
}

test('exactly one of two candidates leads, and the other takes over after the leader dies', async () => {
  const events: string[] = [];
  const a = candidate('a', 'crash', events);
  const b = candidate('b', 'crash', events);
  a.start();
  b.start();
  await waitFor(() => a.isLeader || b.isLeader, 5000);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(Number(a.isLeader) + Number(b.isLeader), 1, 'exactly one leader');
  const [leader, follower] = a.isLeader ? [a, b] : [b, a];
  await leader.stop({ release: false }); // a crash: no release, the lease must expire
  const tookMs = await waitFor(() => follower.isLeader, 6000);
  assert.ok(tookMs <= 2000 + 200 + 1000, `takeover in ${tookMs} ms, within lease duration + retry period`);
  await follower.stop();
  assert.equal(events.filter((e) => e.endsWith(':start')).length, 2);
});

test('a clean stop hands the lease over at once', async () => {
  const events: string[] = [];
  const a = candidate('a', 'clean', events);
  a.start();
  await waitFor(() => a.isLeader, 5000);
  const b = candidate('b', 'clean', events);
  b.start();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(b.isLeader, false);
  await a.stop();
  const tookMs = await waitFor(() => b.isLeader, 3000);
  assert.ok(tookMs < 1500, `handover in ${tookMs} ms`);
  await b.stop();
});
