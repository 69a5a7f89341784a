// Every Cinch annotation: accepted values, and a refusal naming the annotation and the value for bad ones.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InjectionError, injectPod, parseOverrides } from '../../../src/inject/index.ts';
import { native } from './fixtures.ts';

const VALID: [string, string, Record<string, unknown>][] = [
  ['cinch.dev/proxy-image', 'ghcr.io/example/cinch:1.2.3', { proxyImage: 'ghcr.io/example/cinch:1.2.3' }],
  ['cinch.dev/proxy-cpu', '250m', { proxyCpu: '250m' }],
  ['cinch.dev/proxy-cpu', '0.5', { proxyCpu: '0.5' }],
  ['cinch.dev/proxy-cpu', '1', { proxyCpu: '1' }],
  ['cinch.dev/proxy-memory', '128Mi', { proxyMemory: '128Mi' }],
  ['cinch.dev/proxy-memory', '1e9', { proxyMemory: '1e9' }],
  ['cinch.dev/proxy-memory', '1G', { proxyMemory: '1G' }],
  ['cinch.dev/proxy-cpu-limit', '2', { proxyCpuLimit: '2' }],
  ['cinch.dev/proxy-memory-limit', '1.5Gi', { proxyMemoryLimit: '1.5Gi' }],
  ['cinch.dev/log-level', 'warn', { logLevel: 'warn' }],
  ['cinch.dev/native-sidecar', 'true', { nativeSidecar: true }],
  ['cinch.dev/native-sidecar', 'false', { nativeSidecar: false }],
  ['cinch.dev/rewrite-probes', 'false', { rewriteProbes: false }],
  ['traffic.cinch.dev/include-inbound-ports', '*', { includeInboundPorts: '*' }],
  ['traffic.cinch.dev/include-inbound-ports', ' 80 , 443,80 ', { includeInboundPorts: [80, 443] }],
  ['traffic.cinch.dev/include-inbound-ports', '', { includeInboundPorts: [] }],
  ['traffic.cinch.dev/exclude-inbound-ports', '1,65535', { excludeInboundPorts: [1, 65535] }],
  ['traffic.cinch.dev/exclude-outbound-ports', '5432', { excludeOutboundPorts: [5432] }],
  ['traffic.cinch.dev/include-outbound-cidrs', '*', { includeOutboundCidrs: '*' }],
  ['traffic.cinch.dev/include-outbound-cidrs', '10.0.0.0/8, 2001:db8::/32', { includeOutboundCidrs: ['10.0.0.0/8', '2001:db8::/32'] }],
  ['traffic.cinch.dev/include-outbound-cidrs', '0.0.0.0/0,::/0', { includeOutboundCidrs: ['0.0.0.0/0', '::/0'] }],
  ['traffic.cinch.dev/exclude-outbound-cidrs', '169.254.169.254,fd00::1', { excludeOutboundCidrs: ['169.254.169.254/32', 'fd00::1/128'] }],
  ['traffic.cinch.dev/exclude-outbound-cidrs', '10.1.2.3/8', { excludeOutboundCidrs: ['10.1.2.3/8'] }],
];

const INVALID: [string, string, RegExp][] = [
  ['cinch.dev/proxy-image', '', /not a container image/],
  ['cinch.dev/proxy-image', 'bad image', /not a container image/],
  ['cinch.dev/proxy-image', '--privileged', /not a container image/],
  ['cinch.dev/proxy-cpu', 'lots', /not a Kubernetes quantity/],
  ['cinch.dev/proxy-cpu', '-1', /not a Kubernetes quantity/],
  ['cinch.dev/proxy-cpu', '100 m', /not a Kubernetes quantity/],
  ['cinch.dev/proxy-memory', '128MB', /not a Kubernetes quantity/],
  ['cinch.dev/proxy-memory', '1.2.3Mi', /not a Kubernetes quantity/],
  ['cinch.dev/proxy-cpu-limit', '', /not a Kubernetes quantity/],
  ['cinch.dev/proxy-memory-limit', '1gi', /not a Kubernetes quantity/],
  ['cinch.dev/log-level', 'trace', /expected one of error, warn, info, debug/],
  ['cinch.dev/log-level', 'INFO', /expected one of/],
  ['cinch.dev/native-sidecar', 'yes', /expected "true" or "false"/],
  ['cinch.dev/native-sidecar', 'True', /expected "true" or "false"/],
  ['cinch.dev/rewrite-probes', '0', /expected "true" or "false"/],
  ['traffic.cinch.dev/include-inbound-ports', '0', /"0" is not a port number/],
  ['traffic.cinch.dev/include-inbound-ports', '65536', /"65536" is not a port number/],
  ['traffic.cinch.dev/include-inbound-ports', '80,*', /"\*" must be the whole value/],
  ['traffic.cinch.dev/include-inbound-ports', '80,,90', /empty item/],
  ['traffic.cinch.dev/include-inbound-ports', 'http', /"http" is not a port number/],
  ['traffic.cinch.dev/exclude-inbound-ports', '*', /"\*" is not allowed in an exclude list/],
  ['traffic.cinch.dev/exclude-inbound-ports', '8080-8090', /not a port number/],
  ['traffic.cinch.dev/exclude-outbound-ports', '-1', /not a port number/],
  ['traffic.cinch.dev/exclude-outbound-ports', '1.5', /not a port number/],
  ['traffic.cinch.dev/include-outbound-cidrs', '10.0.0.0/33', /prefix must be 0-32/],
  ['traffic.cinch.dev/include-outbound-cidrs', 'fd00::/129', /prefix must be 0-128/],
  ['traffic.cinch.dev/include-outbound-cidrs', '10.0.0/8', /not an IPv4 or IPv6 address/],
  ['traffic.cinch.dev/include-outbound-cidrs', '*,10.0.0.0/8', /"\*" must be the whole value/],
  ['traffic.cinch.dev/include-outbound-cidrs', '10.0.0.0/', /prefix must be/],
  ['traffic.cinch.dev/exclude-outbound-cidrs', '*', /"\*" is not allowed in an exclude list/],
  ['traffic.cinch.dev/exclude-outbound-ports', '22,*', /"\*" is not allowed in an exclude list/],
  ['traffic.cinch.dev/exclude-outbound-cidrs', 'example.com/32', /not an IPv4 or IPv6 address/],
];

describe('valid annotation values', () => {
  for (const [annotation, value, expected] of VALID) {
    test(`${annotation}=${JSON.stringify(value)}`, () => {
      assert.deepEqual(parseOverrides({ [annotation]: value, unrelated: 'x' }), expected);
    });
  }
  test('no annotations at all', () => {
    assert.deepEqual(parseOverrides(undefined), {});
  });
});

describe('invalid annotation values are refused, naming the annotation and the value', () => {
  for (const [annotation, value, reason] of INVALID) {
    test(`${annotation}=${JSON.stringify(value)}`, () => {
      const pod = { metadata: { name: 'p', annotations: { [annotation]: value } }, spec: { containers: [{ name: 'app', image: 'a' }] } };
      assert.throws(
        () => injectPod(pod, native),
        (err: unknown) =>
          err instanceof InjectionError &&
          err.code === 'invalid_annotation' &&
          err.annotation === annotation &&
          err.message.startsWith(`invalid annotation ${annotation}=${JSON.stringify(value)}: `) &&
          reason.test(err.message),
      );
    });
  }
});

test('a very long invalid value is shortened in the message', () => {
  const value = 'x'.repeat(5000);
  assert.throws(() => parseOverrides({ 'cinch.dev/log-level': value }), (err: Error) => err.message.length < 400);
});
