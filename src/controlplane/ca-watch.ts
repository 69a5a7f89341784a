// Reloads the CA when Secret cinch-ca changes (root rotation, a plugged-in intermediate replaced), or
// the files of a plugged-in cacerts folder (--ca-dir: certs/ locally, a mounted Secret in a pod): the
// control plane calls back with the new material and keeps serving the old one if the new one fails a
// consistency check, saying which, so a bad edit never takes signing down.
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { CaMaterialError } from '../ca/errors.ts';
import { readCaDir } from '../ca/files.ts';
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

/** Takes each new set of CA files: a consistent one becomes current (onChange), an inconsistent one is refused and said why. */
function followCaFiles(opts: Pick<CaWatchOptions, 'current' | 'logger' | 'onChange' | 'onInvalid'>, origin: string): (files: Record<string, string | undefined>, resourceVersion?: string) => void {
  let current = opts.current;
  // The last set refused: a folder polled every few seconds would otherwise refuse (and log) the same set forever.
  let refused: Record<string, string | undefined> | undefined;
  return (files, resourceVersion) => {
    if (current && sameFiles(current.files, files)) return;
    if (refused && sameFiles(refused, files)) return;
    try {
      const material = loadCaMaterial(files);
      current = material;
      refused = undefined;
      opts.logger.info('CA material reloaded', {
        origin,
        resourceVersion,
        signingCert: material.signingCert.subject.replace(/\n/g, ', '),
        signingCertNotAfter: material.signingCertNotAfter.toISOString(),
        roots: material.trustBundle.length,
      });
      opts.onChange({ material, origin, resourceVersion });
    } catch (err) {
      if (!(err instanceof CaMaterialError)) throw err;
      refused = files;
      opts.logger.error('CA material changed but is refused; still using the previous material', { origin, check: err.check, error: err.message });
      opts.onInvalid?.(err);
    }
  };
}

export function watchCaSecret(kc: KubeConfig, opts: CaWatchOptions): CaWatch {
  const name = opts.name ?? CA_SECRET;
  const origin = `secret ${opts.namespace}/${name}`;
  const core = kc.makeApiClient(CoreV1Api);
  const log = opts.logger;
  const follow = followCaFiles(opts, origin);
  const changed = (secret: V1Secret) => follow(decodeSecretData(secret), secret.metadata?.resourceVersion);
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

export interface CaDirWatchOptions extends Omit<CaWatchOptions, 'namespace' | 'name'> {
  /** How often the files are read again; default 10 s (the kubelet refreshes a mounted Secret within about a minute). */
  intervalMs?: number;
}

/**
 * Follows a cacerts folder by reading it again every few seconds: simpler and surer than file events
 * across the kubelet's symlink swap of a mounted Secret, and the files are a few KiB. Files are read one
 * by one, so a folder edited in place should be updated by writing new files and renaming them over the old.
 */
export function watchCaDir(dir: string, opts: CaDirWatchOptions): CaWatch {
  const origin = `dir ${dir}`;
  const follow = followCaFiles(opts, origin);
  const poll = (): void => {
    let files: Record<string, string | undefined>;
    try {
      files = readCaDir(dir);
    } catch (err) {
      opts.logger.warn('could not read the CA folder; still using the material in memory', { origin, error: (err as Error).message });
      return;
    }
    try {
      follow(files);
    } catch (err) {
      // Not a refusal (those are logged by follow): an unexpected failure must not end the process from a timer.
      opts.logger.error('could not apply the CA folder; still using the material in memory', { origin, err });
    }
  };
  const timer = setInterval(poll, opts.intervalMs ?? 10_000);
  timer.unref();
  return {
    synced: Promise.resolve(),
    stop: async () => clearInterval(timer),
  };
}
