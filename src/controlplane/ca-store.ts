// Where the CA's material lives: Secret cinch-ca in the control-plane namespace (created on first
// start, race-safely: of several replicas creating it at once the API server lets one win, and the
// others read the winner's), or a plugged-in cacerts folder (certs/ locally, a mounted Secret).
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { createRootCa } from '../ca/create.ts';
import { readCaDir } from '../ca/files.ts';
import { loadCaMaterial, toSecretData, type CaMaterial } from '../ca/material.ts';
import type { Logger } from '../telemetry/logger.ts';

export const CA_SECRET = 'cinch-ca';

function decode(secret: V1Secret): Record<string, string> {
  return Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

function code(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

export interface CaSource {
  material: CaMaterial;
  /** "secret cinch-system/cinch-ca@<resourceVersion>", "dir certs/"… for logs. */
  origin: string;
  resourceVersion?: string;
}

/** Reads Secret cinch-ca, creating a fresh self-signed root when it does not exist. Refuses inconsistent material. */
export async function loadOrCreateCaSecret(kc: KubeConfig, namespace: string, trustDomain: string, logger: Logger): Promise<CaSource> {
  const core = kc.makeApiClient(CoreV1Api);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const secret = await core.readNamespacedSecret({ name: CA_SECRET, namespace });
      return { material: loadCaMaterial(decode(secret)), origin: `secret ${namespace}/${CA_SECRET}`, resourceVersion: secret.metadata?.resourceVersion };
    } catch (err) {
      if (code(err) !== 404) throw err;
    }
    // A mesh that already distributed a bundle lost its CA Secret: a fresh root would silently break
    // every workload's trust. Refuse, and say how to recover.
    // (The bundle is distributed to the control plane's own namespace too, so looking there suffices.)
    const distributed = await core.listNamespacedConfigMap({ namespace, labelSelector: 'cinch.dev/trust-bundle=true', limit: 1 });
    if (distributed.items.length > 0) {
      throw new Error(
        `Secret ${namespace}/${CA_SECRET} is missing, but this mesh already has a trust bundle (${namespace}/${distributed.items[0].metadata?.name}): the CA was deleted. ` +
          `Restore the Secret from a backup (or plug in an intermediate of the same root); to start a new mesh on purpose, ` +
          `delete the ConfigMaps labelled cinch.dev/trust-bundle=true first.`,
      );
    }
    const created = await createRootCa({ trustDomain });
    try {
      const secret = await core.createNamespacedSecret({
        namespace,
        body: {
          metadata: { name: CA_SECRET, namespace, labels: { 'app.kubernetes.io/part-of': 'cinch' } },
          type: 'cinch.dev/ca',
          stringData: toSecretData(created.files),
        },
      });
      logger.info('created a self-signed root CA', { secret: `${namespace}/${CA_SECRET}`, trustDomain });
      return { material: loadCaMaterial(created.files), origin: `secret ${namespace}/${CA_SECRET}`, resourceVersion: secret.metadata?.resourceVersion };
    } catch (err) {
      if (code(err) !== 409) throw err;
      logger.info('another replica created the CA first; using theirs', { secret: `${namespace}/${CA_SECRET}` });
    }
  }
  throw new Error(`could not read or create Secret ${namespace}/${CA_SECRET}`);
}

/** A plugged-in cacerts folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem). */
export function loadCaDir(dir: string): CaSource {
  return { material: loadCaMaterial(readCaDir(dir)), origin: `dir ${dir}` };
}

export { decode as decodeSecretData };
