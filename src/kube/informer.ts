// client-node's informer stops for good on any watch error other than 410; this keeps it running
// (restart with capped backoff) and tells when the first list has landed.
import { makeInformer, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../telemetry/logger.ts';

export interface InformerHandlers<T> {
  add?: (obj: T) => void;
  update?: (obj: T) => void;
  delete?: (obj: T) => void;
}

export interface RunningInformer<T extends KubernetesObject> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): ReadonlyArray<T>;
  /** Resolves once the first list is in the cache. */
  synced: Promise<void>;
  stop(): Promise<void>;
}

export function runInformer<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  listFn: () => Promise<KubernetesListObject<T>>,
  handlers: InformerHandlers<T>,
  logger: Logger,
  labelSelector?: string,
): RunningInformer<T> {
  const informer = makeInformer<T>(kc, path, listFn, labelSelector);
  if (handlers.add) informer.on('add', handlers.add);
  if (handlers.update) informer.on('update', handlers.update);
  if (handlers.delete) informer.on('delete', handlers.delete);
  let stopped = false;
  let delay = 1000;
  let restartTimer: NodeJS.Timeout | undefined;
  let markSynced!: () => void;
  const synced = new Promise<void>((resolve) => (markSynced = resolve));

  // client-node's start() resolves after a failed list too (it reports the failure on 'error'): only an
  // attempt without an error has filled the cache. Counting a failed list as synced would make a missing
  // CRD or a refused list look like "no objects", and no AuthorizationPolicies means allow everything.
  let attemptFailed = false;
  const start = () => {
    attemptFailed = false;
    informer.start().then(
      () => {
        if (attemptFailed || stopped) return;
        delay = 1000;
        markSynced();
      },
      () => undefined, // the 'error' listener below restarts it
    );
  };
  informer.on('error', (err: unknown) => {
    attemptFailed = true;
    if (stopped) return;
    const status = (err as { code?: unknown }).code;
    if (typeof status === 'number') {
      // The API server answered: its status says why, without client-node's long message and stack.
      const message = status === 404 ? 'the API server does not serve this resource (is its CRD installed?); retrying' : 'the API server refused the list or watch; retrying';
      const body = (err as { body?: unknown }).body;
      logger.warn(message, { path, status, body: (typeof body === 'string' ? body : JSON.stringify(body ?? '')).slice(0, 300), retryInMs: delay });
    } else logger.warn('watch failed; restarting', { path, retryInMs: delay, err: err instanceof Error ? err : String(err) });
    clearTimeout(restartTimer);
    restartTimer = setTimeout(start, delay);
    delay = Math.min(delay * 2, 30_000);
  });
  start();
  return {
    get: (name, namespace) => informer.get(name, namespace),
    list: (namespace) => informer.list(namespace),
    synced,
    stop: async () => {
      stopped = true;
      clearTimeout(restartTimer);
      await informer.stop();
    },
  };
}
