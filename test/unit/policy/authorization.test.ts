// AuthorizationPolicy semantics, table-driven. The match table states, for one field or condition,
// whether a request matches; each row then runs twice, as an ALLOW policy (match → ALLOW, else
// DENY) and as a DENY policy (match → DENY, else ALLOW), so both actions agree on every field.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AuthzInput } from '../../../src/policy/types.ts';
import { SLEEP, ap, decide, http, pa, tcp } from './support.ts';

type Where = 'source' | 'operation' | 'when';
interface MatchRow {
  name: string;
  where: Where;
  spec: Record<string, unknown>;
  input: AuthzInput;
  match: boolean;
}

const src = (name: string, spec: Record<string, unknown>, input: AuthzInput, match: boolean): MatchRow => ({ name, where: 'source', spec, input, match });
const op = (name: string, spec: Record<string, unknown>, input: AuthzInput, match: boolean): MatchRow => ({ name, where: 'operation', spec, input, match });
const when = (name: string, spec: Record<string, unknown>, input: AuthzInput, match: boolean): MatchRow => ({ name, where: 'when', spec, input, match });

const matchRows: MatchRow[] = [
  // principals: exact, prefix, suffix, presence; mTLS needed
  src('principals exact', { principals: [SLEEP] }, http(), true),
  src('principals exact, other caller', { principals: ['cluster.local/ns/bar/sa/other'] }, http(), false),
  src('principals: any listed value', { principals: ['cluster.local/ns/x/sa/y', SLEEP] }, http(), true),
  src('principals prefix*', { principals: ['cluster.local/ns/bar/*'] }, http(), true),
  src('principals prefix*, no match', { principals: ['cluster.local/ns/baz/*'] }, http(), false),
  src('principals *suffix', { principals: ['*/sa/sleep'] }, http(), true),
  src('principals *suffix, no match', { principals: ['*/sa/curl'] }, http(), false),
  src('principals * (any authenticated peer)', { principals: ['*'] }, http(), true),
  src('principals * never matches plaintext', { principals: ['*'] }, http({ principal: null }), false),
  src('principals exact never matches plaintext', { principals: [SLEEP] }, http({ principal: null }), false),
  src('principals: spiffe:// on the peer identity is ignored', { principals: [SLEEP] }, http({ principal: `spiffe://${SLEEP}` }), true),
  src('principals are case-sensitive', { principals: ['cluster.local/ns/BAR/sa/sleep'] }, http(), false),
  src('notPrincipals exact excludes the caller', { notPrincipals: [SLEEP] }, http(), false),
  src('notPrincipals other caller', { notPrincipals: ['cluster.local/ns/bar/sa/other'] }, http(), true),
  src('notPrincipals * matches plaintext', { notPrincipals: ['*'] }, http({ principal: null }), true),
  src('notPrincipals * excludes mTLS callers', { notPrincipals: ['*'] }, http(), false),
  src('notPrincipals prefix* excludes', { notPrincipals: ['cluster.local/*'] }, http(), false),
  // namespaces come from the principal, never from a claim
  src('namespaces exact', { namespaces: ['bar'] }, http(), true),
  src('namespaces other', { namespaces: ['foo'] }, http(), false),
  src('namespaces prefix*', { namespaces: ['ba*'] }, http(), true),
  src('namespaces *suffix', { namespaces: ['*ar'] }, http(), true),
  src('namespaces * needs mTLS', { namespaces: ['*'] }, http(), true),
  src('namespaces * never matches plaintext', { namespaces: ['*'] }, http({ principal: null }), false),
  src('namespaces: a wildcard inside is a glob, as Istio\'s regex', { namespaces: ['b*r'] }, http(), true),
  src('namespaces: plaintext caller has no namespace', { namespaces: ['bar'] }, http({ principal: null }), false),
  src('namespaces read from the principal', { namespaces: ['qux'] }, http({ principal: 'cluster.local/ns/qux/sa/x' }), true),
  src('namespaces: another trust domain, same namespace', { namespaces: ['bar'] }, http({ principal: 'example.org/ns/bar/sa/sleep' }), true),
  src('notNamespaces excludes the caller namespace', { notNamespaces: ['bar'] }, http(), false),
  src('notNamespaces other', { notNamespaces: ['foo'] }, http(), true),
  src('notNamespaces matches plaintext', { notNamespaces: ['bar'] }, http({ principal: null }), true),
  // serviceAccounts: ns/sa, or sa in the policy namespace (foo)
  src('serviceAccounts ns/sa', { serviceAccounts: ['bar/sleep'] }, http(), true),
  src('serviceAccounts other sa', { serviceAccounts: ['bar/curl'] }, http(), false),
  src('serviceAccounts bare name means the policy namespace', { serviceAccounts: ['sleep'] }, http(), false),
  src('serviceAccounts bare name in the policy namespace', { serviceAccounts: ['sleep'] }, http({ principal: 'cluster.local/ns/foo/sa/sleep' }), true),
  src('serviceAccounts ignore the trust domain', { serviceAccounts: ['bar/sleep'] }, http({ principal: 'other.td/ns/bar/sa/sleep' }), true),
  src('serviceAccounts need mTLS', { serviceAccounts: ['bar/sleep'] }, http({ principal: null }), false),
  src('notServiceAccounts excludes', { notServiceAccounts: ['bar/sleep'] }, http(), false),
  src('notServiceAccounts matches others', { notServiceAccounts: ['bar/curl'] }, http(), true),
  src('notServiceAccounts matches plaintext', { notServiceAccounts: ['bar/sleep'] }, http({ principal: null }), true),
  // ipBlocks and remoteIpBlocks (no gateway: both the packet source)
  src('ipBlocks CIDR', { ipBlocks: ['10.0.0.0/8'] }, http(), true),
  src('ipBlocks single address', { ipBlocks: ['10.0.0.7'] }, http(), true),
  src('ipBlocks other address', { ipBlocks: ['10.0.0.8'] }, http(), false),
  src('ipBlocks /32', { ipBlocks: ['10.0.0.7/32'] }, http(), true),
  src('ipBlocks /0 matches all IPv4', { ipBlocks: ['0.0.0.0/0'] }, http(), true),
  src('ipBlocks non-octet prefix', { ipBlocks: ['10.0.0.0/29'] }, http(), true),
  src('ipBlocks non-octet prefix, outside', { ipBlocks: ['10.0.0.8/29'] }, http(), false),
  src('ipBlocks IPv6 CIDR', { ipBlocks: ['fd00::/8'] }, http({ sourceIp: 'fd00::7' }), true),
  src('ipBlocks IPv6 outside', { ipBlocks: ['fd00::/16'] }, http({ sourceIp: 'fd01::7' }), false),
  src('ipBlocks IPv4 never matches IPv6', { ipBlocks: ['0.0.0.0/0'] }, http({ sourceIp: '::1' }), false),
  src('ipBlocks IPv4-mapped source counts as IPv4', { ipBlocks: ['10.0.0.0/8'] }, http({ sourceIp: '::ffff:10.0.0.7' }), true),
  src('ipBlocks plaintext is fine', { ipBlocks: ['10.0.0.0/8'] }, http({ principal: null }), true),
  src('notIpBlocks excludes', { notIpBlocks: ['10.0.0.0/24'] }, http(), false),
  src('notIpBlocks other range', { notIpBlocks: ['192.168.0.0/16'] }, http(), true),
  src('remoteIpBlocks is the source address', { remoteIpBlocks: ['10.0.0.0/24'] }, http(), true),
  src('remoteIpBlocks other', { remoteIpBlocks: ['172.16.0.0/12'] }, http(), false),
  src('notRemoteIpBlocks excludes', { notRemoteIpBlocks: ['10.0.0.7'] }, http(), false),
  src('notRemoteIpBlocks other', { notRemoteIpBlocks: ['10.0.0.8'] }, http(), true),
  // fields of one source are ANDed
  src('principals AND ipBlocks both match', { principals: [SLEEP], ipBlocks: ['10.0.0.0/8'] }, http(), true),
  src('principals match, ipBlocks not', { principals: [SLEEP], ipBlocks: ['192.168.0.0/16'] }, http(), false),
  src('namespaces match, notPrincipals excludes', { namespaces: ['bar'], notPrincipals: [SLEEP] }, http(), false),
  src('principals and notPrincipals in one source', { principals: ['cluster.local/ns/bar/*'], notPrincipals: ['*/sa/curl'] }, http(), true),

  // hosts: case-insensitive, with or without port
  op('hosts exact, request carries a port', { hosts: ['httpbin.foo'] }, http(), true),
  op('hosts exact, request without port', { hosts: ['httpbin.foo'] }, http({ host: 'httpbin.foo' }), true),
  op('hosts case-insensitive', { hosts: ['HTTPBIN.Foo'] }, http(), true),
  op('hosts with port', { hosts: ['httpbin.foo:8000'] }, http(), true),
  op('hosts with another port', { hosts: ['httpbin.foo:9000'] }, http(), false),
  op('hosts with port, request without', { hosts: ['httpbin.foo:8000'] }, http({ host: 'httpbin.foo' }), false),
  op('hosts other', { hosts: ['example.com'] }, http(), false),
  op('hosts prefix*', { hosts: ['httpbin.*'] }, http(), true),
  op('hosts *suffix', { hosts: ['*.foo'] }, http(), true),
  op('hosts *suffix with port', { hosts: ['*:8000'] }, http(), true),
  op('hosts *suffix, no match', { hosts: ['*.bar'] }, http(), false),
  op('hosts *', { hosts: ['*'] }, http(), true),
  op('hosts FQDN is another host', { hosts: ['httpbin.foo.svc.cluster.local'] }, http(), false),
  op('hosts IPv6 literal with port', { hosts: ['[fd00::1]'] }, http({ host: '[fd00::1]:8000' }), true),
  op('notHosts excludes', { notHosts: ['httpbin.foo'] }, http(), false),
  op('notHosts other', { notHosts: ['example.com'] }, http(), true),
  op('notHosts *suffix excludes', { notHosts: ['*.FOO'] }, http(), false),
  // ports
  op('ports', { ports: ['8000'] }, http(), true),
  op('ports other', { ports: ['9000'] }, http(), false),
  op('ports any listed', { ports: ['9000', '8000'] }, http(), true),
  op('notPorts excludes', { notPorts: ['8000'] }, http(), false),
  op('notPorts other', { notPorts: ['9000'] }, http(), true),
  // methods: case-sensitive
  op('methods', { methods: ['GET'] }, http(), true),
  op('methods other', { methods: ['POST'] }, http(), false),
  op('methods are case-sensitive', { methods: ['get'] }, http(), false),
  op('methods any listed', { methods: ['POST', 'GET'] }, http(), true),
  op('methods prefix*', { methods: ['G*'] }, http(), true),
  op('methods *', { methods: ['*'] }, http({ method: 'DELETE' }), true),
  op('notMethods excludes', { notMethods: ['GET'] }, http(), false),
  op('notMethods other', { notMethods: ['POST', 'PUT'] }, http(), true),
  // paths: exact, prefix, suffix, presence, templates, on the normalized path
  op('paths exact', { paths: ['/headers'] }, http(), true),
  op('paths exact, other', { paths: ['/ip'] }, http(), false),
  op('paths exact ignores the query', { paths: ['/headers'] }, http({ path: '/headers?x=1' }), true),
  op('paths exact, trailing slash is another path', { paths: ['/headers'] }, http({ path: '/headers/' }), false),
  op('paths are case-sensitive', { paths: ['/Headers'] }, http(), false),
  op('paths prefix*', { paths: ['/api/*'] }, http({ path: '/api/v1/users' }), true),
  op('paths prefix* needs the prefix', { paths: ['/api/*'] }, http({ path: '/apix' }), false),
  op('paths prefix without slash', { paths: ['/head*'] }, http(), true),
  op('paths *suffix', { paths: ['*.png'] }, http({ path: '/img/a.png' }), true),
  op('paths *suffix with query', { paths: ['*.png'] }, http({ path: '/img/a.png?size=2' }), true),
  op('paths *suffix, no match', { paths: ['*.png'] }, http({ path: '/img/a.jpg' }), false),
  op('paths *', { paths: ['*'] }, http(), true),
  op('paths normalized: dot segments', { paths: ['/admin'] }, http({ path: '/public/../admin' }), true),
  op('paths normalized: single dots', { paths: ['/admin/x'] }, http({ path: '/admin/./x' }), true),
  op('paths normalized: encoded unreserved characters', { paths: ['/admin'] }, http({ path: '/%61dmin' }), true),
  op('paths normalized: encoded dots', { paths: ['/admin'] }, http({ path: '/x/%2e%2e/admin' }), true),
  op('paths normalized: backslashes', { paths: ['/admin/x'] }, http({ path: '\\admin\\x' }), true),
  op('paths: an encoded slash stays encoded', { paths: ['/a/b'] }, http({ path: '/a%2Fb' }), false),
  op('paths template {*} one segment', { paths: ['/users/{*}/profile'] }, http({ path: '/users/42/profile' }), true),
  op('paths template {*} not two segments', { paths: ['/users/{*}/profile'] }, http({ path: '/users/4/2/profile' }), false),
  op('paths template {*} at the end', { paths: ['/users/{*}'] }, http({ path: '/users/42' }), true),
  op('paths template {*} needs a segment', { paths: ['/users/{*}'] }, http({ path: '/users/' }), false),
  op('paths template {**} many segments', { paths: ['/files/{**}'] }, http({ path: '/files/a/b/c.txt' }), true),
  op('paths template {**} with a suffix', { paths: ['/{*}/media/{**}.mp4'] }, http({ path: '/tv/media/s1/e1.mp4' }), true),
  op('paths template {**} with a suffix, other', { paths: ['/{*}/media/{**}.mp4'] }, http({ path: '/tv/media/s1/e1.mkv' }), false),
  op('notPaths excludes', { notPaths: ['/headers'] }, http(), false),
  op('notPaths other', { notPaths: ['/admin*'] }, http(), true),
  op('notPaths normalized', { notPaths: ['/admin*'] }, http({ path: '/x/../admin/users' }), false),
  // fields of one operation are ANDed
  op('methods AND paths', { methods: ['GET'], paths: ['/headers'] }, http(), true),
  op('methods match, paths not', { methods: ['GET'], paths: ['/ip'] }, http(), false),
  op('hosts, ports, methods, paths all match', { hosts: ['httpbin.foo'], ports: ['8000'], methods: ['GET'], paths: ['/h*'] }, http(), true),
  op('paths match, notMethods excludes', { paths: ['*'], notMethods: ['GET'] }, http(), false),

  // when conditions
  when('source.ip', { key: 'source.ip', values: ['10.0.0.0/8'] }, http(), true),
  when('source.ip other', { key: 'source.ip', values: ['192.168.1.1'] }, http(), false),
  when('source.ip notValues', { key: 'source.ip', notValues: ['10.0.0.7'] }, http(), false),
  when('source.ip IPv6', { key: 'source.ip', values: ['2001:db8::/32'] }, http({ sourceIp: '2001:db8::1' }), true),
  when('remote.ip', { key: 'remote.ip', values: ['10.0.0.7'] }, http(), true),
  when('remote.ip notValues', { key: 'remote.ip', notValues: ['10.0.0.0/8'] }, http(), false),
  when('destination.ip', { key: 'destination.ip', values: ['10.1.0.0/16'] }, http({ destinationIp: '10.1.2.3' }), true),
  when('destination.ip other', { key: 'destination.ip', values: ['10.2.0.0/16'] }, http({ destinationIp: '10.1.2.3' }), false),
  when('destination.ip unknown never matches values', { key: 'destination.ip', values: ['0.0.0.0/0'] }, http(), false),
  when('destination.ip unknown passes notValues', { key: 'destination.ip', notValues: ['10.0.0.0/8'] }, http(), true),
  when('destination.port', { key: 'destination.port', values: ['8000'] }, http(), true),
  when('destination.port other', { key: 'destination.port', values: ['80', '443'] }, http(), false),
  when('destination.port notValues', { key: 'destination.port', notValues: ['8000'] }, http(), false),
  when('source.namespace', { key: 'source.namespace', values: ['bar'] }, http(), true),
  when('source.namespace prefix*', { key: 'source.namespace', values: ['b*'] }, http(), true),
  when('source.namespace needs mTLS', { key: 'source.namespace', values: ['bar'] }, http({ principal: null }), false),
  when('source.namespace notValues', { key: 'source.namespace', notValues: ['bar'] }, http(), false),
  when('source.namespace notValues, plaintext', { key: 'source.namespace', notValues: ['bar'] }, http({ principal: null }), true),
  when('source.principal', { key: 'source.principal', values: [SLEEP] }, http(), true),
  when('source.principal *suffix', { key: 'source.principal', values: ['*/sa/sleep'] }, http(), true),
  when('source.principal * needs mTLS', { key: 'source.principal', values: ['*'] }, http({ principal: null }), false),
  when('source.principal notValues *, plaintext', { key: 'source.principal', notValues: ['*'] }, http({ principal: null }), true),
  when('source.serviceAccount', { key: 'source.serviceAccount', values: ['bar/sleep'] }, http(), true),
  when('source.serviceAccount other', { key: 'source.serviceAccount', values: ['bar/curl'] }, http(), false),
  when('source.serviceAccount notValues', { key: 'source.serviceAccount', notValues: ['bar/sleep'] }, http(), false),
  when('connection.sni', { key: 'connection.sni', values: ['httpbin.foo.svc.cluster.local'] }, http({ sni: 'httpbin.foo.svc.cluster.local' }), true),
  when('connection.sni *suffix', { key: 'connection.sni', values: ['*.cluster.local'] }, http({ sni: 'httpbin.foo.svc.cluster.local' }), true),
  when('connection.sni absent', { key: 'connection.sni', values: ['*'] }, http(), false),
  when('connection.sni notValues, absent', { key: 'connection.sni', notValues: ['x'] }, http(), true),
  when('request.headers exact', { key: 'request.headers[x-token]', values: ['a'] }, http({ headers: { 'x-token': 'a' } }), true),
  when('request.headers other value', { key: 'request.headers[x-token]', values: ['b'] }, http({ headers: { 'x-token': 'a' } }), false),
  when('request.headers name is case-insensitive', { key: 'request.headers[X-Token]', values: ['a'] }, http({ headers: { 'x-TOKEN': 'a' } }), true),
  when('request.headers value is case-sensitive', { key: 'request.headers[x-token]', values: ['A'] }, http({ headers: { 'x-token': 'a' } }), false),
  when('request.headers prefix*', { key: 'request.headers[user-agent]', values: ['curl/*'] }, http({ headers: { 'user-agent': 'curl/8.1' } }), true),
  when('request.headers *suffix', { key: 'request.headers[x-user]', values: ['*@example.com'] }, http({ headers: { 'x-user': 'ann@example.com' } }), true),
  when('request.headers * presence', { key: 'request.headers[x-token]', values: ['*'] }, http({ headers: { 'x-token': 'a' } }), true),
  when('request.headers * absent', { key: 'request.headers[x-token]', values: ['*'] }, http(), false),
  when('request.headers * needs a non-empty value', { key: 'request.headers[x-token]', values: ['*'] }, http({ headers: { 'x-token': '' } }), false),
  when('request.headers notValues, absent header', { key: 'request.headers[x-token]', notValues: ['a'] }, http(), true),
  when('request.headers notValues excludes', { key: 'request.headers[x-token]', notValues: ['a'] }, http({ headers: { 'x-token': 'a' } }), false),
  when('request.headers repeated header is comma-joined', { key: 'request.headers[x-v]', values: ['1,2'] }, http({ headers: { 'x-v': ['1', '2'] } }), true),
  when('request.headers values and notValues', { key: 'request.headers[x-env]', values: ['prod*'], notValues: ['prod-eu'] }, http({ headers: { 'x-env': 'prod-us' } }), true),
  when('request.headers values and notValues, excluded', { key: 'request.headers[x-env]', values: ['prod*'], notValues: ['prod-eu'] }, http({ headers: { 'x-env': 'prod-eu' } }), false),
  when('request.headers[host] reads the authority', { key: 'request.headers[host]', values: ['httpbin.foo:8000'] }, http(), true),
  when('request.headers[:method]', { key: 'request.headers[:method]', values: ['GET'] }, http(), true),
];

function ruleFor(row: MatchRow): Record<string, unknown> {
  if (row.where === 'source') return { from: [{ source: row.spec }] };
  if (row.where === 'operation') return { to: [{ operation: row.spec }] };
  return { when: [row.spec] };
}

for (const row of matchRows) {
  test(`ALLOW ${row.where}: ${row.name} → ${row.match ? 'ALLOW' : 'DENY'}`, () => {
    const result = decide([ap('allow-it', { action: 'ALLOW', rules: [ruleFor(row)] })], row.input);
    assert.equal(result.decision, row.match ? 'ALLOW' : 'DENY', result.reason);
    assert.equal(result.policy, row.match ? 'foo/allow-it' : null);
  });
  test(`DENY ${row.where}: ${row.name} → ${row.match ? 'DENY' : 'ALLOW'}`, () => {
    const result = decide([ap('deny-it', { action: 'DENY', rules: [ruleFor(row)] })], row.input);
    assert.equal(result.decision, row.match ? 'DENY' : 'ALLOW', result.reason);
    assert.equal(result.policy, row.match ? 'foo/deny-it' : null);
  });
}

// ---- actions, precedence, empty forms, selection ----

interface DecisionRow {
  name: string;
  policies: Record<string, unknown>[];
  input?: AuthzInput;
  decision: 'ALLOW' | 'DENY';
  policy: string | null;
  reason?: RegExp;
  audited?: string[];
}

const anyRequest = [{}];
const fromSleep = [{ from: [{ source: { principals: [SLEEP] } }] }];
const fromOther = [{ from: [{ source: { principals: ['cluster.local/ns/x/sa/y'] } }] }];
const getOnly = [{ to: [{ operation: { methods: ['GET'] } }] }];

const decisionRows: DecisionRow[] = [
  { name: 'no policy: allow', policies: [], decision: 'ALLOW', policy: null, reason: /no ALLOW policy applies/ },
  { name: 'ALLOW matches', policies: [ap('a', { rules: fromSleep })], decision: 'ALLOW', policy: 'foo/a', reason: /ALLOW policy foo\/a matched \(rules\[0\]\)/ },
  { name: 'action defaults to ALLOW', policies: [ap('a', { rules: fromOther })], decision: 'DENY', policy: null, reason: /no ALLOW policy matched.*foo\/a/ },
  { name: 'DENY matches', policies: [ap('d', { action: 'DENY', rules: fromSleep })], decision: 'DENY', policy: 'foo/d', reason: /DENY policy foo\/d matched/ },
  { name: 'DENY does not match, no ALLOW: allow', policies: [ap('d', { action: 'DENY', rules: fromOther })], decision: 'ALLOW', policy: null },
  { name: 'DENY wins over ALLOW', policies: [ap('a', { rules: anyRequest }), ap('d', { action: 'DENY', rules: fromSleep })], decision: 'DENY', policy: 'foo/d' },
  { name: 'DENY not matching, ALLOW matching', policies: [ap('a', { rules: fromSleep }), ap('d', { action: 'DENY', rules: fromOther })], decision: 'ALLOW', policy: 'foo/a' },
  { name: 'DENY and ALLOW not matching: deny', policies: [ap('a', { rules: fromOther }), ap('d', { action: 'DENY', rules: fromOther })], decision: 'DENY', policy: null },
  { name: 'one of several ALLOW matches', policies: [ap('a1', { rules: fromOther }), ap('a2', { rules: fromSleep })], decision: 'ALLOW', policy: 'foo/a2' },
  { name: 'second rule of a policy matches', policies: [ap('a', { rules: [...fromOther, ...getOnly] })], decision: 'ALLOW', policy: 'foo/a', reason: /rules\[1\]/ },
  { name: 'several DENY match: the first by namespace/name is named', policies: [ap('z', { action: 'DENY', rules: anyRequest }), ap('b', { action: 'DENY', rules: anyRequest })], decision: 'DENY', policy: 'foo/b' },
  { name: 'AUDIT never changes the decision (allow)', policies: [ap('au', { action: 'AUDIT', rules: anyRequest })], decision: 'ALLOW', policy: null, audited: ['foo/au'] },
  { name: 'AUDIT never changes the decision (deny)', policies: [ap('au', { action: 'AUDIT', rules: anyRequest }), ap('a', { rules: fromOther })], decision: 'DENY', policy: null, audited: ['foo/au'] },
  { name: 'AUDIT with DENY', policies: [ap('au', { action: 'AUDIT', rules: fromSleep }), ap('d', { action: 'DENY', rules: anyRequest })], decision: 'DENY', policy: 'foo/d', audited: ['foo/au'] },
  { name: 'AUDIT not matching is not listed', policies: [ap('au', { action: 'AUDIT', rules: fromOther })], decision: 'ALLOW', policy: null, audited: [] },
  { name: 'AUDIT is not an ALLOW policy', policies: [ap('au', { action: 'AUDIT', rules: fromOther }), ap('d', { action: 'DENY', rules: fromOther })], decision: 'ALLOW', policy: null },
  { name: 'CUSTOM matching is denied (fail closed)', policies: [ap('c', { action: 'CUSTOM', provider: { name: 'ext' }, rules: fromSleep })], decision: 'DENY', policy: 'foo/c', reason: /CUSTOM.*no extension provider/ },
  { name: 'CUSTOM not matching', policies: [ap('c', { action: 'CUSTOM', provider: { name: 'ext' }, rules: fromOther })], decision: 'ALLOW', policy: null },
  { name: 'CUSTOM comes before DENY', policies: [ap('a-deny', { action: 'DENY', rules: anyRequest }), ap('z-custom', { action: 'CUSTOM', provider: { name: 'ext' }, rules: anyRequest })], decision: 'DENY', policy: 'foo/z-custom' },
  { name: 'CUSTOM before ALLOW', policies: [ap('a', { rules: anyRequest }), ap('c', { action: 'CUSTOM', provider: { name: 'ext' }, rules: anyRequest })], decision: 'DENY', policy: 'foo/c' },
  { name: 'spec: {} allows nothing', policies: [ap('allow-nothing', {})], decision: 'DENY', policy: null, reason: /foo\/allow-nothing \(no rules: allows nothing\)/ },
  { name: 'ALLOW with rules: [] allows nothing', policies: [ap('allow-nothing', { action: 'ALLOW', rules: [] })], decision: 'DENY', policy: null },
  { name: 'spec: {} with another matching ALLOW', policies: [ap('allow-nothing', {}), ap('a', { rules: fromSleep })], decision: 'ALLOW', policy: 'foo/a' },
  { name: 'ALLOW rules: [{}] allows everything', policies: [ap('allow-all', { rules: [{}] })], input: http({ principal: null, sourceIp: '203.0.113.9' }), decision: 'ALLOW', policy: 'foo/allow-all' },
  { name: 'DENY rules: [{}] denies everything', policies: [ap('deny-all', { action: 'DENY', rules: [{}] })], decision: 'DENY', policy: 'foo/deny-all' },
  { name: 'DENY rules: [{}] wins over ALLOW rules: [{}]', policies: [ap('allow-all', { rules: [{}] }), ap('deny-all', { action: 'DENY', rules: [{}] })], decision: 'DENY', policy: 'foo/deny-all' },
  { name: 'DENY without rules is a no-op', policies: [ap('d', { action: 'DENY' })], decision: 'ALLOW', policy: null },
  { name: 'AUDIT without rules matches nothing', policies: [ap('au', { action: 'AUDIT' })], decision: 'ALLOW', policy: null, audited: [] },
  { name: 'rule with from, to and when all matching', policies: [ap('a', { rules: [{ from: [{ source: { namespaces: ['bar'] } }], to: [{ operation: { methods: ['GET'] } }], when: [{ key: 'source.ip', values: ['10.0.0.0/8'] }] }] })], decision: 'ALLOW', policy: 'foo/a' },
  { name: 'rule: when fails', policies: [ap('a', { rules: [{ from: [{ source: { namespaces: ['bar'] } }], to: [{ operation: { methods: ['GET'] } }], when: [{ key: 'source.ip', values: ['192.168.0.0/16'] }] }] })], decision: 'DENY', policy: null },
  { name: 'rule: every when must hold', policies: [ap('a', { rules: [{ when: [{ key: 'destination.port', values: ['8000'] }, { key: 'source.namespace', values: ['foo'] }] }] })], decision: 'DENY', policy: null },
  { name: 'rule: any from may hold', policies: [ap('a', { rules: [{ from: [{ source: { namespaces: ['x'] } }, { source: { ipBlocks: ['10.0.0.7'] } }] }] })], decision: 'ALLOW', policy: 'foo/a' },
  { name: 'rule: any to may hold', policies: [ap('a', { rules: [{ to: [{ operation: { methods: ['POST'] } }, { operation: { paths: ['/headers'] } }] }] })], decision: 'ALLOW', policy: 'foo/a' },
  { name: 'rule: from holds, to does not', policies: [ap('a', { rules: [{ from: [{ source: { namespaces: ['bar'] } }], to: [{ operation: { methods: ['POST'] } }] }] })], decision: 'DENY', policy: null },
  // dry run
  { name: 'dry-run DENY is not enforced', policies: [ap('d', { action: 'DENY', rules: anyRequest }, { annotations: { 'istio.io/dry-run': 'true' } })], decision: 'ALLOW', policy: null },
  { name: 'dry-run ALLOW does not make ALLOW policies exist', policies: [ap('a', { rules: fromOther }, { annotations: { 'istio.io/dry-run': 'true' } })], decision: 'ALLOW', policy: null },
  { name: 'dry-run "false" is enforced', policies: [ap('d', { action: 'DENY', rules: anyRequest }, { annotations: { 'istio.io/dry-run': 'false' } })], decision: 'DENY', policy: 'foo/d' },
  // selection
  { name: 'root namespace ALLOW-nothing applies to every namespace', policies: [ap('allow-nothing', {}, { ns: 'cinch-system' })], decision: 'DENY', policy: null, reason: /cinch-system\/allow-nothing/ },
  { name: 'root namespace DENY with a matching selector', policies: [ap('d', { action: 'DENY', selector: { matchLabels: { app: 'httpbin' } }, rules: anyRequest }, { ns: 'cinch-system' })], decision: 'DENY', policy: 'cinch-system/d' },
  { name: 'root namespace DENY with another selector', policies: [ap('d', { action: 'DENY', selector: { matchLabels: { app: 'other' } }, rules: anyRequest }, { ns: 'cinch-system' })], decision: 'ALLOW', policy: null },
  { name: 'root namespace ALLOW and namespace DENY combine', policies: [ap('a', { rules: anyRequest }, { ns: 'cinch-system' }), ap('d', { action: 'DENY', rules: getOnly })], decision: 'DENY', policy: 'foo/d' },
  { name: 'a policy of another namespace does not apply', policies: [ap('d', { action: 'DENY', rules: anyRequest }, { ns: 'bar' })], decision: 'ALLOW', policy: null },
  { name: 'selector matching a subset of labels', policies: [ap('d', { action: 'DENY', selector: { matchLabels: { app: 'httpbin' } }, rules: anyRequest })], decision: 'DENY', policy: 'foo/d' },
  { name: 'selector with every label', policies: [ap('d', { action: 'DENY', selector: { matchLabels: { app: 'httpbin', version: 'v1' } }, rules: anyRequest })], decision: 'DENY', policy: 'foo/d' },
  { name: 'selector with a label value the workload does not have', policies: [ap('d', { action: 'DENY', selector: { matchLabels: { app: 'httpbin', version: 'v2' } }, rules: anyRequest })], decision: 'ALLOW', policy: null },
  { name: 'selector not matching: its ALLOW-nothing does not apply', policies: [ap('allow-nothing', { selector: { matchLabels: { app: 'other' } } })], decision: 'ALLOW', policy: null },
  { name: 'empty matchLabels selects every workload', policies: [ap('d', { action: 'DENY', selector: { matchLabels: {} }, rules: anyRequest })], decision: 'DENY', policy: 'foo/d' },
  { name: 'targetRefs policies are ignored by sidecars', policies: [ap('d', { action: 'DENY', targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' }], rules: anyRequest })], decision: 'ALLOW', policy: null },
  { name: 'targetRef policies are ignored by sidecars', policies: [ap('d', { action: 'DENY', targetRef: { kind: 'Service', name: 'httpbin' }, rules: anyRequest })], decision: 'ALLOW', policy: null },
];

for (const row of decisionRows) {
  test(`decision: ${row.name}`, () => {
    const result = decide(row.policies, row.input ?? http());
    assert.equal(result.decision, row.decision, result.reason);
    assert.equal(result.policy, row.policy);
    if (row.reason) assert.match(result.reason, row.reason);
    if (row.audited) assert.deepEqual(result.audited, row.audited);
  });
}

test('dry-run policies are reported with whether they matched', () => {
  const dry = { annotations: { 'istio.io/dry-run': 'true' } };
  const result = decide([ap('d', { action: 'DENY', rules: anyRequest }, dry), ap('a', { rules: fromOther }, dry)], http());
  assert.deepEqual(result.dryRun, [
    { policy: 'foo/a', action: 'ALLOW', matched: false },
    { policy: 'foo/d', action: 'DENY', matched: true },
  ]);
});

// ---- TCP traffic and HTTP-only fields ----

const tcpRows: DecisionRow[] = [
  { name: 'ALLOW ports matches TCP', policies: [ap('a', { rules: [{ to: [{ operation: { ports: ['8000'] } }] }] })], input: tcp(), decision: 'ALLOW', policy: 'foo/a' },
  { name: 'ALLOW principals matches TCP', policies: [ap('a', { rules: fromSleep })], input: tcp(), decision: 'ALLOW', policy: 'foo/a' },
  { name: 'ALLOW rules: [{}] matches TCP', policies: [ap('a', { rules: [{}] })], input: tcp(), decision: 'ALLOW', policy: 'foo/a' },
  { name: 'ALLOW methods never matches TCP', policies: [ap('a', { rules: getOnly })], input: tcp(), decision: 'DENY', policy: null, reason: /rules \[0\] use HTTP-only fields and never match TCP/ },
  { name: 'ALLOW paths never matches TCP', policies: [ap('a', { rules: [{ to: [{ operation: { paths: ['*'] } }] }] })], input: tcp(), decision: 'DENY', policy: null },
  { name: 'ALLOW hosts never matches TCP', policies: [ap('a', { rules: [{ to: [{ operation: { hosts: ['*'] } }] }] })], input: tcp(), decision: 'DENY', policy: null },
  { name: 'ALLOW notMethods never matches TCP', policies: [ap('a', { rules: [{ to: [{ operation: { notMethods: ['DELETE'] } }] }] })], input: tcp(), decision: 'DENY', policy: null },
  { name: 'ALLOW notPaths never matches TCP', policies: [ap('a', { rules: [{ to: [{ operation: { notPaths: ['/admin'] } }] }] })], input: tcp(), decision: 'DENY', policy: null },
  { name: 'ALLOW notHosts never matches TCP', policies: [ap('a', { rules: [{ to: [{ operation: { notHosts: ['x'] } }] }] })], input: tcp(), decision: 'DENY', policy: null },
  { name: 'ALLOW request.headers never matches TCP', policies: [ap('a', { rules: [{ when: [{ key: 'request.headers[x-token]', notValues: ['x'] }] }] })], input: tcp(), decision: 'DENY', policy: null },
  { name: 'ALLOW ports AND methods: the whole rule is dropped on TCP', policies: [ap('a', { rules: [{ to: [{ operation: { ports: ['8000'], methods: ['GET'] } }] }] })], input: tcp(), decision: 'DENY', policy: null },
  { name: 'ALLOW: an HTTP-only operation drops the rule even beside a TCP one', policies: [ap('a', { rules: [{ to: [{ operation: { ports: ['8000'] } }, { operation: { methods: ['GET'] } }] }] })], input: tcp(), decision: 'DENY', policy: null },
  { name: 'ALLOW: another rule without HTTP fields still matches TCP', policies: [ap('a', { rules: [...getOnly, { to: [{ operation: { ports: ['8000'] } }] }] })], input: tcp(), decision: 'ALLOW', policy: 'foo/a', reason: /rules\[1\]/ },
  { name: 'ALLOW: the same rule matches HTTP', policies: [ap('a', { rules: [{ to: [{ operation: { ports: ['8000'] } }, { operation: { methods: ['GET'] } }] }] })], input: http(), decision: 'ALLOW', policy: 'foo/a' },
  { name: 'DENY methods [POST] denies all TCP', policies: [ap('d', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] })], input: tcp(), decision: 'DENY', policy: 'foo/d' },
  { name: 'DENY methods [POST] does not deny HTTP GET', policies: [ap('d', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] })], input: http(), decision: 'ALLOW', policy: null },
  { name: 'DENY paths denies all TCP', policies: [ap('d', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] })], input: tcp(), decision: 'DENY', policy: 'foo/d' },
  { name: 'DENY hosts denies all TCP', policies: [ap('d', { action: 'DENY', rules: [{ to: [{ operation: { hosts: ['nope'] } }] }] })], input: tcp(), decision: 'DENY', policy: 'foo/d' },
  { name: 'DENY notMethods denies all TCP', policies: [ap('d', { action: 'DENY', rules: [{ to: [{ operation: { notMethods: ['GET'] } }] }] })], input: tcp(), decision: 'DENY', policy: 'foo/d' },
  { name: 'DENY request.headers denies all TCP', policies: [ap('d', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-admin]', values: ['1'] }] }] })], input: tcp(), decision: 'DENY', policy: 'foo/d' },
  { name: 'DENY methods + ports: the port is kept on TCP (other port)', policies: [ap('d', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], ports: ['9000'] } }] }] })], input: tcp(), decision: 'ALLOW', policy: null },
  { name: 'DENY methods + ports: the port is kept on TCP (that port)', policies: [ap('d', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], ports: ['9000'] } }] }] })], input: tcp({ port: 9000 }), decision: 'DENY', policy: 'foo/d' },
  { name: 'DENY methods + from: the source is kept on TCP (other caller)', policies: [ap('d', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['x'] } }], to: [{ operation: { methods: ['POST'] } }] }] })], input: tcp(), decision: 'ALLOW', policy: null },
  { name: 'DENY methods + from: the source is kept on TCP (that caller)', policies: [ap('d', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['bar'] } }], to: [{ operation: { methods: ['POST'] } }] }] })], input: tcp(), decision: 'DENY', policy: 'foo/d' },
  { name: 'DENY headers + source.ip: the IP is kept on TCP', policies: [ap('d', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x]', values: ['1'] }, { key: 'source.ip', values: ['192.168.0.0/16'] }] }] })], input: tcp(), decision: 'ALLOW', policy: null },
  { name: 'AUDIT methods audits all TCP', policies: [ap('au', { action: 'AUDIT', rules: getOnly })], input: tcp(), decision: 'ALLOW', policy: null, audited: ['foo/au'] },
  { name: 'CUSTOM paths denies all TCP (fail closed, wider)', policies: [ap('c', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{ to: [{ operation: { paths: ['/x'] } }] }] })], input: tcp(), decision: 'DENY', policy: 'foo/c' },
  { name: 'TCP: connection.sni works', policies: [ap('a', { rules: [{ when: [{ key: 'connection.sni', values: ['db.example.com'] }] }] })], input: tcp({ sni: 'db.example.com' }), decision: 'ALLOW', policy: 'foo/a' },
  { name: 'TCP: destination.port works', policies: [ap('a', { rules: [{ when: [{ key: 'destination.port', values: ['5432'] }] }] })], input: tcp({ port: 5432 }), decision: 'ALLOW', policy: 'foo/a' },
  { name: 'TCP: notPorts works', policies: [ap('d', { action: 'DENY', rules: [{ to: [{ operation: { notPorts: ['5432'] } }] }] })], input: tcp({ port: 5432 }), decision: 'ALLOW', policy: null },
  { name: 'TCP: plaintext and ipBlocks', policies: [ap('a', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }] }] })], input: tcp({ principal: null }), decision: 'ALLOW', policy: 'foo/a' },
];

for (const row of tcpRows) {
  test(`tcp: ${row.name}`, () => {
    const result = decide(row.policies, row.input ?? tcp());
    assert.equal(result.decision, row.decision, result.reason);
    assert.equal(result.policy, row.policy);
    if (row.reason) assert.match(result.reason, row.reason);
    if (row.audited) assert.deepEqual(result.audited, row.audited);
  });
}

// ---- PeerAuthentication before AuthorizationPolicy ----

const strictNs = pa('strict', { mtls: { mode: 'STRICT' } });
const peerRows: DecisionRow[] = [
  { name: 'plaintext on a STRICT port is denied, naming the PeerAuthentication', policies: [strictNs], input: http({ principal: null }), decision: 'DENY', policy: 'foo/strict', reason: /plaintext.*PeerAuthentication foo\/strict.*STRICT.*8000/ },
  { name: 'plaintext STRICT denial comes before any ALLOW', policies: [strictNs, ap('a', { rules: [{}] })], input: tcp({ principal: null }), decision: 'DENY', policy: 'foo/strict' },
  { name: 'mTLS on a STRICT port goes on to AuthorizationPolicy', policies: [strictNs, ap('a', { rules: fromSleep })], decision: 'ALLOW', policy: 'foo/a' },
  { name: 'mesh-wide STRICT from the root namespace', policies: [pa('mesh', { mtls: { mode: 'STRICT' } }, { ns: 'cinch-system' })], input: http({ principal: null }), decision: 'DENY', policy: 'cinch-system/mesh' },
  { name: 'plaintext on a PERMISSIVE port is allowed', policies: [pa('p', { mtls: { mode: 'PERMISSIVE' } })], input: http({ principal: null }), decision: 'ALLOW', policy: null },
  { name: 'port-level PERMISSIVE on a STRICT workload', policies: [pa('w', { selector: { matchLabels: { app: 'httpbin' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { 8000: { mode: 'PERMISSIVE' } } })], input: http({ principal: null }), decision: 'ALLOW', policy: null },
  { name: 'port-level STRICT names the workload policy', policies: [pa('w', { selector: { matchLabels: { app: 'httpbin' } }, portLevelMtls: { 8000: { mode: 'STRICT' } } })], input: tcp({ principal: null }), decision: 'DENY', policy: 'foo/w' },
  { name: 'port-level STRICT on another port', policies: [pa('w', { selector: { matchLabels: { app: 'httpbin' } }, portLevelMtls: { 9000: { mode: 'STRICT' } } })], input: tcp({ principal: null }), decision: 'ALLOW', policy: null },
  { name: 'DISABLE: the source has no principal', policies: [pa('off', { mtls: { mode: 'DISABLE' } }), ap('a', { rules: fromSleep })], decision: 'DENY', policy: null, reason: /mTLS is disabled on port 8000 by PeerAuthentication foo\/off/ },
  { name: 'DISABLE: notPrincipals * then matches', policies: [pa('off', { mtls: { mode: 'DISABLE' } }), ap('a', { rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] })], decision: 'ALLOW', policy: 'foo/a' },
];

for (const row of peerRows) {
  test(`peer authentication: ${row.name}`, () => {
    const result = decide(row.policies, row.input ?? http());
    assert.equal(result.decision, row.decision, result.reason);
    assert.equal(result.policy, row.policy);
    if (row.reason) assert.match(result.reason, row.reason);
  });
}

test('a compiled workload policy evaluates many requests with the same answers', async () => {
  const { buildPolicySet } = await import('../../../src/policy/validate.ts');
  const { compileWorkloadPolicy } = await import('../../../src/policy/workload.ts');
  const set = buildPolicySet([
    ap('d', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] }),
    ap('a', { rules: [{ from: [{ source: { namespaces: ['bar'] } }] }] }),
  ]);
  const compiled = compileWorkloadPolicy(set, { namespace: 'foo', labels: { app: 'httpbin' } });
  for (let i = 0; i < 1000; i++) {
    assert.equal(compiled.evaluate(http({ path: `/admin/${i}` })).decision, 'DENY');
    assert.equal(compiled.evaluate(http({ path: `/x/${i}` })).decision, 'ALLOW');
    assert.equal(compiled.evaluate(http({ path: `/x/${i}`, principal: 'cluster.local/ns/qux/sa/y' })).decision, 'DENY');
  }
  assert.deepEqual(compiled.authorization.policies, { CUSTOM: [], DENY: ['foo/d'], ALLOW: ['foo/a'], AUDIT: [] });
});
