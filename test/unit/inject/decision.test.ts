// The injection decision table: namespace label × pod label × hostNetwork × system namespace.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { INJECTION_REASONS, shouldInject, type InjectionReason, type NamespaceInfo } from '../../../src/inject/index.ts';

const pod = (label?: string, hostNetwork?: boolean): V1Pod => ({
  metadata: label === undefined ? { name: 'p' } : { name: 'p', labels: { 'cinch.dev/inject': label } },
  spec: { containers: [{ name: 'app' }], ...(hostNetwork === undefined ? {} : { hostNetwork }) },
});
const ns = (label?: string, name = 'shop'): NamespaceInfo => ({ name, labels: label === undefined ? { 'kubernetes.io/metadata.name': name } : { 'cinch.dev/inject': label } });

const CASES: [string, V1Pod, NamespaceInfo, InjectionReason][] = [
  ['namespace enabled, pod unlabelled', pod(), ns('enabled'), 'injected'],
  ['namespace enabled, pod enabled', pod('enabled'), ns('enabled'), 'injected'],
  ['namespace enabled, pod disabled', pod('disabled'), ns('enabled'), 'opt_out'],
  ['namespace enabled, pod with another value (ignored)', pod('true'), ns('enabled'), 'injected'],
  ['namespace unlabelled, pod enabled', pod('enabled'), ns(), 'injected'],
  ['namespace unlabelled, pod unlabelled', pod(), ns(), 'not_enabled'],
  ['namespace unlabelled, pod disabled', pod('disabled'), ns(), 'opt_out'],
  ['namespace unlabelled, pod "true" is not an opt-in', pod('true'), ns(), 'not_enabled'],
  ['namespace disabled, pod enabled (the pod label opts in)', pod('enabled'), ns('disabled'), 'injected'],
  ['namespace disabled, pod unlabelled', pod(), ns('disabled'), 'not_enabled'],
  ['namespace "Enabled" (case matters)', pod(), ns('Enabled'), 'not_enabled'],
  ['hostNetwork in an enabled namespace', pod(undefined, true), ns('enabled'), 'host_network'],
  ['hostNetwork with pod opt-in', pod('enabled', true), ns(), 'host_network'],
  ['hostNetwork false is fine', pod(undefined, false), ns('enabled'), 'injected'],
  ['kube-system, even if labelled', pod('enabled'), ns('enabled', 'kube-system'), 'system_namespace'],
  ['kube-public', pod('enabled'), ns('enabled', 'kube-public'), 'system_namespace'],
  ['kube-node-lease', pod(), ns('enabled', 'kube-node-lease'), 'system_namespace'],
  ['cinch-system is an ordinary namespace', pod('enabled'), ns(undefined, 'cinch-system'), 'injected'],
  ['no metadata at all', { spec: { containers: [] } }, ns('enabled'), 'injected'],
  ['no labels on the namespace object', pod('enabled'), { name: 'x' }, 'injected'],
];

for (const [name, p, namespace, reason] of CASES) {
  test(`decision: ${name} → ${reason}`, () => {
    assert.deepEqual(shouldInject(p, namespace), { inject: reason === 'injected', reason });
  });
}

test('reasons are short snake_case strings, usable as metric labels', () => {
  for (const reason of INJECTION_REASONS) assert.match(reason, /^[a-z_]{1,20}$/);
});
