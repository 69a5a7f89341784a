// The CRDs, read as files: both versions served with one schema, nothing newer than Kubernetes
// 1.20's apiextensions v1 (no CEL), a structural schema (every node typed), and enums that agree
// with what the policy core accepts. (Installing them on a real API server is an integration test.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { AUTHORIZATION_ACTIONS, MTLS_MODES } from '../../../src/policy/types.ts';

const CRDS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../webhook-config/crds');

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  enum?: string[];
  pattern?: string;
  anyOf?: Schema[];
  allOf?: Schema[];
  oneOf?: Schema[];
  not?: Schema;
  [key: string]: unknown;
}
interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; shortNames?: string[] };
    versions: { name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: Schema }; subresources?: unknown }[];
  };
}

function load(file: string): Crd {
  return parse(fs.readFileSync(path.join(CRDS, file), 'utf8')) as Crd;
}

const files = {
  'peerauthentications.security.istio.io.yaml': { kind: 'PeerAuthentication', plural: 'peerauthentications', shortNames: ['pa'] },
  'authorizationpolicies.security.istio.io.yaml': { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', shortNames: undefined },
};

/** Every node outside value validations carries a type (or preserves unknown fields). */
function assertStructural(schema: Schema, at: string): void {
  assert.ok(schema.type !== undefined || schema['x-kubernetes-preserve-unknown-fields'] === true, `${at}: no type`);
  for (const [name, child] of Object.entries(schema.properties ?? {})) assertStructural(child, `${at}.${name}`);
  if (typeof schema.additionalProperties === 'object') assertStructural(schema.additionalProperties, `${at}.*`);
  if (schema.items) assertStructural(schema.items, `${at}[]`);
  for (const v of [...(schema.anyOf ?? []), ...(schema.allOf ?? []), ...(schema.oneOf ?? []), ...(schema.not ? [schema.not] : [])]) {
    assertValueValidationOnly(v, at);
  }
}

/** Inside anyOf/allOf/oneOf/not a structural schema may only restrict values, never declare types. */
function assertValueValidationOnly(schema: Schema, at: string): void {
  for (const forbidden of ['type', 'description', 'default', 'additionalProperties', 'nullable', 'properties', 'items']) {
    assert.equal(schema[forbidden], undefined, `${at}: ${forbidden} inside a value validation`);
  }
  for (const v of [...(schema.anyOf ?? []), ...(schema.allOf ?? []), ...(schema.oneOf ?? []), ...(schema.not ? [schema.not] : [])]) {
    assertValueValidationOnly(v, at);
  }
}

for (const [file, expected] of Object.entries(files)) {
  test(`${file}: apiextensions v1, security.istio.io, namespaced, names`, () => {
    const crd = load(file);
    assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
    assert.equal(crd.kind, 'CustomResourceDefinition');
    assert.equal(crd.metadata.name, `${expected.plural}.security.istio.io`);
    assert.equal(crd.spec.group, 'security.istio.io');
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.equal(crd.spec.names.kind, expected.kind);
    assert.equal(crd.spec.names.plural, expected.plural);
    assert.deepEqual(crd.spec.names.shortNames, expected.shortNames);
  });

  test(`${file}: v1 served and stored, v1beta1 served, one schema`, () => {
    const crd = load(file);
    const byName = Object.fromEntries(crd.spec.versions.map((v) => [v.name, v]));
    assert.deepEqual(Object.keys(byName).sort(), ['v1', 'v1beta1']);
    assert.equal(byName.v1.served, true);
    assert.equal(byName.v1.storage, true);
    assert.equal(byName.v1beta1.served, true);
    assert.equal(byName.v1beta1.storage, false);
    assert.deepEqual(byName.v1beta1.schema, byName.v1.schema);
    assert.deepEqual(byName.v1.subresources, { status: {} });
  });

  test(`${file}: structural schema, nothing newer than Kubernetes 1.20`, () => {
    const crd = load(file);
    const keys = new Set<string>();
    const collect = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(collect);
      else if (typeof node === 'object' && node !== null) {
        for (const [k, v] of Object.entries(node)) {
          keys.add(k);
          collect(v);
        }
      }
    };
    collect(crd);
    for (const newer of ['x-kubernetes-validations', 'messageExpression', 'selectableFields']) {
      assert.ok(!keys.has(newer), `${newer} is not in Kubernetes 1.20`);
    }
    for (const v of crd.spec.versions) assertStructural(v.schema.openAPIV3Schema, `${v.name}`);
  });
}

function specOf(file: string): Schema {
  return load(file).spec.versions[0].schema.openAPIV3Schema.properties!.spec;
}

test('AuthorizationPolicy CRD: the action enum is what the core knows', () => {
  assert.deepEqual(specOf('authorizationpolicies.security.istio.io.yaml').properties!.action.enum, [...AUTHORIZATION_ACTIONS]);
});

test('PeerAuthentication CRD: the mode enums are what the core knows', () => {
  const spec = specOf('peerauthentications.security.istio.io.yaml');
  assert.deepEqual(spec.properties!.mtls.properties!.mode.enum, [...MTLS_MODES]);
  assert.deepEqual((spec.properties!.portLevelMtls.additionalProperties as Schema).properties!.mode.enum, [...MTLS_MODES]);
});

test('AuthorizationPolicy CRD: the port pattern takes exactly 1-65535', () => {
  const ops = specOf('authorizationpolicies.security.istio.io.yaml').properties!.rules.items!.properties!.to.items!.properties!.operation.properties!;
  for (const field of ['ports', 'notPorts']) {
    const re = new RegExp(ops[field].items!.pattern!);
    for (const ok of ['1', '80', '8000', '9999', '10000', '59999', '65535']) assert.ok(re.test(ok), `${field} ${ok}`);
    for (const bad of ['0', '00', '080', '65536', '70000', '99999', '-1', 'http', '']) assert.ok(!re.test(bad), `${field} ${bad}`);
  }
});

test('AuthorizationPolicy CRD: the IP pattern refuses what is plainly not an address', () => {
  const source = specOf('authorizationpolicies.security.istio.io.yaml').properties!.rules.items!.properties!.from.items!.properties!.source.properties!;
  const re = new RegExp(source.ipBlocks.items!.pattern!);
  for (const ok of ['10.0.0.1', '10.0.0.0/8', 'fd00::/8', '::1', '::ffff:10.0.0.1']) assert.ok(re.test(ok), ok);
  for (const bad of ['abc', 'example.com', '10.0.0/8', '10.0.0.0/8/8', '']) assert.ok(!re.test(bad), bad);
});

test('CRD schemas know every field the core validates', () => {
  const ap = specOf('authorizationpolicies.security.istio.io.yaml');
  assert.deepEqual(Object.keys(ap.properties!).sort(), ['action', 'provider', 'rules', 'selector', 'targetRef', 'targetRefs']);
  const rule = ap.properties!.rules.items!.properties!;
  assert.deepEqual(Object.keys(rule).sort(), ['from', 'to', 'when']);
  assert.deepEqual(
    Object.keys(rule.from.items!.properties!.source.properties!).sort(),
    ['ipBlocks', 'namespaces', 'notIpBlocks', 'notNamespaces', 'notPrincipals', 'notRemoteIpBlocks', 'notRequestPrincipals', 'notServiceAccounts', 'principals', 'remoteIpBlocks', 'requestPrincipals', 'serviceAccounts'],
  );
  assert.deepEqual(Object.keys(rule.to.items!.properties!.operation.properties!).sort(), ['hosts', 'methods', 'notHosts', 'notMethods', 'notPaths', 'notPorts', 'paths', 'ports']);
  assert.deepEqual(Object.keys(rule.when.items!.properties!).sort(), ['key', 'notValues', 'values']);
  const pa = specOf('peerauthentications.security.istio.io.yaml');
  assert.deepEqual(Object.keys(pa.properties!).sort(), ['mtls', 'portLevelMtls', 'selector']);
});
