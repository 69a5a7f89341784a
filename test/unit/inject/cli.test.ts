// `cinch inject` as users run it: a child process on the pinned Node, files and stdin.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { parseAllDocuments } from 'yaml';

const root = path.resolve(import.meta.dirname, '../../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cinch-inject-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cinch(args: string[], input?: string) {
  return spawnSync(process.execPath, [path.join(root, 'bin/cinch.js'), 'inject', ...args], { encoding: 'utf8', input });
}
function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, text);
  return p;
}
type Doc = Record<string, any>;
const docs = (yaml: string): Doc[] => parseAllDocuments(yaml, { version: '1.1' }).map((d) => d.toJS() as Doc);
const containerNames = (spec: Doc): string[] => ((spec.containers ?? []) as Doc[]).map((c) => c.name as string);
const initNames = (spec: Doc): string[] => ((spec.initContainers ?? []) as Doc[]).map((c) => c.name as string);

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{name: http, containerPort: 80}]
        readinessProbe: {httpGet: {port: http, path: /}}
`;

const MANY = `# the service stays as it is, comment included
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
---
${DEPLOYMENT}---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: job, image: busybox}]
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    serviceName: db
    selector: {matchLabels: {app: db}}
    template:
      metadata: {labels: {app: db}}
      spec: {containers: [{name: db, image: postgres}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c}
  data: {a: "yes"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      hostNetwork: true
      containers: [{name: agent, image: agent}]
---
apiVersion: v1
kind: Pod
metadata:
  name: opted-out
  labels: {cinch.dev/inject: disabled}
spec:
  containers: [{name: app, image: app}]
---
`;

test('multi-document file: workloads injected, other kinds and skipped pods unchanged, warnings on stderr', () => {
  const res = cinch(['-f', file('many.yaml', MANY)]);
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stdout, /^# the service stays as it is, comment included\napiVersion: v1\nkind: Service/);
  const out = docs(res.stdout);
  assert.deepEqual(out.map((d) => d.kind as string), ['Service', 'Deployment', 'CronJob', 'List', 'DaemonSet', 'Pod']);

  const deployment = out[1].spec.template;
  assert.deepEqual(containerNames(deployment.spec), ['cinch-proxy', 'web'], 'offline default is classic');
  assert.deepEqual(initNames(deployment.spec), ['cinch-init']);
  assert.equal(deployment.spec.containers[1].readinessProbe.httpGet.path, '/app-health/web/readyz');
  assert.equal(deployment.metadata.annotations['prometheus.io/port'], '15020', 'annotation values stay strings');
  assert.ok(deployment.metadata.annotations['cinch.dev/status']);
  assert.deepEqual(out[1].spec.selector, { matchLabels: { app: 'web' } });

  assert.deepEqual(containerNames(out[2].spec.jobTemplate.spec.template.spec), ['cinch-proxy', 'job']);
  assert.deepEqual(containerNames(out[3].items[0].spec.template.spec), ['cinch-proxy', 'db']);
  assert.deepEqual(out[3].items[1], { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'yes' } });
  assert.deepEqual(containerNames(out[4].spec.template.spec), ['agent'], 'hostNetwork left alone');
  assert.deepEqual(containerNames(out[5].spec), ['app'], 'opt-out left alone');

  assert.match(res.stderr, /document 3: CronJob\/nightly: restartPolicy OnFailure/);
  assert.match(res.stderr, /document 5: DaemonSet\/node-agent: not injected: the pod uses hostNetwork/);
  assert.match(res.stderr, /document 6: Pod\/opted-out: not injected: the pod has the label cinch.dev\/inject=disabled/);
});

test('output is re-injectable without change (idempotent) and separated by ---', () => {
  const first = cinch(['-f', file('many2.yaml', MANY)]);
  assert.equal(first.status, 0, first.stderr);
  assert.equal((first.stdout.match(/^---$/gm) ?? []).length, 5);
  const second = cinch(['-f', '-'], first.stdout);
  assert.equal(second.status, 0, second.stderr);
  assert.deepEqual(docs(second.stdout), docs(first.stdout));
});

test('stdin with --native-sidecar true', () => {
  const res = cinch(['-f', '-', '--native-sidecar', 'true'], DEPLOYMENT);
  assert.equal(res.status, 0, res.stderr);
  const [deployment] = docs(res.stdout);
  assert.deepEqual(initNames(deployment.spec.template.spec), ['cinch-init', 'cinch-proxy']);
  assert.equal(deployment.spec.template.spec.initContainers[1].restartPolicy, 'Always');
  assert.deepEqual(containerNames(deployment.spec.template.spec), ['web']);
});

test('--native-sidecar accepts only true or false', () => {
  const res = cinch(['-f', '-', '--native-sidecar', 'yes'], DEPLOYMENT);
  assert.notEqual(res.status, 0);
  assert.match(res.stderr, /expected true or false/);
});

test('--config reads the injection ConfigMap', () => {
  const config = file(
    'config.yaml',
    `apiVersion: v1
kind: ConfigMap
metadata: {name: cinch-injection, namespace: cinch-system}
data:
  config.yaml: |
    proxyImage: registry.example.com/cinch:9
    nativeSidecar: true
    trustDomain: example.org
`,
  );
  const res = cinch(['-f', '-', '--config', config], DEPLOYMENT);
  assert.equal(res.status, 0, res.stderr);
  const spec = docs(res.stdout)[0].spec.template.spec;
  const proxy = spec.initContainers.find((c: Doc) => c.name === 'cinch-proxy');
  assert.equal(proxy.image, 'registry.example.com/cinch:9');
  assert.equal(proxy.env.find((e: Doc) => e.name === 'CINCH_TRUST_DOMAIN').value, 'example.org');
  // The flag wins over the config.
  const classic = cinch(['-f', '-', '--config', config, '--native-sidecar', 'false'], DEPLOYMENT);
  assert.deepEqual(containerNames(docs(classic.stdout)[0].spec.template.spec), ['cinch-proxy', 'web']);
});

test('an invalid config exits 1 naming the file and field', () => {
  const res = cinch(['-f', '-', '--config', file('bad-config.yaml', 'tokenExpirationSeconds: 60\n')], DEPLOYMENT);
  assert.equal(res.status, 1);
  assert.match(res.stderr, /bad-config\.yaml: injection config: tokenExpirationSeconds: must be at least 600/);
});

test('invalid YAML exits 1 with the document number, and prints nothing', () => {
  const res = cinch(['-f', '-'], `${DEPLOYMENT}---\nkind: Pod\nmetadata: {name: [\n`);
  assert.equal(res.status, 1);
  assert.match(res.stderr, /^document 2: invalid YAML: /);
  assert.equal(res.stdout, '');
});

test('an invalid annotation exits 1 naming the document, the object, the annotation and the value', () => {
  const pod = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {traffic.cinch.dev/exclude-outbound-ports: "http"}\nspec:\n  containers: [{name: a, image: a}]\n`;
  const res = cinch(['-f', '-'], `${DEPLOYMENT}---\n${pod}`);
  assert.equal(res.status, 1);
  assert.match(res.stderr, /^document 2: Pod\/p: invalid annotation traffic.cinch.dev\/exclude-outbound-ports="http": "http" is not a port number/);
});

test('a missing file exits 1 with a message', () => {
  const res = cinch(['-f', path.join(tmp, 'nope.yaml')]);
  assert.equal(res.status, 1);
  assert.match(res.stderr, /cannot read .*nope\.yaml/);
});

test('strings YAML 1.1 would read as booleans stay strings for kubectl', () => {
  const pod = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {note: "on"}\nspec:\n  containers: [{name: a, image: a, args: ["yes", "no"]}]\n`;
  const res = cinch(['-f', '-'], pod);
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stdout, /note: "on"/);
  assert.match(res.stdout, /- "yes"\n\s+- "no"/);
});

test('empty input gives empty output', () => {
  const res = cinch(['-f', '-'], '');
  assert.equal(res.status, 0, res.stderr);
  assert.equal(res.stdout, '');
});
