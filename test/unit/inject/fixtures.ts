// Pod shapes the injector must handle. Each is a plain JSON pod, as the API server sends it
// (or as a user writes it: some without the defaults the API server would add).
import type { V1Pod } from '@kubernetes/client-node';
import { DEFAULT_INJECTION_CONFIG, type InjectionConfig, type InjectionContext } from '../../../src/inject/index.ts';

export const config: InjectionConfig = { ...DEFAULT_INJECTION_CONFIG, resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } } };
export const native: InjectionContext = { config, nativeSidecarSupported: true };
export const classic: InjectionContext = { config, nativeSidecarSupported: false };

const app = (name = 'app', extra: Record<string, unknown> = {}) => ({ name, image: `example/${name}:1`, ...extra });

export const SHAPES: Record<string, V1Pod> = {
  minimal: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'minimal' }, spec: { containers: [app()] } },

  'no-metadata': { spec: { containers: [app()] } },

  'empty-maps': { metadata: { name: 'e', labels: {}, annotations: {} }, spec: { containers: [app()], initContainers: [], volumes: [] } },

  'generate-name-only': { metadata: { generateName: 'web-5d8f7c9b4-', namespace: '' }, spec: { containers: [app('web')] } },

  'multi-container-every-probe': {
    metadata: { name: 'probes', labels: { app: 'shop' } },
    spec: {
      containers: [
        app('web', {
          ports: [{ name: 'http', containerPort: 8080 }, { name: 'admin', containerPort: 9090 }],
          livenessProbe: { httpGet: { port: 'http', path: '/live' }, initialDelaySeconds: 5, periodSeconds: 7, timeoutSeconds: 2, failureThreshold: 5 },
          readinessProbe: { httpGet: { port: 9090, path: '/ready', scheme: 'HTTPS', host: 'localhost', httpHeaders: [{ name: 'X-Probe', value: 'kubelet' }] } },
          startupProbe: { tcpSocket: { port: 'admin' }, periodSeconds: 1, failureThreshold: 30 },
        }),
        app('grpc', {
          ports: [{ containerPort: 50051 }],
          livenessProbe: { grpc: { port: 50051 } },
          readinessProbe: { grpc: { port: 50051, service: 'health.v1' }, terminationGracePeriodSeconds: 3 },
        }),
        app('worker', {
          livenessProbe: { exec: { command: ['cat', '/tmp/healthy'] }, periodSeconds: 30 },
          readinessProbe: { tcpSocket: { port: 7000, host: '127.0.0.1' } },
        }),
      ],
    },
  },

  'existing-init-and-volumes': {
    metadata: { name: 'inits', labels: { app: 'db' }, annotations: { 'example.com/owner': 'team-a' } },
    spec: {
      initContainers: [app('migrate'), app('fetch-config', { volumeMounts: [{ name: 'config', mountPath: '/config' }] })],
      containers: [app('db', { volumeMounts: [{ name: 'data', mountPath: '/data' }] })],
      volumes: [{ name: 'data', emptyDir: {} }, { name: 'config', configMap: { name: 'db-config' } }],
    },
  },

  'user-native-sidecar': {
    metadata: { name: 'log-shipper' },
    spec: {
      initContainers: [app('shipper', { restartPolicy: 'Always', ports: [{ name: 'metrics', containerPort: 9100 }], readinessProbe: { httpGet: { port: 'metrics', path: '/health' } } })],
      containers: [app('app', { ports: [{ containerPort: 80 }], readinessProbe: { httpGet: { port: 80, path: '/' } } })],
    },
  },

  'non-root-pod': {
    metadata: { name: 'secure', labels: { 'cinch.dev/inject': 'enabled' } },
    spec: {
      securityContext: { runAsNonRoot: true, runAsUser: 1000, fsGroup: 2000 },
      containers: [app('app', { securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } })],
    },
  },

  'own-prometheus-scrape-false': {
    metadata: { name: 'p', annotations: { 'prometheus.io/scrape': 'false' } },
    spec: { containers: [app()] },
  },

  'own-prometheus-port': {
    metadata: { name: 'p', annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080' } },
    spec: { containers: [app()] },
  },

  'default-container-set': {
    metadata: { name: 'd', annotations: { 'kubectl.kubernetes.io/default-container': 'second' } },
    spec: { containers: [app('first'), app('second')] },
  },

  'traffic-annotations': {
    metadata: {
      name: 't',
      annotations: {
        'traffic.cinch.dev/include-inbound-ports': '8080, 9090',
        'traffic.cinch.dev/exclude-inbound-ports': '15020,22',
        'traffic.cinch.dev/exclude-outbound-ports': '5432,6379',
        'traffic.cinch.dev/include-outbound-cidrs': '10.0.0.0/8,fd00::/8',
        'traffic.cinch.dev/exclude-outbound-cidrs': '10.96.0.0/12,169.254.169.254',
      },
    },
    spec: { containers: [app()] },
  },

  'no-capture': {
    metadata: { name: 'n', annotations: { 'traffic.cinch.dev/include-inbound-ports': '', 'traffic.cinch.dev/include-outbound-cidrs': '' } },
    spec: { containers: [app()] },
  },

  'proxy-overrides': {
    metadata: {
      name: 'o',
      annotations: {
        'cinch.dev/proxy-image': 'registry.example.com/cinch:dev',
        'cinch.dev/proxy-cpu': '250m',
        'cinch.dev/proxy-memory': '256Mi',
        'cinch.dev/proxy-cpu-limit': '500m',
        'cinch.dev/proxy-memory-limit': '0.5Gi',
        'cinch.dev/log-level': 'debug',
      },
    },
    spec: { containers: [app()] },
  },

  'keys-with-slash-and-tilde': {
    metadata: {
      name: 'k',
      labels: { 'example.com/tier~1': 'a', 'a~b/c': 'x' },
      annotations: { 'example.com/path~/x': 'y', '~0~1': 'z' },
    },
    spec: { containers: [app()] },
  },

  'managed-fields': {
    metadata: {
      name: 'm',
      managedFields: Array.from({ length: 50 }, (_, i) => ({ manager: `m${i}`, operation: 'Update', apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { [`f:x${i}`]: {} } } })),
    },
    spec: { containers: [app()] },
  },

  'job-restart-never': {
    metadata: { name: 'job-abc', labels: { 'job-name': 'job' } },
    spec: { restartPolicy: 'Never', containers: [app('task')] },
  },

  'native-annotation-false': {
    metadata: { name: 'c', annotations: { 'cinch.dev/native-sidecar': 'false' } },
    spec: { containers: [app('app', { readinessProbe: { httpGet: { port: 80 } } })] },
  },

  'native-annotation-true': {
    metadata: { name: 'c', annotations: { 'cinch.dev/native-sidecar': 'true' } },
    spec: { initContainers: [app('init')], containers: [app()] },
  },

  'rewrite-probes-false': {
    metadata: { name: 'r', annotations: { 'cinch.dev/rewrite-probes': 'false' } },
    spec: { containers: [app('app', { livenessProbe: { httpGet: { port: 80, path: '/' } } })] },
  },

  'unresolvable-named-port': {
    metadata: { name: 'u' },
    spec: { containers: [app('app', { readinessProbe: { httpGet: { port: 'nope', path: '/' } }, livenessProbe: { tcpSocket: { port: 8080 } } })] },
  },

  'app-on-proxy-port': {
    metadata: { name: 'clash' },
    spec: { containers: [app('app', { ports: [{ containerPort: 15020 }] })] },
  },

  'defaulted-by-api-server': {
    metadata: { name: 'defaulted', namespace: 'shop', uid: '1234', creationTimestamp: '2026-01-01T00:00:00Z' as never },
    spec: {
      containers: [
        app('app', {
          imagePullPolicy: 'IfNotPresent',
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          resources: {},
          ports: [{ containerPort: 80, protocol: 'TCP' }],
          readinessProbe: { httpGet: { port: 80, path: '/', scheme: 'HTTP' }, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
        }),
      ],
      restartPolicy: 'Always',
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      volumes: [{ name: 'kube-api-access-abcde', projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }], defaultMode: 420 } }],
    },
  },
};
