import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nativeSidecarSupported, parseKubeVersion } from '../../../src/controlplane/native-sidecar.ts';

test('versions parse with or without v and vendor suffixes', () => {
  assert.deepEqual(parseKubeVersion('v1.29.3'), [1, 29]);
  assert.deepEqual(parseKubeVersion('v1.30.0-eks-1a2b3c'), [1, 30]);
  assert.deepEqual(parseKubeVersion('1.28'), [1, 28]);
  assert.equal(parseKubeVersion('garbage'), undefined);
  assert.equal(parseKubeVersion(undefined), undefined);
});

test('native sidecars need the API server and every kubelet at 1.29 or later', () => {
  const cases: [string | undefined, (string | undefined)[], boolean][] = [
    ['v1.29.0', [], true],
    ['v1.20.2', [], false],
    ['v1.31.1', ['v1.31.1', 'v1.29.5'], true],
    ['v1.31.1', ['v1.31.1', 'v1.28.9'], false], // one old node is enough to say no
    ['v1.28.0', ['v1.30.0'], false],
    ['v1.30.0', [undefined], false], // unknown kubelet: be safe
    ['v2.0.0', ['v2.1.0'], true],
    [undefined, [], false],
  ];
  for (const [api, kubelets, expected] of cases) assert.equal(nativeSidecarSupported(api, kubelets), expected, `${api} ${kubelets.join(',')}`);
});
