// Validation of PeerAuthentication and AuthorizationPolicy objects. Every message starts with the
// path of the field it is about (`spec.rules[0].from[0].source.principals[1]: …`), so a user can
// find the mistake in their YAML. Unknown fields are errors: a typo such as `notPrincipal` would
// otherwise silently widen an ALLOW or narrow a DENY.
//
// The rules follow Istio's validation webhook, plus what Cinch cannot enforce yet (CUSTOM, and
// JWT attributes, which need RequestAuthentication).
import { parseIpRange } from './ip.ts';
import { pathTemplateProblem } from './path.ts';
import {
  AUTHORIZATION_ACTIONS,
  DEFAULT_ROOT_NAMESPACE,
  DRY_RUN_ANNOTATION,
  MTLS_MODES,
  SECURITY_API_VERSIONS,
  SECURITY_GROUP,
  type AuthorizationPolicy,
  type PeerAuthentication,
  type PolicyOptions,
  type SecurityPolicy,
} from './types.ts';

export interface ValidationResult<T> {
  /**
   * The object, typed, when it can be enforced. Usually present exactly when `errors` is empty;
   * the exception is a CUSTOM AuthorizationPolicy, which is reported as an error and still
   * enforced as a deny of what it matches (fail closed, as Istio does when a provider is missing).
   */
  policy?: T;
  errors: string[];
  warnings: string[];
}

export const CUSTOM_UNSUPPORTED = 'CUSTOM requires an extension provider; Cinch has none';
export const NO_REQUEST_AUTHENTICATION =
  'Cinch validates no JWTs (no RequestAuthentication), so, as in Istio without one, no request has a request principal or claims: requestPrincipals and request.auth values never match, their not- forms always do';

class Issues {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];
  error(path: string, message: string): void {
    this.errors.push(`${path}: ${message}`);
  }
  warn(path: string, message: string): void {
    this.warnings.push(`${path}: ${message}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Kubernetes drops null fields of a structural schema, so null reads as absent. */
function present(value: unknown): boolean {
  return value !== undefined && value !== null;
}

function checkKnownFields(issues: Issues, path: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) issues.error(`${path}.${key}`, `unknown field (expected one of: ${known.join(', ')})`);
  }
}

/** A list of non-empty strings; returns the strings that are well-formed (possibly fewer). */
function stringList(issues: Issues, path: string, value: unknown): string[] {
  if (!present(value)) return [];
  if (!Array.isArray(value)) {
    issues.error(path, 'must be a list of strings');
    return [];
  }
  const out: string[] = [];
  value.forEach((item, i) => {
    if (typeof item !== 'string') issues.error(`${path}[${i}]`, `must be a string, got ${describe(item)}${typeof item === 'number' ? ' (quote it)' : ''}`);
    else if (item === '') issues.error(`${path}[${i}]`, 'empty value not allowed');
    else out.push(item);
  });
  return out;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function labelKeyProblem(key: string): string | undefined {
  if (key === '') return 'a label key must not be empty';
  if (key.includes('*')) return 'wildcards are not allowed in label keys';
  const slash = key.lastIndexOf('/');
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return `"${key}": the prefix must be a DNS subdomain`;
  if (name.length > 63 || !LABEL_NAME.test(name)) return `"${key}" is not a valid label key (alphanumerics, "-", "_", ".", at most 63 characters)`;
  return undefined;
}

function labelValueProblem(value: string): string | undefined {
  if (value.includes('*')) return 'wildcards are not allowed in label values';
  if (value !== '' && (value.length > 63 || !LABEL_NAME.test(value))) {
    return `"${value}" is not a valid label value (alphanumerics, "-", "_", ".", at most 63 characters)`;
  }
  return undefined;
}

function checkSelector(issues: Issues, path: string, selector: unknown): void {
  if (!present(selector)) return;
  if (!isObject(selector)) {
    issues.error(path, 'must be an object with matchLabels');
    return;
  }
  checkKnownFields(issues, path, selector, ['matchLabels']);
  const labels = selector.matchLabels;
  if (!present(labels)) return;
  if (!isObject(labels)) {
    issues.error(`${path}.matchLabels`, 'must be a map of label names to values');
    return;
  }
  for (const [key, value] of Object.entries(labels)) {
    const keyProblem = labelKeyProblem(key);
    if (keyProblem) issues.error(`${path}.matchLabels`, keyProblem);
    if (typeof value !== 'string') {
      issues.error(`${path}.matchLabels.${key}`, `must be a string, got ${describe(value)}${typeof value === 'number' || typeof value === 'boolean' ? ' (quote it)' : ''}`);
      continue;
    }
    const valueProblem = labelValueProblem(value);
    if (valueProblem) issues.error(`${path}.matchLabels.${key}`, valueProblem);
  }
}

function hasLabels(selector: unknown): boolean {
  return isObject(selector) && isObject(selector.matchLabels) && Object.keys(selector.matchLabels).length > 0;
}

function checkMetadata(issues: Issues, obj: Record<string, unknown>): { name: string; namespace: string } {
  const meta = obj.metadata;
  if (!isObject(meta)) {
    issues.error('metadata', 'is required (with name and namespace)');
    return { name: '', namespace: '' };
  }
  const name = typeof meta.name === 'string' ? meta.name : '';
  const namespace = typeof meta.namespace === 'string' ? meta.namespace : '';
  if (name === '') issues.error('metadata.name', 'is required');
  if (namespace === '') issues.error('metadata.namespace', 'is required');
  if (present(meta.creationTimestamp) && (typeof meta.creationTimestamp !== 'string' || Number.isNaN(Date.parse(meta.creationTimestamp)))) {
    issues.error('metadata.creationTimestamp', 'must be an RFC 3339 timestamp');
  }
  if (present(meta.annotations)) {
    if (!isObject(meta.annotations)) issues.error('metadata.annotations', 'must be a map of strings');
    else {
      for (const [key, value] of Object.entries(meta.annotations)) {
        if (typeof value !== 'string') issues.error(`metadata.annotations.${key}`, 'must be a string');
      }
    }
  }
  return { name, namespace };
}

function checkEnvelope(issues: Issues, obj: unknown, kind: string): Record<string, unknown> | undefined {
  if (!isObject(obj)) {
    issues.error('(object)', `a ${kind} must be an object`);
    return undefined;
  }
  if (typeof obj.apiVersion !== 'string' || !SECURITY_API_VERSIONS.includes(obj.apiVersion)) {
    issues.error('apiVersion', `must be one of ${SECURITY_API_VERSIONS.join(', ')}, got ${describe(obj.apiVersion)}`);
  }
  if (obj.kind !== kind) issues.error('kind', `must be ${kind}`);
  return obj;
}

// ---- PeerAuthentication ----

function checkMtls(issues: Issues, path: string, value: unknown): void {
  if (!present(value)) return;
  if (!isObject(value)) {
    issues.error(path, 'must be an object with a mode');
    return;
  }
  checkKnownFields(issues, path, value, ['mode']);
  const mode = value.mode;
  if (present(mode) && (typeof mode !== 'string' || !(MTLS_MODES as readonly string[]).includes(mode))) {
    issues.error(`${path}.mode`, `invalid mode ${describe(mode)}: expected one of ${MTLS_MODES.join(', ')}`);
  }
}

export function validatePeerAuthentication(obj: unknown, options: PolicyOptions = {}): ValidationResult<PeerAuthentication> {
  const issues = new Issues();
  const root = checkEnvelope(issues, obj, 'PeerAuthentication');
  if (!root) return { errors: issues.errors, warnings: issues.warnings };
  const { namespace } = checkMetadata(issues, root);
  const spec = present(root.spec) ? root.spec : {};
  if (!isObject(spec)) {
    issues.error('spec', 'must be an object');
    return { errors: issues.errors, warnings: issues.warnings };
  }
  checkKnownFields(issues, 'spec', spec, ['selector', 'mtls', 'portLevelMtls']);
  checkSelector(issues, 'spec.selector', spec.selector);
  checkMtls(issues, 'spec.mtls', spec.mtls);

  const portLevel = spec.portLevelMtls;
  if (present(portLevel)) {
    if (!isObject(portLevel)) {
      issues.error('spec.portLevelMtls', 'must be a map of port numbers to {mode}');
    } else {
      if (Object.keys(portLevel).length === 0) issues.error('spec.portLevelMtls', 'must have at least one port when set');
      if (!hasLabels(spec.selector)) {
        issues.error('spec.portLevelMtls', 'portLevelMtls requires selector (only workload-level policies may set per-port modes)');
      }
      for (const [port, mtls] of Object.entries(portLevel)) {
        if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
          issues.error(`spec.portLevelMtls.${port}`, 'port must be in range 1..65535');
        }
        if (!isObject(mtls)) issues.error(`spec.portLevelMtls.${port}`, 'must be an object with a mode');
        else checkMtls(issues, `spec.portLevelMtls.${port}`, mtls);
      }
    }
  }

  const rootNamespace = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  if (namespace === rootNamespace && hasLabels(spec.selector)) {
    issues.warn('spec.selector', `a PeerAuthentication with a selector in the root namespace ${rootNamespace} is ignored (as in Istio)`);
  }
  if (issues.errors.length > 0) return { errors: issues.errors, warnings: issues.warnings };
  return { policy: { ...(root as unknown as PeerAuthentication), spec }, errors: [], warnings: issues.warnings };
}

// ---- AuthorizationPolicy ----

const SOURCE_FIELDS = [
  'principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces',
  'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks',
] as const;
const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const HTTP_ONLY_OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

function checkIpList(issues: Issues, path: string, values: string[]): void {
  values.forEach((v, i) => {
    const parsed = parseIpRange(v);
    if (typeof parsed === 'string') issues.error(`${path}[${i}]`, parsed);
  });
}

function portProblem(value: string, min: number): string | undefined {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > 65535) return `bad port "${value}": expected a number ${min}-65535`;
  return undefined;
}

function checkPortList(issues: Issues, path: string, values: string[], min: number): void {
  values.forEach((v, i) => {
    const problem = portProblem(v, min);
    if (problem) issues.error(`${path}[${i}]`, problem);
  });
}

/** `serviceAccounts` take `namespace/name` or `name` (the policy's namespace), literally. */
function serviceAccountProblem(value: string): string | undefined {
  if (value.includes('*')) return 'wildcards are not allowed in service accounts';
  const parts = value.split('/');
  if (parts.length > 2 || parts.some((p) => p === '')) return `"${value}" must be "<namespace>/<serviceaccount>" or "<serviceaccount>"`;
  return undefined;
}

function checkSource(issues: Issues, path: string, source: Record<string, unknown>): void {
  checkKnownFields(issues, path, source, SOURCE_FIELDS);
  const lists = Object.fromEntries(SOURCE_FIELDS.map((f) => [f, stringList(issues, `${path}.${f}`, source[f])])) as Record<
    (typeof SOURCE_FIELDS)[number],
    string[]
  >;
  if (SOURCE_FIELDS.every((f) => !present(source[f]) || (Array.isArray(source[f]) && (source[f] as unknown[]).length === 0))) {
    issues.error(path, 'must not be empty (set at least one of principals, namespaces, serviceAccounts, ipBlocks, … or their not- forms)');
  }
  for (const f of ['requestPrincipals', 'notRequestPrincipals'] as const) {
    if (lists[f].length > 0) issues.warn(`${path}.${f}`, NO_REQUEST_AUTHENTICATION);
  }
  const identity = lists.principals.length + lists.notPrincipals.length + lists.namespaces.length + lists.notNamespaces.length;
  if (identity > 0 && lists.serviceAccounts.length + lists.notServiceAccounts.length > 0) {
    issues.error(path, 'serviceAccounts and notServiceAccounts cannot be combined with principals or namespaces');
  }
  for (const f of ['serviceAccounts', 'notServiceAccounts'] as const) {
    lists[f].forEach((v, i) => {
      const problem = serviceAccountProblem(v);
      if (problem) issues.error(`${path}.${f}[${i}]`, problem);
    });
  }
  for (const f of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const) checkIpList(issues, `${path}.${f}`, lists[f]);
}

function checkOperation(issues: Issues, path: string, operation: Record<string, unknown>): void {
  checkKnownFields(issues, path, operation, OPERATION_FIELDS);
  const lists = Object.fromEntries(OPERATION_FIELDS.map((f) => [f, stringList(issues, `${path}.${f}`, operation[f])])) as Record<
    (typeof OPERATION_FIELDS)[number],
    string[]
  >;
  if (OPERATION_FIELDS.every((f) => !present(operation[f]) || (Array.isArray(operation[f]) && (operation[f] as unknown[]).length === 0))) {
    issues.error(path, 'must not be empty (set at least one of hosts, ports, methods, paths or their not- forms)');
  }
  checkPortList(issues, `${path}.ports`, lists.ports, 1);
  checkPortList(issues, `${path}.notPorts`, lists.notPorts, 1);
  for (const f of ['paths', 'notPaths'] as const) {
    lists[f].forEach((v, i) => {
      const problem = pathTemplateProblem(v);
      if (problem) issues.error(`${path}.${f}[${i}]`, problem);
    });
  }
}

const SIMPLE_KEYS = ['source.ip', 'remote.ip', 'destination.ip', 'source.namespace', 'source.principal', 'source.serviceAccount', 'destination.port', 'connection.sni'];

/** Checks a `when` key and its values; returns why the key itself is refused, if it is. */
function checkConditionKey(issues: Issues, path: string, key: string, values: string[], valuesPath: string): void {
  if (key.startsWith('request.headers')) {
    if (!/^request\.headers\[[^\][]+\]$/.test(key)) issues.error(`${path}.key`, `bad key "${key}": expected request.headers[<header-name>]`);
    return;
  }
  if (key.startsWith('request.auth.')) {
    if (!/^request\.auth\.(principal|audiences|presenter|claims(\[[^\][]+\])+)$/.test(key)) issues.error(`${path}.key`, `unknown attribute "${key}" (request.auth.principal, audiences, presenter or claims[<name>])`);
    else issues.warn(`${path}.key`, `"${key}": ${NO_REQUEST_AUTHENTICATION}`);
    return;
  }
  if (key.startsWith('experimental.')) {
    issues.error(`${path}.key`, `"${key}": experimental Envoy attributes are not supported by Cinch`);
    return;
  }
  if (key === 'destination.namespace') return issues.error(`${path}.key`, `attribute ${key} is replaced by metadata.namespace`);
  if (key.startsWith('destination.labels')) return issues.error(`${path}.key`, `attribute ${key} is replaced by the workload selector`);
  if (key === 'destination.name' || key === 'destination.user') return issues.error(`${path}.key`, `deprecated attribute ${key}: only supported in v1alpha1`);
  if (!SIMPLE_KEYS.includes(key)) {
    issues.error(`${path}.key`, `unknown attribute "${key}" (supported: ${SIMPLE_KEYS.join(', ')}, request.headers[<name>])`);
    return;
  }
  if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip') checkIpList(issues, valuesPath, values);
  if (key === 'destination.port') checkPortList(issues, valuesPath, values, 0);
  if (key === 'source.serviceAccount') {
    values.forEach((v, i) => {
      const problem = serviceAccountProblem(v);
      if (problem) issues.error(`${valuesPath}[${i}]`, problem);
    });
  }
}

function checkCondition(issues: Issues, path: string, condition: unknown): void {
  if (!isObject(condition)) {
    issues.error(path, 'must be an object with key and values/notValues');
    return;
  }
  checkKnownFields(issues, path, condition, ['key', 'values', 'notValues']);
  const key = condition.key;
  if (typeof key !== 'string' || key === '') {
    issues.error(`${path}.key`, 'must not be empty');
    return;
  }
  const values = stringList(issues, `${path}.values`, condition.values);
  const notValues = stringList(issues, `${path}.notValues`, condition.notValues);
  const nonEmpty = (v: unknown): boolean => Array.isArray(v) && v.length > 0;
  if (!nonEmpty(condition.values) && !nonEmpty(condition.notValues)) {
    issues.error(path, `at least one of values or notValues must be set for key ${key}`);
  }
  const before = issues.errors.length;
  checkConditionKey(issues, path, key, values, `${path}.values`);
  // The key is reported once; values are only checked again when the key was fine.
  if (issues.errors.length === before) checkConditionKey(issues, path, key, notValues, `${path}.notValues`);
}

/** For a list field that, when present, must be a non-empty list of objects holding `inner`. */
function checkWrappedList(
  issues: Issues,
  path: string,
  value: unknown,
  inner: string,
  check: (path: string, body: Record<string, unknown>) => void,
): void {
  if (!present(value)) return;
  if (!Array.isArray(value)) {
    issues.error(path, `must be a list of {${inner}: …}`);
    return;
  }
  if (value.length === 0) issues.error(path, 'must not be empty when set (omit it to match any)');
  value.forEach((item, i) => {
    const itemPath = `${path}[${i}]`;
    if (!isObject(item)) return issues.error(itemPath, `must be an object with ${inner}`);
    checkKnownFields(issues, itemPath, item, [inner]);
    const body = item[inner];
    if (!isObject(body)) return issues.error(`${itemPath}.${inner}`, 'must be set (an object)');
    check(`${itemPath}.${inner}`, body);
  });
}

function usesHttpOnlyFields(rule: Record<string, unknown>): { httpOnly: boolean; hasPorts: boolean } {
  let httpOnly = false;
  let hasPorts = false;
  for (const to of Array.isArray(rule.to) ? rule.to : []) {
    const op: unknown = isObject(to) ? to.operation : undefined;
    if (!isObject(op)) continue;
    if (HTTP_ONLY_OPERATION_FIELDS.some((f) => present(op[f]))) httpOnly = true;
    if (present(op.ports) || present(op.notPorts)) hasPorts = true;
  }
  for (const from of Array.isArray(rule.from) ? rule.from : []) {
    const source: unknown = isObject(from) ? from.source : undefined;
    if (isObject(source) && (present(source.requestPrincipals) || present(source.notRequestPrincipals))) httpOnly = true;
  }
  for (const c of Array.isArray(rule.when) ? rule.when : []) {
    if (isObject(c) && typeof c.key === 'string' && (c.key.startsWith('request.headers') || c.key.startsWith('request.auth.'))) httpOnly = true;
  }
  return { httpOnly, hasPorts };
}

function checkTargetRef(issues: Issues, path: string, ref: unknown, namespace: string): void {
  if (!isObject(ref)) return issues.error(path, 'must be an object with kind and name');
  checkKnownFields(issues, path, ref, ['group', 'kind', 'name', 'namespace']);
  for (const f of ['kind', 'name'] as const) {
    if (typeof ref[f] !== 'string' || ref[f] === '') issues.error(`${path}.${f}`, 'is required');
  }
  if (present(ref.group) && typeof ref.group !== 'string') issues.error(`${path}.group`, 'must be a string');
  if (present(ref.namespace) && ref.namespace !== '' && ref.namespace !== namespace) {
    issues.error(`${path}.namespace`, 'cross-namespace references are not supported');
  }
}

// `_options` keeps the signature of validatePeerAuthentication; nothing here depends on the root namespace.
export function validateAuthorizationPolicy(obj: unknown, _options: PolicyOptions = {}): ValidationResult<AuthorizationPolicy> {
  const issues = new Issues();
  const root = checkEnvelope(issues, obj, 'AuthorizationPolicy');
  if (!root) return { errors: issues.errors, warnings: issues.warnings };
  const { namespace } = checkMetadata(issues, root);
  const spec = present(root.spec) ? root.spec : {};
  if (!isObject(spec)) {
    issues.error('spec', 'must be an object');
    return { errors: issues.errors, warnings: issues.warnings };
  }
  checkKnownFields(issues, 'spec', spec, ['selector', 'targetRef', 'targetRefs', 'action', 'provider', 'rules']);
  checkSelector(issues, 'spec.selector', spec.selector);

  const targetRefs = spec.targetRefs;
  if (present(spec.targetRef)) checkTargetRef(issues, 'spec.targetRef', spec.targetRef, namespace);
  if (present(targetRefs)) {
    if (!Array.isArray(targetRefs)) issues.error('spec.targetRefs', 'must be a list');
    else targetRefs.forEach((ref, i) => checkTargetRef(issues, `spec.targetRefs[${i}]`, ref, namespace));
  }
  const scopes = ['selector', 'targetRef', 'targetRefs'].filter((f) => present(spec[f]));
  if (scopes.length > 1) issues.error('spec', `${scopes.join(' and ')} are mutually exclusive: set only one of selector, targetRef, targetRefs`);
  else if (scopes[0] === 'targetRef' || scopes[0] === 'targetRefs') {
    issues.warn(`spec.${scopes[0]}`, 'policies attached with targetRefs apply to gateways and waypoints, never to sidecar workloads: it has no effect in Cinch');
  }

  const action = present(spec.action) ? spec.action : 'ALLOW';
  let custom = false;
  if (typeof action !== 'string' || !(AUTHORIZATION_ACTIONS as readonly string[]).includes(action)) {
    issues.error('spec.action', `unknown action ${describe(action)}: expected one of ALLOW, DENY, AUDIT (CUSTOM is not supported)`);
  } else if (action === 'CUSTOM') {
    custom = true;
  }
  if (present(spec.provider)) {
    if (!custom) issues.error('spec.provider', `must not be set with a non-CUSTOM action (${String(action)})`);
    else if (!isObject(spec.provider)) issues.error('spec.provider', 'must be an object with a name');
    else checkKnownFields(issues, 'spec.provider', spec.provider, ['name']);
  }

  const rules = spec.rules;
  /** Rules with errors (by index) are left out; errors outside the rules skip the whole policy. */
  const rulesInError = new Set<number>();
  let ruleErrorCount = 0;
  if (present(rules) && !Array.isArray(rules)) {
    issues.error('spec.rules', 'must be a list of rules');
  } else if (Array.isArray(rules)) {
    rules.forEach((rule, i) => {
      const errorsBefore = issues.errors.length;
      checkRule(issues, `spec.rules[${i}]`, rule, action);
      if (issues.errors.length > errorsBefore) {
        rulesInError.add(i);
        ruleErrorCount += issues.errors.length - errorsBefore;
      }
    });
  }
  const hasRules = Array.isArray(rules) && rules.length > 0;
  if ((action === 'DENY' || action === 'AUDIT') && !hasRules) {
    issues.warn('spec.rules', `a ${action} policy without rules never matches; add rules: [{}] to match every request`);
  }
  if (custom && !hasRules) issues.warn('spec.rules', 'a CUSTOM policy without rules never matches');

  const annotations = isObject(root.metadata) && isObject(root.metadata.annotations) ? root.metadata.annotations : {};
  const dryRun = annotations[DRY_RUN_ANNOTATION];
  if (typeof dryRun === 'string' && parseBool(dryRun) === undefined) {
    issues.warn(`metadata.annotations.${DRY_RUN_ANNOTATION}`, `"${dryRun}" is not a boolean; the policy is enforced`);
  }

  // Errors outside the rules (metadata, selector, action, …) leave the policy's scope or meaning unknown: skipped.
  const policyErrors = issues.errors.length - ruleErrorCount;
  if (custom) issues.error('spec.action', CUSTOM_UNSUPPORTED + '; requests it matches are denied (fail closed)');
  if (policyErrors > 0) return { errors: issues.errors, warnings: issues.warnings };
  // A well-formed CUSTOM policy stays enforceable: Cinch denies what it matches rather than let it through.
  // A rule with errors is left out and the rest of the policy enforced, as Istio does with rules it cannot build.
  // Skipping the whole policy instead could make it weaker than its author meant: an ALLOW policy gone can leave
  // "no ALLOW policy: allow everything", while an ALLOW policy left with no rules allows nothing.
  let enforcedSpec = spec;
  if (Array.isArray(rules)) {
    const kept = (rules as unknown[]).flatMap((rule, i) => {
      const path = `spec.rules[${i}]`;
      if (!rulesInError.has(i)) return [rule];
      issues.warn(path, `left out because of its errors (the rest of the policy applies): ${action === 'ALLOW' ? 'it allows nothing' : 'it matches nothing'}`);
      return [];
    });
    if (rulesInError.size > 0) enforcedSpec = { ...spec, rules: kept };
  }
  const policy = { ...(root as unknown as AuthorizationPolicy), spec: enforcedSpec as AuthorizationPolicy['spec'] };
  return { policy, errors: issues.errors, warnings: issues.warnings };
}

function checkRule(issues: Issues, path: string, rule: unknown, action: unknown): void {
  if (!isObject(rule)) return issues.error(path, 'must be an object ({} matches every request)');
  checkKnownFields(issues, path, rule, ['from', 'to', 'when']);
  checkWrappedList(issues, `${path}.from`, rule.from, 'source', (p, body) => checkSource(issues, p, body));
  checkWrappedList(issues, `${path}.to`, rule.to, 'operation', (p, body) => checkOperation(issues, p, body));
  if (present(rule.when)) {
    if (!Array.isArray(rule.when)) issues.error(`${path}.when`, 'must be a list of conditions');
    else rule.when.forEach((c, j) => checkCondition(issues, `${path}.when[${j}]`, c));
  }
  if (action === 'DENY') {
    const { httpOnly, hasPorts } = usesHttpOnlyFields(rule);
    if (httpOnly && !hasPorts) {
      issues.warn(path, 'on TCP traffic this DENY rule ignores its HTTP-only conditions (hosts, methods, paths, headers) and denies all TCP traffic it otherwise matches; add ports to limit it');
    }
  }
}

/** Go's strconv.ParseBool, which Istio uses for `istio.io/dry-run`. */
export function parseBool(text: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
  return undefined;
}

// ---- Sets of objects ----

export interface PolicyProblem {
  kind: string;
  /** `namespace/name`, or what is known of it. */
  ref: string;
  errors: string[];
  warnings: string[];
  /** False when the object was skipped; true when it is still enforced (warnings only, or a CUSTOM policy failing closed). */
  enforced: boolean;
}

export interface PolicySet {
  peerAuthentications: PeerAuthentication[];
  authorizationPolicies: AuthorizationPolicy[];
  /** Invalid objects (skipped) and valid ones with warnings, for logs, metrics and Events. */
  problems: PolicyProblem[];
}

export function policyRef(obj: unknown): string {
  const meta = isObject(obj) && isObject(obj.metadata) ? obj.metadata : {};
  const ns = typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : '?';
  const name = typeof meta.name === 'string' && meta.name !== '' ? meta.name : '?';
  return `${ns}/${name}`;
}

/** True for objects of Istio's security API group (whatever their kind), so other kinds can be ignored. */
export function isSecurityObject(obj: unknown): boolean {
  return isObject(obj) && typeof obj.apiVersion === 'string' && obj.apiVersion.startsWith(`${SECURITY_GROUP}/`);
}

/**
 * Validates a batch of objects (e.g. everything an informer holds, or every document of a YAML
 * folder). Objects outside security.istio.io are ignored; invalid ones are reported and skipped,
 * never affecting the valid ones.
 */
export function buildPolicySet(objects: readonly unknown[], options: PolicyOptions = {}): PolicySet {
  const set: PolicySet = { peerAuthentications: [], authorizationPolicies: [], problems: [] };
  for (const obj of objects) {
    if (!isSecurityObject(obj)) continue;
    const kind = isObject(obj) && typeof obj.kind === 'string' ? obj.kind : '?';
    let result: ValidationResult<SecurityPolicy>;
    if (kind === 'PeerAuthentication') result = validatePeerAuthentication(obj, options);
    else if (kind === 'AuthorizationPolicy') result = validateAuthorizationPolicy(obj, options);
    else {
      set.problems.push({ kind, ref: policyRef(obj), errors: [`kind: ${kind} is not supported by Cinch (only PeerAuthentication and AuthorizationPolicy)`], warnings: [], enforced: false });
      continue;
    }
    if (result.policy?.kind === 'PeerAuthentication') set.peerAuthentications.push(result.policy);
    else if (result.policy?.kind === 'AuthorizationPolicy') set.authorizationPolicies.push(result.policy);
    if (result.errors.length > 0 || result.warnings.length > 0) {
      set.problems.push({ kind, ref: policyRef(obj), errors: result.errors, warnings: result.warnings, enforced: result.policy !== undefined });
    }
  }
  return set;
}
