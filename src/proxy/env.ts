// The proxy's settings, from the environment the injector writes (src/inject/names.ts PROXY_ENV).
// Pure: a missing or malformed variable is an error that names it, so a broken injection is obvious.
import { PROXY_ENV, TOKEN_FILE, CA_ROOT_FILE } from '../inject/names.ts';
import { formatWorkloadId } from '../identity/spiffe.ts';
import type { AppProbes } from '../inject/probes.ts';

export interface ProxySettings {
  podName: string;
  namespace: string;
  podIp?: string;
  serviceAccount: string;
  spiffeId: string;
  trustDomain: string;
  /** host:port of the control plane's CA and config server. */
  caAddress: string;
  tokenFile: string;
  caRootFile: string;
  /** Certificate lifetime to ask for; the CA's default when absent. */
  certTtlSeconds?: number;
  appProbes: AppProbes;
  logLevel?: string;
}

export class ProxyEnvError extends Error {}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name]?.trim();
  if (!value) throw new ProxyEnvError(`environment variable ${name} is not set (the injector sets it; running by hand, export it)`);
  return value;
}

export function parseProxyEnv(env: NodeJS.ProcessEnv): ProxySettings {
  const namespace = required(env, PROXY_ENV.podNamespace);
  const serviceAccount = required(env, PROXY_ENV.serviceAccount);
  const trustDomain = env[PROXY_ENV.trustDomain]?.trim() || 'cluster.local';
  const caAddress = required(env, PROXY_ENV.caAddress);
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(caAddress)) throw new ProxyEnvError(`${PROXY_ENV.caAddress}="${caAddress}" is not host:port`);
  let appProbes: AppProbes = {};
  const probesText = env[PROXY_ENV.appProbes]?.trim();
  if (probesText) {
    try {
      appProbes = JSON.parse(probesText) as AppProbes;
    } catch (err) {
      throw new ProxyEnvError(`${PROXY_ENV.appProbes} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof appProbes !== 'object' || appProbes === null || Array.isArray(appProbes)) throw new ProxyEnvError(`${PROXY_ENV.appProbes} must be a JSON object`);
  }
  let certTtlSeconds: number | undefined;
  if (env.CINCH_CERT_TTL_SECONDS) {
    certTtlSeconds = Number(env.CINCH_CERT_TTL_SECONDS);
    if (!Number.isSafeInteger(certTtlSeconds) || certTtlSeconds < 1) throw new ProxyEnvError(`CINCH_CERT_TTL_SECONDS="${env.CINCH_CERT_TTL_SECONDS}" is not a positive whole number`);
  }
  let spiffeId: string;
  try {
    spiffeId = formatWorkloadId({ trustDomain, namespace, serviceAccount });
  } catch (err) {
    throw new ProxyEnvError(`cannot form the workload identity: ${(err as Error).message}`);
  }
  return {
    podName: required(env, PROXY_ENV.podName),
    namespace,
    podIp: env[PROXY_ENV.instanceIp]?.trim() || undefined,
    serviceAccount,
    spiffeId,
    trustDomain,
    caAddress,
    // Overridable for running outside a pod (tests, local demos); the injected mounts otherwise.
    tokenFile: env.CINCH_TOKEN_FILE?.trim() || TOKEN_FILE,
    caRootFile: env.CINCH_CA_ROOT_FILE?.trim() || CA_ROOT_FILE,
    certTtlSeconds,
    appProbes,
    logLevel: env[PROXY_ENV.logLevel]?.trim() || undefined,
  };
}


