// AuthorizationPolicy evaluation with Istio's semantics, compiled once per workload into matcher
// closures, because the proxy evaluates on every request or connection.
//
// Order: CUSTOM → DENY → ALLOW. AUDIT and dry-run policies are evaluated and reported, never
// enforced. No ALLOW policy → allow; ALLOW policies but none matches → deny. A policy without
// rules matches nothing (so `spec: {}` is "allow nothing"); a rule `{}` matches everything.
//
// Inside a rule: any `from` AND any `to` AND every `when`; inside a source/operation every field;
// inside a field any value; a `notX` field matches when none of its values does.
//
// TCP traffic has no hosts, methods, paths or headers. An ALLOW rule that uses any of them never
// matches TCP (a smaller allow); a DENY, AUDIT or CUSTOM rule drops just those conditions (a
// wider deny). Both fail closed, as Istio does.
//
// CUSTOM needs an external authorizer, which Cinch does not have: a CUSTOM policy is reported as
// invalid by validation, and here denies whatever it matches instead of letting it through.
import { ipInRange, parseIp, parseIpRange, type IpAddress, type IpRange } from './ip.ts';
import { anyOf, type StringMatcher } from './match.ts';
import { compilePathMatcher, normalizePath } from './path.ts';
import { parseBool } from './validate.ts';
import {
  DRY_RUN_ANNOTATION,
  type AuthorizationAction,
  type AuthorizationPolicy,
  type AuthzDecision,
  type AuthzInput,
  type Condition,
  type Operation,
  type Rule,
  type Source,
} from './types.ts';

/** The request attributes, each derived at most once and only when some policy asks for it. */
class RequestView {
  readonly input: AuthzInput;
  private cachedSourceIp: IpAddress | null | undefined;
  private cachedDestinationIp: IpAddress | null | undefined;
  private cachedIdentity: Identity | undefined;
  private cachedPath: string | undefined;

  constructor(input: AuthzInput) {
    this.input = input;
  }

  get sourceIp(): IpAddress | null {
    if (this.cachedSourceIp === undefined) this.cachedSourceIp = toAddress(this.input.sourceIp);
    return this.cachedSourceIp;
  }

  get destinationIp(): IpAddress | null {
    if (this.cachedDestinationIp === undefined) this.cachedDestinationIp = toAddress(this.input.destinationIp);
    return this.cachedDestinationIp;
  }

  /** Principal without `spiffe://`, and the namespace and `ns/sa` read from it; all absent for plaintext. */
  get identity(): Identity {
    if (this.cachedIdentity === undefined) this.cachedIdentity = parseIdentity(this.input.sourcePrincipal);
    return this.cachedIdentity;
  }

  get path(): string | undefined {
    if (this.input.http === undefined) return undefined;
    if (this.cachedPath === undefined) this.cachedPath = normalizePath(this.input.http.path);
    return this.cachedPath;
  }

  /** A header by lower-case name; repeated headers are one comma-joined value, as Envoy matches them. */
  header(name: string): string | undefined {
    const http = this.input.http;
    if (http === undefined) return undefined;
    // Pseudo-headers and Host are request attributes, not entries of the header map.
    if (name === ':method') return http.method;
    if (name === ':path') return http.path;
    if (name === ':authority') return http.host;
    const headers = http.headers ?? {};
    // Node gives lower-case names, so the direct lookup is the usual hit; other sources may not.
    let value = joinHeader(headers[name]);
    if (value === undefined) {
      for (const key of Object.keys(headers)) {
        if (key !== name && key.toLowerCase() === name) {
          const more = joinHeader(headers[key]);
          if (more !== undefined) value = value === undefined ? more : `${value},${more}`;
        }
      }
    }
    if (value === undefined && name === 'host') return http.host;
    return value;
  }
}

function joinHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

// Requests on one keep-alive connection share a source address: remember the last one parsed.
let lastAddressText: string | undefined;
let lastAddress: IpAddress | null = null;

function toAddress(text: string | undefined): IpAddress | null {
  if (text === undefined) return null;
  if (text === lastAddressText) return lastAddress;
  const zone = text.indexOf('%');
  const parsed = parseIp(zone === -1 ? text : text.slice(0, zone));
  lastAddressText = text;
  lastAddress = typeof parsed === 'string' ? null : parsed;
  return lastAddress;
}

type Identity = { principal?: string; namespace?: string; serviceAccount?: string };
let lastIdentityText: string | undefined;
let lastIdentity: Identity = {};

/** `<trust-domain>/ns/<namespace>/sa/<serviceaccount>`, optionally with `spiffe://` in front. */
export function parseIdentity(raw: string | undefined): Identity {
  if (raw === undefined || raw === '') return {};
  // One connection's requests share a peer: remember the last identity read (it is never mutated).
  if (raw === lastIdentityText) return lastIdentity;
  lastIdentityText = raw;
  lastIdentity = readIdentity(raw);
  return lastIdentity;
}

function readIdentity(raw: string): Identity {
  const principal = raw.startsWith('spiffe://') ? raw.slice('spiffe://'.length) : raw;
  const segments = principal.split('/');
  const nsAt = segments.indexOf('ns', 1);
  const namespace = nsAt !== -1 && nsAt + 1 < segments.length ? segments[nsAt + 1] : undefined;
  const saAt = nsAt === -1 ? -1 : segments.indexOf('sa', nsAt + 2);
  const sa = saAt !== -1 && saAt + 1 < segments.length ? segments[saAt + 1] : undefined;
  return { principal, namespace, serviceAccount: namespace !== undefined && sa !== undefined ? `${namespace}/${sa}` : undefined };
}

type Predicate = (r: RequestView) => boolean;
const always: Predicate = () => true;
const never: Predicate = () => false;

function all(preds: Predicate[]): Predicate {
  if (preds.length === 0) return always;
  if (preds.length === 1) return preds[0];
  return (r) => {
    for (const p of preds) if (!p(r)) return false;
    return true;
  };
}

function some(preds: Predicate[]): Predicate {
  if (preds.length === 0) return never;
  if (preds.length === 1) return preds[0];
  return (r) => {
    for (const p of preds) if (p(r)) return true;
    return false;
  };
}

/** One condition of a rule, and whether it needs HTTP attributes. */
interface Check {
  test: Predicate;
  httpOnly: boolean;
}

/** A field with values (match any) and/or notValues (match none), over one attribute. */
function valueChecks<T>(
  values: readonly string[] | undefined,
  notValues: readonly string[] | undefined,
  compile: (patterns: readonly string[]) => (attribute: T) => boolean,
  read: (r: RequestView) => T,
  httpOnly = false,
): Check[] {
  const checks: Check[] = [];
  if (values && values.length > 0) {
    const m = compile(values);
    checks.push({ test: (r) => m(read(r)), httpOnly });
  }
  if (notValues && notValues.length > 0) {
    const m = compile(notValues);
    checks.push({ test: (r) => !m(read(r)), httpOnly });
  }
  return checks;
}

const strings = (patterns: readonly string[]): StringMatcher => anyOf(patterns);

// Istio compiles a namespace value into a regex on the principal with every `*` read as `.*`:
// a glob over the namespace read from the principal.
function namespaceGlobs(patterns: readonly string[]): StringMatcher {
  const plain = patterns.filter((p) => !p.includes('*'));
  const globs = patterns
    .filter((p) => p.includes('*'))
    .map((p) => new RegExp(`^${p.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`));
  const exact = anyOf(plain);
  return (ns) => ns !== undefined && (exact(ns) || globs.some((re) => re.test(ns)));
}

function ipRanges(patterns: readonly string[]): (address: IpAddress | null) => boolean {
  const ranges = patterns.map((p) => parseIpRange(p)).filter((r): r is IpRange => typeof r !== 'string');
  return (address) => address !== null && ranges.some((range) => ipInRange(address, range));
}

function portSet(patterns: readonly string[]): (port: number) => boolean {
  const ports = new Set(patterns.map(Number));
  return (port) => ports.has(port);
}

/** `ns/sa` or `sa` (meaning the policy's namespace), compared literally. */
function serviceAccounts(policyNamespace: string): (patterns: readonly string[]) => (sa: string | undefined) => boolean {
  return (patterns) => {
    const wanted = new Set(patterns.map((p) => (p.includes('/') ? p : `${policyNamespace}/${p}`)));
    return (sa) => sa !== undefined && wanted.has(sa);
  };
}

function hostWithoutPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  return host.replace(/:\d*$/, '');
}

/** Hosts compare case-insensitively; a pattern without a port matches the authority with any port or none. */
function hosts(patterns: readonly string[]): (host: string | undefined) => boolean {
  const hasPort = (p: string): boolean => /:(\d+|\*)$/.test(p) && !p.endsWith(']');
  const withPort = anyOf(patterns.filter(hasPort), true);
  const withoutPort = anyOf(patterns.filter((p) => !hasPort(p)), true);
  return (host) => host !== undefined && (withPort(host) || withoutPort(hostWithoutPort(host)));
}

function paths(patterns: readonly string[]): (path: string | undefined) => boolean {
  const matchers = patterns.map(compilePathMatcher);
  return (path) => path !== undefined && matchers.some((m) => m(path));
}

/**
 * Cinch validates no JWTs (no RequestAuthentication), so, as in Istio without one, no request has a request
 * principal or claims: requestPrincipals and request.auth.* values never match, their not- forms always do (the
 * "require a JWT" DENY rule, notRequestPrincipals: ["*"], denies every request). HTTP-only, as in Istio.
 */
const noJwt = (): string | undefined => undefined;

function sourceChecks(source: Source, policyNamespace: string): Check[] {
  const principal = (r: RequestView): string | undefined => r.identity.principal;
  const namespace = (r: RequestView): string | undefined => r.identity.namespace;
  const serviceAccount = (r: RequestView): string | undefined => r.identity.serviceAccount;
  const sourceIp = (r: RequestView): IpAddress | null => r.sourceIp;
  return [
    ...valueChecks(source.principals, source.notPrincipals, strings, principal),
    ...valueChecks(source.namespaces, source.notNamespaces, namespaceGlobs, namespace),
    ...valueChecks(source.serviceAccounts, source.notServiceAccounts, serviceAccounts(policyNamespace), serviceAccount),
    ...valueChecks(source.ipBlocks, source.notIpBlocks, ipRanges, sourceIp),
    // No gateway or PROXY protocol in front of a sidecar: the remote address is the packet source.
    ...valueChecks(source.remoteIpBlocks, source.notRemoteIpBlocks, ipRanges, sourceIp),
    ...valueChecks(source.requestPrincipals, source.notRequestPrincipals, strings, noJwt, true),
  ];
}

function operationChecks(operation: Operation): Check[] {
  return [
    ...valueChecks(operation.hosts, operation.notHosts, hosts, (r) => r.input.http?.host, true),
    ...valueChecks(operation.ports, operation.notPorts, portSet, (r) => r.input.destinationPort),
    ...valueChecks(operation.methods, operation.notMethods, strings, (r) => r.input.http?.method, true),
    ...valueChecks(operation.paths, operation.notPaths, paths, (r) => r.path, true),
  ];
}

function conditionChecks(condition: Condition, policyNamespace: string): Check[] {
  const { key, values, notValues } = condition;
  switch (key) {
    case 'source.ip':
    case 'remote.ip':
      return valueChecks(values, notValues, ipRanges, (r) => r.sourceIp);
    case 'destination.ip':
      return valueChecks(values, notValues, ipRanges, (r) => r.destinationIp);
    case 'source.namespace':
      return valueChecks(values, notValues, namespaceGlobs, (r) => r.identity.namespace);
    case 'source.principal':
      return valueChecks(values, notValues, strings, (r) => r.identity.principal);
    case 'source.serviceAccount':
      return valueChecks(values, notValues, serviceAccounts(policyNamespace), (r) => r.identity.serviceAccount);
    case 'destination.port':
      return valueChecks(values, notValues, portSet, (r) => r.input.destinationPort);
    case 'connection.sni':
      return valueChecks(values, notValues, strings, (r) => r.input.sni);
  }
  if (key.startsWith('request.auth.')) return valueChecks(values, notValues, strings, noJwt, true);
  const header = /^request\.headers\[(.+)\]$/.exec(key);
  if (header) {
    const name = header[1].toLowerCase();
    return valueChecks(values, notValues, strings, (r) => r.header(name), true);
  }
  // Validation refuses every other key; should one get here, it can never be satisfied.
  return [{ test: never, httpOnly: false }];
}

interface CompiledRule {
  http: Predicate;
  tcp: Predicate;
  /** An ALLOW rule that can never match TCP because it needs HTTP attributes. */
  httpOnlyForAllow: boolean;
}

function compileRule(rule: Rule, action: AuthorizationAction, policyNamespace: string): CompiledRule {
  const sources = (rule.from ?? []).map((f) => sourceChecks(f.source, policyNamespace));
  const operations = (rule.to ?? []).map((t) => operationChecks(t.operation));
  const conditions = (rule.when ?? []).flatMap((c) => conditionChecks(c, policyNamespace));
  const build = (keep: (c: Check) => boolean): Predicate => {
    const parts: Predicate[] = [];
    if (rule.from && rule.from.length > 0) parts.push(some(sources.map((checks) => all(checks.filter(keep).map((c) => c.test)))));
    if (rule.to && rule.to.length > 0) parts.push(some(operations.map((checks) => all(checks.filter(keep).map((c) => c.test)))));
    parts.push(...conditions.filter(keep).map((c) => c.test));
    return all(parts);
  };
  const http = build(() => true);
  const usesHttp = [...sources.flat(), ...operations.flat(), ...conditions].some((c) => c.httpOnly);
  if (!usesHttp) return { http, tcp: http, httpOnlyForAllow: false };
  if (action === 'ALLOW') return { http, tcp: never, httpOnlyForAllow: true };
  return { http, tcp: build((c) => !c.httpOnly), httpOnlyForAllow: false };
}

interface CompiledPolicy {
  ref: string;
  action: AuthorizationAction;
  rules: CompiledRule[];
}

function compilePolicy(policy: AuthorizationPolicy): CompiledPolicy {
  const action = policy.spec.action ?? 'ALLOW';
  return {
    ref: `${policy.metadata.namespace}/${policy.metadata.name}`,
    action,
    rules: (policy.spec.rules ?? []).map((rule) => compileRule(rule, action, policy.metadata.namespace)),
  };
}

/** Index of the first matching rule, or -1. */
function matchingRule(policy: CompiledPolicy, view: RequestView, tcp: boolean): number {
  for (let i = 0; i < policy.rules.length; i++) {
    const rule = policy.rules[i];
    if (tcp ? rule.tcp(view) : rule.http(view)) return i;
  }
  return -1;
}

export interface CompiledAuthorization {
  evaluate(input: AuthzInput): AuthzDecision;
  /** Enforced policies by action, `namespace/name`, in evaluation order. */
  readonly policies: Readonly<Record<AuthorizationAction, readonly string[]>>;
}

function isDryRun(policy: AuthorizationPolicy): boolean {
  const value = policy.metadata.annotations?.[DRY_RUN_ANNOTATION];
  return value !== undefined && parseBool(value) === true;
}

/**
 * Compiles the AuthorizationPolicies that apply to one workload (see selectAuthorizationPolicies).
 * Policies are ordered by `namespace/name` so the deciding policy named in a result is stable.
 */
export function compileAuthorization(policies: readonly AuthorizationPolicy[]): CompiledAuthorization {
  const sorted = [...policies].sort((a, b) => {
    const ra = `${a.metadata.namespace}/${a.metadata.name}`;
    const rb = `${b.metadata.namespace}/${b.metadata.name}`;
    return ra < rb ? -1 : ra > rb ? 1 : 0;
  });
  const byAction: Record<AuthorizationAction, CompiledPolicy[]> = { CUSTOM: [], DENY: [], ALLOW: [], AUDIT: [] };
  const dryRun: CompiledPolicy[] = [];
  for (const policy of sorted) {
    const compiled = compilePolicy(policy);
    if (isDryRun(policy)) dryRun.push(compiled);
    else byAction[compiled.action].push(compiled);
  }
  const refs = (list: CompiledPolicy[]): string[] => list.map((p) => p.ref);

  // The reason for "no ALLOW policy matched" depends only on the policies: built once, not per request.
  const noMatchReason = { http: noAllowMatchedReason(byAction.ALLOW, false), tcp: noAllowMatchedReason(byAction.ALLOW, true) };
  const none: never[] = [];

  const evaluate = (input: AuthzInput): AuthzDecision => {
    const view = new RequestView(input);
    const tcp = input.http === undefined;
    const audited = byAction.AUDIT.length === 0 ? none : byAction.AUDIT.filter((p) => matchingRule(p, view, tcp) !== -1).map((p) => p.ref);
    const shadow = dryRun.length === 0 ? none : dryRun.map((p) => ({ policy: p.ref, action: p.action, matched: matchingRule(p, view, tcp) !== -1 }));
    const result = (decision: 'ALLOW' | 'DENY', policy: string | null, reason: string): AuthzDecision => ({
      decision,
      policy,
      reason,
      audited,
      dryRun: shadow,
    });

    for (const p of byAction.CUSTOM) {
      const i = matchingRule(p, view, tcp);
      if (i !== -1) {
        return result('DENY', p.ref, `CUSTOM policy ${p.ref} matched (rules[${i}]); Cinch has no extension provider to ask, so the request is denied (fail closed)`);
      }
    }
    for (const p of byAction.DENY) {
      const i = matchingRule(p, view, tcp);
      if (i !== -1) return result('DENY', p.ref, `DENY policy ${p.ref} matched (rules[${i}])`);
    }
    if (byAction.ALLOW.length === 0) return result('ALLOW', null, 'no ALLOW policy applies to the workload');
    for (const p of byAction.ALLOW) {
      const i = matchingRule(p, view, tcp);
      if (i !== -1) return result('ALLOW', p.ref, `ALLOW policy ${p.ref} matched (rules[${i}])`);
    }
    return result('DENY', null, tcp ? noMatchReason.tcp : noMatchReason.http);
  };

  return {
    evaluate,
    policies: { CUSTOM: refs(byAction.CUSTOM), DENY: refs(byAction.DENY), ALLOW: refs(byAction.ALLOW), AUDIT: refs(byAction.AUDIT) },
  };
}

function noAllowMatchedReason(allow: CompiledPolicy[], tcp: boolean): string {
  const notes = allow.map((p) => {
    if (p.rules.length === 0) return `${p.ref} (no rules: allows nothing)`;
    const dropped = p.rules.map((r, i) => (tcp && r.httpOnlyForAllow ? i : -1)).filter((i) => i !== -1);
    if (dropped.length > 0) {
      return `${p.ref} (rules ${dropped.map((i) => `[${i}]`).join('')} use HTTP-only fields and never match TCP traffic)`;
    }
    return p.ref;
  });
  return `no ALLOW policy matched; ALLOW policies for the workload: ${notes.join(', ')}`;
}
