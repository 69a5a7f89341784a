// Reloads the CA when Secret cinch-ca changes (root rotation, a plugged-in intermediate replaced):
// the control plane calls back with the new material and keeps serving the old one if the new one
// fails a consistency check, saying which, so a bad edit never takes signing down.
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { CaMaterialError } from '../ca/errors.ts';
import { CA_FILE_NAMES, loadCaMaterial, type CaMaterial } from '../ca/material.ts';
import { runInformer } from '../kube/informer.ts';
import type { Logger } from '../telemetry/logger.ts';
import { CA_SECRET, decodeSecretData, type CaSource } from './ca-store.ts';

export interface CaWatchOptions {
  namespace: string;
  name?: string;
  /** The material loaded at start; an event with the same files is not a change. */
  current?: CaMaterial;
  logger: Logger;
  onChange: (source: CaSource) => void;
  /** The Secret changed but its material fails a check: the old material stays in use. */
  onInvalid?: (err: CaMaterialError) => void;
}

export interface CaWatch {
  /** Resolves once the Secret has been read for the first time. */
  readonly synced: Promise<void>;
  stop(): Promise<void>;
}

function sameFiles(a: Readonly<Record<string, string | undefined>>, b: Readonly<Record<string, string | undefined>>): boolean {
  return CA_FILE_NAMES.every((name) => a[name] === b[name]);
}

export function watchCaSecret(kc: KubeConfig, opts: CaWatchOptions): CaWatch {
  const name = opts.name ?? CA_SECRET;
  const origin = `secret ${opts.namespace}/${name}`;
  const core = kc.makeApiClient(CoreV1Api);
  const log = opts.logger;
  let current = opts.current;

  const changed = (secret: V1Secret) => {
    const data = decodeSecretData(secret);
    if (current && sameFiles(current.files, data)) return;
    try {
      const material = loadCaMaterial(data);
      current = material;
      log.info('CA material reloaded', {
        origin,
        resourceVersion: secret.metadata?.resourceVersion,
        signingCert: material.signingCert.subject.replace(/\n/g, ', '),
        signingCertNotAfter: material.signingCertNotAfter.toISOString(),
        roots: material.trustBundle.length,
      });
      opts.onChange({ material, origin, resourceVersion: secret.metadata?.resourceVersion });
    } catch (err) {
      if (!(err instanceof CaMaterialError)) throw err;
      log.error('Secret changed but its CA material is refused; still using the previous material', { origin, check: err.check, error: err.message });
      opts.onInvalid?.(err);
    }
  };
  // RBAC grants list/watch on this one Secret by name, which the API server allows only with this field
  // selector. runInformer takes no field selector, so it rides in the watch path's query string.
  const fieldSelector = `metadata.name=${name}`;
  const informer = runInformer<V1Secret>(
    kc,
    `/api/v1/namespaces/${opts.namespace}/secrets?fieldSelector=${encodeURIComponent(fieldSelector)}`,
    () => core.listNamespacedSecret({ namespace: opts.namespace, fieldSelector }),
    {
      add: changed,
      update: changed,
      delete: () => log.warn('Secret deleted; still using the CA material in memory (a restart would create a new root)', { origin }),
    },
    log,
  );
  return { synced: informer.synced, stop: () => informer.stop() };
}
