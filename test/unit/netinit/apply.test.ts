// The decisions of the apply shell, with a fake command runner: backend detection, error
// messages, the sequence of iptables calls. The real thing runs in test/e2e/netinit.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  NetinitError,
  applyRules,
  binaries,
  chooseBackend,
  classifyFailure,
  detectBackend,
  hasGlobalIpv6,
  renderDryRun,
} from '../../../src/netinit/apply.ts';
import type { CommandResult, CommandRunner } from '../../../src/netinit/apply.ts';
import { buildRestoreInput, validateCaptureOptions } from '../../../src/netinit/rules.ts';

const EMPTY_NAT = '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n';
const ok = (stdout = ''): CommandResult => ({ code: 0, stdout, stderr: '' });
const enoent = (file: string) => Object.assign(new Error(`spawn ${file} ENOENT`), { code: 'ENOENT' });

interface Call {
  file: string;
  args: readonly string[];
  input?: string;
}

/** A fake iptables: one nat table per binary family, restore applies by replaying the plan's effect. */
function fakeIptables(handlers: Partial<Record<string, (call: Call) => CommandResult | Error>>): { run: CommandRunner; calls: Call[] } {
  const calls: Call[] = [];
  const run: CommandRunner = async (file, args, input) => {
    const call = { file, args, input };
    calls.push(call);
    const handler = handlers[file];
    if (!handler) throw enoent(file);
    const result = handler(call);
    if (result instanceof Error) throw result;
    return result;
  };
  return { run, calls };
}

describe('backend detection', () => {
  test('the flavour holding more rules wins; nf_tables on a tie or when alone', () => {
    const rules = (n: number) => `*nat\n${'-A OUTPUT -j RETURN\n'.repeat(n)}COMMIT\n`;
    assert.equal(chooseBackend({ nft: rules(0), legacy: rules(0) }), 'nft');
    assert.equal(chooseBackend({ nft: rules(0), legacy: rules(3) }), 'legacy');
    assert.equal(chooseBackend({ nft: rules(5), legacy: rules(3) }), 'nft');
    assert.equal(chooseBackend({ nft: rules(0) }), 'nft');
    assert.equal(chooseBackend({ legacy: rules(0) }), 'legacy');
    assert.equal(chooseBackend({}), 'default');
    // nft-save's warning about legacy tables is not a rule.
    assert.equal(chooseBackend({ nft: '# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n', legacy: rules(0) }), 'nft');
  });

  test('binary names per backend and family', () => {
    assert.deepEqual(binaries('nft', 4), { save: 'iptables-nft-save', restore: 'iptables-nft-restore' });
    assert.deepEqual(binaries('legacy', 6), { save: 'ip6tables-legacy-save', restore: 'ip6tables-legacy-restore' });
    assert.deepEqual(binaries('default', 4), { save: 'iptables-save', restore: 'iptables-restore' });
  });

  test('a missing flavour is skipped; with neither, plain iptables-save is used, and its absence is a clear error', async () => {
    const onlyLegacy = fakeIptables({ 'iptables-legacy-save': () => ok('*nat\n-A OUTPUT -j X\nCOMMIT\n') });
    assert.equal(await detectBackend(onlyLegacy.run), 'legacy');
    const plain = fakeIptables({ 'iptables-save': () => ok(EMPTY_NAT) });
    assert.equal(await detectBackend(plain.run), 'default');
    const none = fakeIptables({});
    await assert.rejects(detectBackend(none.run), (err: unknown) => {
      assert.ok(err instanceof NetinitError);
      assert.equal(err.code, 'IPTABLES_MISSING');
      assert.match(err.message, /none of iptables-nft-save, iptables-legacy-save, iptables-save is on PATH.*package "iptables"/);
      return true;
    });
  });

  test('IPv6 is auto-enabled only for an address of global scope', () => {
    const lo = '00000000000000000000000000000001 01 80 10 80       lo';
    const linkLocal = 'fe8000000000000000fc00fffe000001 04 40 20 80     eth0';
    const ula = 'fd000000000000000000000000000002 04 40 00 82     eth0';
    assert.equal(hasGlobalIpv6(`${lo}\n${linkLocal}\n`), false);
    assert.equal(hasGlobalIpv6(`${lo}\n${ula}\n${linkLocal}\n`), true);
    assert.equal(hasGlobalIpv6(''), false);
  });
});

describe('errors say what is wrong', () => {
  const nftDenied = { code: 4, stdout: '', stderr: 'iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n' };
  const legacyDenied = { code: 1, stdout: '', stderr: 'iptables-save v1.8.9 (legacy): Cannot initialize: Permission denied (you must be root)\n' };

  test('permission errors name NET_ADMIN', () => {
    for (const result of [nftDenied, legacyDenied, { code: 1, stdout: '', stderr: 'setsockopt: Operation not permitted' }]) {
      const err = classifyFailure('iptables-nft-save', result);
      assert.equal(err.code, 'NET_ADMIN_MISSING');
      assert.match(err.message, /NET_ADMIN capability is missing/);
      assert.match(err.message, /iptables-nft-save: .*(Permission denied|not permitted)/);
    }
  });

  test('a kernel without the nat table, and any other failure', () => {
    const noNat = classifyFailure('ip6tables-legacy-save', { code: 1, stdout: '', stderr: "ip6tables-save: can't initialize ip6tables table `nat': Table does not exist (do you need to insmod?)" });
    assert.equal(noNat.code, 'NAT_UNSUPPORTED');
    const other = classifyFailure('iptables-nft-restore', { code: 1, stdout: '', stderr: 'iptables-nft-restore: line 9 failed: No chain/target/match by that name.' });
    assert.equal(other.code, 'IPTABLES_FAILED');
    assert.match(other.message, /iptables-nft-restore failed: .*line 9 failed/);
    assert.match(classifyFailure('x', { code: 3, stdout: '', stderr: '' }).message, /exit code 3/);
  });

  test('applyRules fails with NET_ADMIN_MISSING when detection is denied', async () => {
    const fake = fakeIptables({ 'iptables-nft-save': () => nftDenied, 'iptables-legacy-save': () => legacyDenied });
    await assert.rejects(applyRules(validateCaptureOptions({}), { run: fake.run }), (err: unknown) => err instanceof NetinitError && err.code === 'NET_ADMIN_MISSING');
  });
});

describe('applyRules', () => {
  /** A fake nat table for each family that "applies" restore input by trusting it, as the kernel would. */
  function stateful(backend: 'nft' | 'legacy') {
    const tables: Record<string, string> = { iptables: EMPTY_NAT, ip6tables: EMPTY_NAT };
    const handlers: Record<string, (call: Call) => CommandResult> = {};
    for (const base of ['iptables', 'ip6tables']) {
      handlers[`${base}-${backend}-save`] = () => ok(tables[base]);
      handlers[`${base}-${backend}-restore`] = (call) => {
        // Model the outcome: the hooks become the ones appended (or kept), once each.
        const hooks = (call.input ?? '').split('\n').filter((l) => /^-A (PREROUTING|OUTPUT) /.test(l));
        const kept = tables[base].split('\n').filter((l) => /^-A (PREROUTING|OUTPUT) /.test(l) && !(call.input ?? '').includes(`-D${l.slice(2)}`));
        tables[base] = `*nat\n:CINCH_INBOUND - [0:0]\n:CINCH_IN_REDIRECT - [0:0]\n:CINCH_OUTPUT - [0:0]\n:CINCH_REDIRECT - [0:0]\n${[...kept, ...hooks].join('\n')}\nCOMMIT\n`;
        return ok();
      };
    }
    return { tables, ...fakeIptables(handlers) };
  }

  test('saves, restores with --noflush, reads back; IPv6 only when asked', async () => {
    const fake = stateful('nft');
    const options = validateCaptureOptions({});
    const report = await applyRules(options, { run: fake.run, backend: 'nft' });
    assert.deepEqual(fake.calls.map((c) => `${c.file} ${c.args.join(' ')}`), [
      'iptables-nft-save -t nat',
      'iptables-nft-restore --noflush -w 5',
      'iptables-nft-save -t nat',
    ]);
    assert.equal(fake.calls[1].input, buildRestoreInput(options, 4, EMPTY_NAT));
    assert.equal(report.backend, 'nft');
    assert.deepEqual(report.families.map((f) => [f.family, f.changedHooks]), [[4, true]]);

    const v6 = stateful('legacy');
    const both = await applyRules(validateCaptureOptions({ ipv6: true }), { run: v6.run, backend: 'legacy' });
    assert.deepEqual(both.families.map((f) => f.family), [4, 6]);
    assert.ok(v6.calls.some((c) => c.file === 'ip6tables-legacy-restore' && c.input?.includes('::1/128')));
  });

  test('a second run keeps the hooks as they are', async () => {
    const fake = stateful('nft');
    const options = validateCaptureOptions({});
    await applyRules(options, { run: fake.run, backend: 'nft' });
    const second = await applyRules(options, { run: fake.run, backend: 'nft' });
    assert.equal(second.families[0].changedHooks, false);
    const input = fake.calls.filter((c) => c.file.endsWith('-restore'))[1].input ?? '';
    assert.doesNotMatch(input, /^-[AD] (PREROUTING|OUTPUT) /m);
  });

  test('a read-back that does not show the hooks exactly once is an error', async () => {
    const fake = fakeIptables({
      'iptables-nft-save': () => ok(`${EMPTY_NAT.replace('COMMIT', '-A OUTPUT -p tcp -j CINCH_OUTPUT\n-A OUTPUT -p tcp -j CINCH_OUTPUT\nCOMMIT')}`),
      'iptables-nft-restore': () => ok(),
    });
    await assert.rejects(applyRules(validateCaptureOptions({}), { run: fake.run, backend: 'nft' }), (err: unknown) => {
      return err instanceof NetinitError && err.code === 'VERIFY_FAILED' && /IPv4 hooks are/.test(err.message);
    });
  });

  test('log lines say which backend and what was applied', async () => {
    const fake = stateful('nft');
    const lines: string[] = [];
    await applyRules(validateCaptureOptions({}), { run: fake.run, backend: 'nft', log: (m, f) => lines.push(`${m} ${JSON.stringify(f)}`) });
    assert.match(lines[0], /backend selected.*"nft"/);
    assert.match(lines[1], /capture rules applied.*iptables-nft-restore/);
  });
});

test('dry run shows both families under comments iptables-restore ignores', () => {
  const text = renderDryRun(validateCaptureOptions({ ipv6: true }));
  assert.match(text, /^# IPv4: iptables-restore --noflush\n\*nat\n/);
  assert.match(text, /\nCOMMIT\n# IPv6: ip6tables-restore --noflush\n\*nat\n/);
  assert.doesNotMatch(renderDryRun(validateCaptureOptions({})), /IPv6/);
});
