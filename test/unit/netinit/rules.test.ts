// Golden tests of the iptables rule builder, and every validation error.
// Regenerate the golden files after a deliberate change with: UPDATE_GOLDEN=1 npx node --test test/unit/netinit/
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  CaptureConfigError,
  buildRestoreInput,
  buildRuleSet,
  cinchHooks,
  normalizeCidr,
  parseCidrSelection,
  parseCidrs,
  parseId,
  parseNatSave,
  parsePort,
  parsePortSelection,
  parsePorts,
  planRules,
  validateCaptureOptions,
} from '../../../src/netinit/rules.ts';
import type { CaptureOptions } from '../../../src/netinit/rules.ts';

const GOLDEN_DIR = path.join(import.meta.dirname, 'golden');

function render(options: CaptureOptions): string {
  const set = buildRuleSet(options);
  return `# IPv4\n${set.ipv4}${set.ipv6 === undefined ? '' : `# IPv6\n${set.ipv6}`}`;
}

function golden(name: string, input: Partial<CaptureOptions>): void {
  test(`golden: ${name}`, () => {
    const actual = render(validateCaptureOptions(input));
    const file = path.join(GOLDEN_DIR, `${name}.golden`);
    if (process.env.UPDATE_GOLDEN === '1') {
      fs.mkdirSync(GOLDEN_DIR, { recursive: true });
      fs.writeFileSync(file, actual);
    }
    assert.equal(actual, fs.readFileSync(file, 'utf8'), `${name}: output differs from ${file}`);
  });
}

describe('rule builder (golden)', () => {
  golden('defaults', {});
  golden('include-inbound-ports', { includeInboundPorts: [9090, 8080, 15020] });
  golden('exclusions', {
    excludeInboundPorts: [22, 8443],
    excludeOutboundPorts: [5432, 53],
    excludeOutboundCidrs: ['10.96.0.0/12', '169.254.169.254'],
  });
  golden('include-exclude-cidrs', {
    includeOutboundCidrs: ['10.0.0.0/8', '172.16.0.0/12', 'fd00::/8'],
    excludeOutboundCidrs: ['10.96.0.0/12', 'fd00:10:96::/112'],
    ipv6: true,
  });
  golden('ipv6', { ipv6: true });
  golden('many-ports', {
    excludeInboundPorts: Array.from({ length: 20 }, (_, i) => 9000 + i),
    excludeOutboundPorts: Array.from({ length: 31 }, (_, i) => 20000 + i * 10),
    includeInboundPorts: '*',
  });
  golden('many-include-ports', { includeInboundPorts: Array.from({ length: 16 }, (_, i) => 8000 + i) });
  golden('proxy-gid-custom-ports', { proxyUid: 2102, proxyGid: 2102, inboundPort: 4143, outboundPort: 4140 });
  golden('no-inbound-capture', { includeInboundPorts: [] });
  golden('no-outbound-capture', { includeOutboundCidrs: [] });
});

describe('rule builder (properties)', () => {
  test('is deterministic and independent of list order and duplicates', () => {
    const a = render(validateCaptureOptions({ excludeInboundPorts: [3, 1, 2, 1], excludeOutboundCidrs: ['10.0.0.0/8', '10.0.0.0/8'] }));
    const b = render(validateCaptureOptions({ excludeInboundPorts: [1, 2, 3], excludeOutboundCidrs: ['10.0.0.0/8'] }));
    assert.equal(a, b);
  });

  test('15020 and 15021 are never captured inbound, even when listed for capture', () => {
    const { rules } = planRules(validateCaptureOptions({ includeInboundPorts: [15020, 15021, 80] }), 4);
    assert.deepEqual(rules.filter((r) => r.startsWith('-A CINCH_INBOUND')), ['-A CINCH_INBOUND -p tcp -m tcp --dport 80 -j CINCH_IN_REDIRECT']);
    const all = planRules(validateCaptureOptions({}), 4).rules;
    assert.ok(all.includes('-A CINCH_INBOUND -p tcp -m multiport --dports 15020,15021 -j RETURN'));
  });

  test('an include list of only excluded ports captures nothing inbound', () => {
    const { hooks } = planRules(validateCaptureOptions({ includeInboundPorts: [15021] }), 4);
    assert.deepEqual(hooks, ['-A OUTPUT -p tcp -j CINCH_OUTPUT']);
  });

  test('multiport lists are split at 15 ports', () => {
    const { rules } = planRules(validateCaptureOptions({ excludeOutboundPorts: Array.from({ length: 31 }, (_, i) => i + 1) }), 4);
    const groups = rules.filter((r) => r.includes('--dports') && r.startsWith('-A CINCH_OUTPUT')).map((r) => /--dports (\S+)/.exec(r)![1].split(',').length);
    assert.deepEqual(groups, [15, 15]);
    assert.ok(rules.includes('-A CINCH_OUTPUT -p tcp -m tcp --dport 31 -j RETURN'), 'a lone port uses --dport');
  });

  test('CIDRs go to the table of their family only', () => {
    const o = validateCaptureOptions({ includeOutboundCidrs: ['10.0.0.0/8'], excludeOutboundCidrs: ['fd00::/8'], ipv6: true });
    const v4 = planRules(o, 4).rules.join('\n');
    const v6 = planRules(o, 6);
    assert.match(v4, /-d 10\.0\.0\.0\/8 -j CINCH_REDIRECT/);
    assert.doesNotMatch(v4, /fd00/);
    // No IPv6 destination is included: nothing to capture outbound over IPv6.
    assert.deepEqual(v6.hooks, ['-A PREROUTING -p tcp -j CINCH_INBOUND']);
  });

  test('no ip6tables rules unless asked', () => {
    assert.equal(buildRuleSet(validateCaptureOptions({})).ipv6, undefined);
    assert.ok(buildRuleSet(validateCaptureOptions({ ipv6: true })).ipv6?.includes('::1/128'));
  });
});

describe('idempotent restore input', () => {
  const options = validateCaptureOptions({});
  const fresh = buildRestoreInput(options, 4);
  const savedAfterApply = [
    '# Generated by iptables-save v1.8.9',
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ':CINCH_INBOUND - [0:0]',
    ':CINCH_IN_REDIRECT - [0:0]',
    ':CINCH_OUTPUT - [0:0]',
    ':CINCH_REDIRECT - [0:0]',
    '-A PREROUTING -p tcp -j CINCH_INBOUND',
    '-A OUTPUT -p udp -j RETURN',
    '-A OUTPUT -p tcp -j CINCH_OUTPUT',
    '-A CINCH_INBOUND -p tcp -j CINCH_IN_REDIRECT',
    'COMMIT',
  ].join('\n');

  test('with nothing installed it is the fresh rule set', () => {
    assert.equal(buildRestoreInput(options, 4, ''), fresh);
    assert.ok(fresh.includes('-A PREROUTING -p tcp -j CINCH_INBOUND'));
  });

  test('hooks already right are kept (not deleted, not appended again)', () => {
    const input = buildRestoreInput(options, 4, savedAfterApply);
    assert.doesNotMatch(input, /^-D /m);
    assert.doesNotMatch(input, /^-A (PREROUTING|OUTPUT) /m);
    // Cinch's own chains are still declared (flushed) and refilled.
    assert.match(input, /^:CINCH_OUTPUT - \[0:0\]$/m);
    assert.match(input, /^-A CINCH_REDIRECT -p tcp -j REDIRECT --to-ports 15001$/m);
  });

  test('duplicated or outdated hooks are all deleted and appended once', () => {
    const messy = savedAfterApply.replace('-A OUTPUT -p udp -j RETURN', '-A OUTPUT -j CINCH_OUTPUT\n-A OUTPUT -p udp -j RETURN');
    const input = buildRestoreInput(options, 4, messy);
    assert.deepEqual(input.split('\n').filter((l) => /^-[AD] (PREROUTING|OUTPUT) /.test(l)), [
      '-D OUTPUT -j CINCH_OUTPUT',
      '-D OUTPUT -p tcp -j CINCH_OUTPUT',
      '-A OUTPUT -p tcp -j CINCH_OUTPUT',
    ]);
    assert.doesNotMatch(input, /udp/, "other rules are never touched");
  });

  test('hooks no longer wanted are removed', () => {
    const input = buildRestoreInput(validateCaptureOptions({ includeInboundPorts: [] }), 4, savedAfterApply);
    assert.match(input, /^-D PREROUTING -p tcp -j CINCH_INBOUND$/m);
    assert.doesNotMatch(input, /^-A PREROUTING/m);
  });

  test('CINCH_ chains this version does not use are flushed and deleted', () => {
    const old = savedAfterApply.replace(':CINCH_REDIRECT - [0:0]', ':CINCH_REDIRECT - [0:0]\n:CINCH_DNS - [0:0]');
    const input = buildRestoreInput(options, 4, old);
    const lines = input.split('\n');
    assert.ok(lines.indexOf(':CINCH_DNS - [0:0]') >= 0 && lines.indexOf(':CINCH_DNS - [0:0]') < lines.indexOf('-X CINCH_DNS'));
  });

  test('parseNatSave and cinchHooks read only the nat table', () => {
    const text = `*filter\n:FOO - [0:0]\n-A INPUT -j CINCH_X\nCOMMIT\n${savedAfterApply}\n`;
    const state = parseNatSave(text);
    assert.deepEqual(state.chains, ['CINCH_INBOUND', 'CINCH_IN_REDIRECT', 'CINCH_OUTPUT', 'CINCH_REDIRECT']);
    assert.deepEqual(cinchHooks(text), ['-A PREROUTING -p tcp -j CINCH_INBOUND', '-A OUTPUT -p tcp -j CINCH_OUTPUT']);
  });
});

describe('normalization', () => {
  test('CIDRs: bare addresses get a full prefix, host bits are cleared, IPv6 is compressed', () => {
    assert.equal(normalizeCidr('10.1.2.3', 'f'), '10.1.2.3/32');
    assert.equal(normalizeCidr(' 10.1.2.3/8 ', 'f'), '10.0.0.0/8');
    assert.equal(normalizeCidr('0.0.0.0/0', 'f'), '0.0.0.0/0');
    assert.equal(normalizeCidr('FD00:0:0:0:0:0:0:1', 'f'), 'fd00::1/128');
    assert.equal(normalizeCidr('fd00:10:96::1/112', 'f'), 'fd00:10:96::/112');
    assert.equal(normalizeCidr('2001:db8:0:0:1:0:0:1/128', 'f'), '2001:db8::1:0:0:1/128');
    assert.equal(normalizeCidr('::ffff:10.1.2.3/120', 'f'), '::ffff:a01:200/120');
    assert.equal(normalizeCidr('::/0', 'f'), '::/0');
  });

  test('lists: blanks and spaces are ignored', () => {
    assert.deepEqual(parsePorts(' 80, 443,,', 'f'), [80, 443]);
    assert.deepEqual(parsePorts('', 'f'), []);
    assert.equal(parsePortSelection(' * ', 'f'), '*');
    assert.deepEqual(parseCidrs('10.0.0.0/8, fd00::/8', 'f'), ['10.0.0.0/8', 'fd00::/8']);
    assert.equal(parseCidrSelection('*', 'f'), '*');
    assert.deepEqual(parseCidrSelection('', 'f'), []);
  });

  test('validation fills defaults and always excludes 15020 and 15021', () => {
    assert.deepEqual(validateCaptureOptions({}), {
      proxyUid: 1337,
      inboundPort: 15006,
      outboundPort: 15001,
      includeInboundPorts: '*',
      excludeInboundPorts: [15020, 15021],
      excludeOutboundPorts: [],
      includeOutboundCidrs: '*',
      excludeOutboundCidrs: [],
      ipv6: false,
    });
    assert.equal(validateCaptureOptions({ proxyGid: 0 }).proxyGid, 0);
    assert.equal(parseId('0', 'f'), 0);
    assert.equal(parseId('4294967294', 'f'), 4294967294);
  });
});

describe('validation errors', () => {
  function fails(fn: () => unknown, field: string, message: RegExp): void {
    assert.throws(fn, (err: unknown) => {
      assert.ok(err instanceof CaptureConfigError, `expected CaptureConfigError, got ${String(err)}`);
      assert.equal(err.field, field);
      assert.ok(err.message.startsWith(`${field}: `), err.message);
      assert.match(err.message, message);
      return true;
    });
  }

  test('bad ports', () => {
    for (const bad of ['abc', '0', '65536', '80.5', '-1', '', '8000-8080', '1e3', '0x50', '123456']) {
      fails(() => parsePort(bad, '--inbound-port'), '--inbound-port', /invalid port .*expected a whole number 1-65535/);
    }
    fails(() => parsePorts('80,abc', '--exclude-inbound-ports'), '--exclude-inbound-ports', /invalid port "abc"/);
    fails(() => parsePortSelection('80,99999', '--inbound-ports'), '--inbound-ports', /invalid port "99999"/);
  });

  test('"*" only where allowed, and alone', () => {
    fails(() => parsePorts('*', '--exclude-outbound-ports'), '--exclude-outbound-ports', /"\*" is not allowed here/);
    fails(() => parsePortSelection('*,80', '--inbound-ports'), '--inbound-ports', /"\*" must be the only entry/);
    fails(() => parseCidrs('*', '--exclude-outbound-cidrs'), '--exclude-outbound-cidrs', /"\*" is not allowed in an exclude list/);
    fails(() => parseCidrs('10.0.0.0/8,*', 'traffic.cinch.dev/exclude-outbound-cidrs'), 'traffic.cinch.dev/exclude-outbound-cidrs', /not allowed in an exclude list/);
    fails(() => parseCidrSelection('*,10.0.0.0/8', '--include-outbound-cidrs'), '--include-outbound-cidrs', /must be the only entry/);
  });

  test('bad CIDRs', () => {
    const cases: [string, RegExp][] = [
      ['10.0.0.0/33', /prefix length must be 0-32/],
      ['fd00::/129', /prefix length must be 0-128/],
      ['10.0.0.0/', /prefix length/],
      ['10.0.0.0/abc', /prefix length/],
      ['10.0.0.0/-1', /prefix length/],
      ['10.0.0/8', /"10\.0\.0" is not an IPv4 or IPv6 address/],
      ['256.0.0.0/8', /not an IPv4 or IPv6 address/],
      ['hello', /not an IPv4 or IPv6 address/],
      ['fe80::1%eth0/64', /not an IPv4 or IPv6 address/],
      ['fd00:::1/64', /not an IPv4 or IPv6 address/],
    ];
    for (const [bad, message] of cases) {
      fails(() => parseCidrs(bad, '--exclude-outbound-cidrs'), '--exclude-outbound-cidrs', message);
      assert.throws(() => parseCidrs(bad, 'x'), (e: unknown) => e instanceof CaptureConfigError && e.message.includes(JSON.stringify(bad)));
    }
  });

  test('bad ids', () => {
    for (const bad of ['-1', '4294967295', 'x', '', '1.5']) fails(() => parseId(bad, '--proxy-uid'), '--proxy-uid', /invalid id .*0-4294967294/);
  });

  test('typed options are checked too', () => {
    fails(() => validateCaptureOptions({ inboundPort: 0 }), 'inboundPort', /invalid port 0/);
    fails(() => validateCaptureOptions({ outboundPort: 70000 }), 'outboundPort', /invalid port 70000/);
    fails(() => validateCaptureOptions({ inboundPort: 15001 }), 'outboundPort', /must differ from inboundPort/);
    fails(() => validateCaptureOptions({ proxyUid: -1 }), 'proxyUid', /invalid id -1/);
    fails(() => validateCaptureOptions({ proxyUid: 1.5 }), 'proxyUid', /invalid id 1.5/);
    fails(() => validateCaptureOptions({ proxyGid: 2 ** 32 }), 'proxyGid', /invalid id/);
    fails(() => validateCaptureOptions({ includeInboundPorts: [0] }), 'includeInboundPorts', /invalid port 0/);
    fails(() => validateCaptureOptions({ excludeInboundPorts: [65536] }), 'excludeInboundPorts', /invalid port 65536/);
    fails(() => validateCaptureOptions({ excludeOutboundPorts: [1.5] }), 'excludeOutboundPorts', /invalid port 1.5/);
    fails(() => validateCaptureOptions({ includeOutboundCidrs: ['bad'] }), 'includeOutboundCidrs', /invalid CIDR "bad"/);
    fails(() => validateCaptureOptions({ includeOutboundCidrs: ['*', '10.0.0.0/8'] }), 'includeOutboundCidrs', /"\*" must be the only entry/);
    fails(() => validateCaptureOptions({ excludeOutboundCidrs: ['*'] }), 'excludeOutboundCidrs', /"\*" is not allowed in an exclude list/);
  });
});
