// patchToJson must write exactly what JSON.stringify writes, whether or not the values carry text
// remembered from the sidecar template; renderSidecar must render exactly what the plain template does.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Operation } from 'fast-json-patch';
import { injectPod, type InjectionContext } from '../../../src/inject/index.ts';
import { patchToJson, rememberValueJson } from '../../../src/inject/patch.ts';
import { cinchVolumes, initContainer, proxyContainer, renderSidecar, templateKey, type SidecarSettings } from '../../../src/inject/template.ts';
import { SHAPES, classic, native } from './fixtures.ts';

test('patchToJson is JSON.stringify for every pod shape, native and classic, and for a second injection', () => {
  for (const [shape, pod] of Object.entries(SHAPES)) {
    for (const ctx of [native, classic]) {
      const first = injectPod(pod, ctx);
      assert.equal(patchToJson(first.patch), JSON.stringify(first.patch), shape);
      // Re-injection from a JSON round trip (reinvocation), and from the other mode: removes, replaces, whole-list replaces.
      for (const again of [ctx, ctx === native ? classic : native]) {
        const second = injectPod(JSON.parse(JSON.stringify(first.pod)), again);
        assert.equal(patchToJson(second.patch), JSON.stringify(second.patch), `${shape} again`);
      }
    }
  }
});

test('patchToJson is JSON.stringify for any operations, with remembered text anywhere', () => {
  const known = { name: 'k', list: [1, 'two', null] };
  const ops = [
    { op: 'add', path: '/a', value: known },
    { op: 'add', path: '/b', value: [known, { plain: true }, 3, 'x', null, undefined, [known]] },
    { op: 'replace', path: '/c~1d', value: { nested: known } },
    { op: 'remove', path: '/e' },
    { op: 'move', from: '/f', path: '/g' },
    { op: 'test', path: '/h', value: 'é ✓ "quoted" \u2028' },
    { path: '/i', op: 'add', value: known }, // another key order: must not be taken apart
    { op: 'add', path: '/j', value: [] },
    { op: 'add', path: '/k', value: new Date(0) },
  ] as unknown as Operation[];
  const expected = JSON.stringify(ops);
  assert.equal(patchToJson(ops), expected, 'without remembered text');
  rememberValueJson(ops, new Map([[known, JSON.stringify(known)]]));
  assert.equal(patchToJson(ops), expected, 'with remembered text');
  // The remembered text is what gets written (that is the point), where the op's shape allows it.
  rememberValueJson(ops, new Map([[known, '{"name":"k","list":[1,"two",null],"remembered":true}']]));
  assert.equal((patchToJson(ops).match(/"remembered":true/g) ?? []).length, 3); // /a, and twice in /b
  assert.equal(patchToJson([]), '[]');
});

const settings = (over: Partial<SidecarSettings> = {}): SidecarSettings => ({
  image: 'cinch:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
  caAddress: 'cinch.cinch-system.svc:15012',
  trustDomain: 'cluster.local',
  logLevel: 'info',
  tokenExpirationSeconds: 3600,
  capture: { includeInboundPorts: '*', excludeInboundPorts: [], excludeOutboundPorts: [], includeOutboundCidrs: '*', excludeOutboundCidrs: [] },
  native: true,
  appProbes: {},
  appContainers: ['app'],
  ...over,
});

test('renderSidecar renders what the plain template renders, fresh objects each time, for any settings', () => {
  const variants: Partial<SidecarSettings>[] = [
    {},
    { native: false },
    { image: 'registry.example.com/cinch@sha256:abc', logLevel: 'debug', tokenExpirationSeconds: 7200 },
    { resources: { requests: { cpu: '200m' }, limits: {} } },
    { capture: { includeInboundPorts: [8080], excludeInboundPorts: [9090], excludeOutboundPorts: [5432], includeOutboundCidrs: ['10.0.0.0/8'], excludeOutboundCidrs: ['10.1.0.0/16'] } },
    { appProbes: { '/app-health/web/livez': { httpGet: { port: 8080, path: '/ "q" ✓', scheme: 'HTTP' } } }, appContainers: ['web', 'side'] },
    { appContainers: [] },
  ];
  for (const over of variants) {
    const s = settings(over);
    for (let round = 0; round < 2; round++) {
      const rendered = renderSidecar(s);
      const { texts, ...objects } = rendered;
      assert.deepEqual(objects, { init: initContainer(s), proxy: proxyContainer(s), volumes: cinchVolumes(s) }, JSON.stringify(over));
      for (const [value, text] of texts) assert.equal(text, JSON.stringify(value));
      assert.equal(texts.size, 2 + rendered.volumes.length);
      const ops = [
        { op: 'add', path: '/spec/initContainers', value: [rendered.init, rendered.proxy] },
        ...rendered.volumes.map((value, i) => ({ op: 'add', path: `/spec/volumes/${i}`, value })),
      ];
      rememberValueJson(ops, texts);
      assert.equal(patchToJson(ops), JSON.stringify(ops), JSON.stringify(over));
    }
    assert.notEqual(renderSidecar(s).proxy, renderSidecar(s).proxy, 'each pod gets its own objects');
  }
});

test('patch text follows the config: a changed setting is never served from another setting\'s text', () => {
  const ctx = (proxyImage: string): InjectionContext => ({ ...native, config: { ...native.config, proxyImage } });
  const pod = SHAPES['multi-container-every-probe'];
  for (const image of ['cinch:1', 'cinch:2', 'cinch:1']) {
    const { patch } = injectPod(pod, ctx(image));
    const text = patchToJson(patch);
    assert.equal(text, JSON.stringify(patch));
    assert.ok(text.includes(`"image":"${image}"`) && !text.includes(`"image":"cinch:${image === 'cinch:1' ? 2 : 1}"`));
  }
});

test('templateKey changes with every setting the template reads, and with the order of resource fields', () => {
  const base = settings();
  const changed: Record<Exclude<keyof SidecarSettings, 'appProbes' | 'appContainers'>, Partial<SidecarSettings>> = {
    image: { image: 'other:1' },
    imagePullPolicy: { imagePullPolicy: 'Always' },
    resources: { resources: { requests: { cpu: '100m' }, limits: { cpu: '2', memory: '1Gi' } } },
    caAddress: { caAddress: 'ca.example:15012' },
    trustDomain: { trustDomain: 'example.org' },
    logLevel: { logLevel: 'debug' },
    tokenExpirationSeconds: { tokenExpirationSeconds: 601 },
    capture: { capture: { ...base.capture, excludeOutboundPorts: [5432] } },
    native: { native: false },
  };
  const keys = Object.keys(base).filter((k) => k !== 'appProbes' && k !== 'appContainers').sort();
  assert.deepEqual(Object.keys(changed).sort(), keys, 'a new setting needs a case here and a place in templateKey');
  for (const [field, over] of Object.entries(changed)) assert.notEqual(templateKey(settings(over)), templateKey(base), field);
  for (const capture of [
    { includeInboundPorts: [] as number[] },
    { excludeInboundPorts: [1] },
    { includeOutboundCidrs: [] as string[] },
    { excludeOutboundCidrs: ['10.0.0.0/8'] },
  ]) {
    assert.notEqual(templateKey(settings({ capture: { ...base.capture, ...capture } })), templateKey(base), JSON.stringify(capture));
  }
  assert.equal(templateKey(settings({ appProbes: { '/x': { tcpSocket: { port: 1 } } }, appContainers: ['a', 'b'] })), templateKey(base));
  const reordered = settings({ resources: { requests: { memory: '128Mi', cpu: '100m' }, limits: { memory: '1Gi', cpu: '2' } } });
  assert.notEqual(templateKey(reordered), templateKey(base));
  const rendered = renderSidecar(reordered);
  const ops = [{ op: 'add', path: '/spec/initContainers', value: [rendered.init, rendered.proxy] }];
  rememberValueJson(ops, rendered.texts);
  assert.equal(patchToJson(ops), JSON.stringify(ops));
});
