import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProxyEnv, ProxyEnvError } from '../../../src/proxy/env.ts';

const env = {
  POD_NAME: 'web-1',
  POD_NAMESPACE: 'shop',
  INSTANCE_IP: '10.1.2.3',
  SERVICE_ACCOUNT: 'web',
  CINCH_CA_ADDRESS: 'cinch.cinch-system.svc:15012',
  CINCH_TRUST_DOMAIN: 'example.org',
  CINCH_APP_PROBES: '{"/app-health/web/readyz":{"httpGet":{"port":8080,"path":"/ready","scheme":"HTTP"}}}',
};

test('the injected environment gives the identity, the CA address and the probes', () => {
  const s = parseProxyEnv(env);
  assert.equal(s.spiffeId, 'spiffe://example.org/ns/shop/sa/web');
  assert.equal(s.caAddress, 'cinch.cinch-system.svc:15012');
  assert.equal(s.podIp, '10.1.2.3');
  assert.equal(s.tokenFile, '/var/run/cinch/token/token');
  assert.equal(s.caRootFile, '/var/run/cinch/ca-root/root-cert.pem');
  assert.deepEqual(Object.keys(s.appProbes), ['/app-health/web/readyz']);
});

test('file locations and certificate TTL can be overridden outside a pod', () => {
  const s = parseProxyEnv({ ...env, CINCH_TOKEN_FILE: '/tmp/t', CINCH_CA_ROOT_FILE: '/tmp/r.pem', CINCH_CERT_TTL_SECONDS: '30' });
  assert.equal(s.tokenFile, '/tmp/t');
  assert.equal(s.caRootFile, '/tmp/r.pem');
  assert.equal(s.certTtlSeconds, 30);
});

test('each missing or malformed variable is named', () => {
  const cases: [Record<string, string | undefined>, RegExp][] = [
    [{ POD_NAMESPACE: undefined }, /POD_NAMESPACE is not set/],
    [{ SERVICE_ACCOUNT: '' }, /SERVICE_ACCOUNT is not set/],
    [{ CINCH_CA_ADDRESS: 'no-port' }, /CINCH_CA_ADDRESS="no-port" is not host:port/],
    [{ CINCH_APP_PROBES: '{nope' }, /CINCH_APP_PROBES is not valid JSON/],
    [{ CINCH_APP_PROBES: '[]' }, /CINCH_APP_PROBES must be a JSON object/],
    [{ CINCH_CERT_TTL_SECONDS: '-5' }, /CINCH_CERT_TTL_SECONDS="-5"/],
    [{ SERVICE_ACCOUNT: 'Bad_Name' }, /cannot form the workload identity: service account "Bad_Name"/],
  ];
  for (const [patch, message] of cases) {
    assert.throws(() => parseProxyEnv({ ...env, ...patch }), (err: unknown) => err instanceof ProxyEnvError && message.test(err.message), String(message));
  }
});
