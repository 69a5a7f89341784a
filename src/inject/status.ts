// cinch.dev/status: the record of what injection added, so that re-injection can first take
// exactly that away (restoring the app's probes and leaving the app's own annotations alone).
// Only Cinch's own names may appear in it: a status written by hand cannot make the injector
// delete a user's container, volume or annotation.
import type { V1Container, V1Probe, V1Volume } from '@kubernetes/client-node';
import { InjectionError } from './errors.ts';
import {
  CINCH_CONTAINER_NAMES,
  CINCH_VOLUME_NAMES,
  DEFAULT_CONTAINER_ANNOTATION,
  PROBE_KINDS,
  PROMETHEUS_PATH_ANNOTATION,
  PROMETHEUS_PORT_ANNOTATION,
  PROMETHEUS_SCRAPE_ANNOTATION,
  STATUS_ANNOTATION,
  TLS_MODE_LABEL,
  type ProbeKind,
} from './names.ts';
import type { OriginalProbes } from './probes.ts';

export interface InjectionStatus {
  version: 1;
  /** Names of the init containers added (cinch-init, and cinch-proxy when native). */
  initContainers: string[];
  /** Names of the regular containers added (cinch-proxy when not native). */
  containers: string[];
  volumes: string[];
  /** Annotation keys that were absent and were added (cinch.dev/status itself not included). */
  annotations: string[];
  labels: string[];
  /** Container name → the probes as they were before rewriting. */
  probes: Record<string, OriginalProbes>;
}

/** Annotations and labels injection may add, hence the only ones a status may ask to remove. */
export const ADDABLE_ANNOTATIONS: ReadonlySet<string> = new Set([
  DEFAULT_CONTAINER_ANNOTATION,
  PROMETHEUS_SCRAPE_ANNOTATION,
  PROMETHEUS_PORT_ANNOTATION,
  PROMETHEUS_PATH_ANNOTATION,
]);
export const ADDABLE_LABELS: ReadonlySet<string> = new Set([TLS_MODE_LABEL]);

export function parseStatus(text: string): InjectionStatus {
  const invalid = (why: string): InjectionError => new InjectionError('invalid_status', `annotation ${STATUS_ANNOTATION} ${why}; remove it to re-inject from scratch`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw invalid('is not valid JSON');
  }
  if (!isRecord(raw)) throw invalid('is not a JSON object');
  const names = (key: string, allowed: ReadonlySet<string>): string[] => {
    const value = raw[key] ?? [];
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw invalid(`field ${key} is not a list of strings`);
    const foreign = value.find((v) => !allowed.has(v));
    if (foreign !== undefined) throw invalid(`lists ${JSON.stringify(foreign)} in ${key}, which injection never adds`);
    return value;
  };
  const probes = raw.probes ?? {};
  if (!isRecord(probes)) throw invalid('field probes is not an object');
  for (const [container, kinds] of Object.entries(probes)) {
    if (!isRecord(kinds) || !Object.entries(kinds).every(([kind, probe]) => (PROBE_KINDS as readonly string[]).includes(kind) && isRecord(probe))) {
      throw invalid(`field probes.${container} is not a map of probe kinds to probes`);
    }
  }
  return {
    version: 1,
    initContainers: names('initContainers', CINCH_CONTAINER_NAMES),
    containers: names('containers', CINCH_CONTAINER_NAMES),
    volumes: names('volumes', CINCH_VOLUME_NAMES),
    annotations: names('annotations', ADDABLE_ANNOTATIONS),
    labels: names('labels', ADDABLE_LABELS),
    probes: probes as Record<string, OriginalProbes>,
  };
}

/** Field order is fixed so the same injection always yields the same annotation string. */
export function formatStatus(status: InjectionStatus): string {
  const { version, initContainers, containers, volumes, annotations, labels, probes } = status;
  return JSON.stringify({ version, initContainers, containers, volumes, annotations, labels, probes });
}

export interface PodParts {
  annotations: Record<string, string> | undefined;
  labels: Record<string, string> | undefined;
  initContainers: V1Container[] | undefined;
  containers: V1Container[];
  volumes: V1Volume[] | undefined;
}

/** The pod as it was before the injection that `status` describes. Copies only what changes. */
export function stripInjection(parts: PodParts, status: InjectionStatus): PodParts {
  const without = <T extends { name: string }>(list: T[] | undefined, names: string[]): T[] | undefined =>
    list && names.length > 0 ? list.filter((item) => !names.includes(item.name)) : list;
  const restore = (list: V1Container[] | undefined): V1Container[] | undefined =>
    list?.map((container) => {
      const originals = Object.hasOwn(status.probes, container.name) ? status.probes[container.name] : undefined;
      if (!originals) return container;
      const restored: V1Container = { ...container };
      for (const [kind, probe] of Object.entries(originals) as [ProbeKind, V1Probe][]) restored[kind] = probe;
      return restored;
    });
  const annotations = { ...parts.annotations };
  delete annotations[STATUS_ANNOTATION];
  for (const key of status.annotations) delete annotations[key];
  let labels = parts.labels;
  if (labels && status.labels.length > 0) {
    labels = { ...labels };
    for (const key of status.labels) delete labels[key];
  }
  // A proxy may sit in either list whatever the status says (a later webhook could have moved it): strip both names from both lists.
  const added = [...status.initContainers, ...status.containers];
  return {
    annotations,
    labels,
    initContainers: restore(without(parts.initContainers, added)),
    containers: restore(without(parts.containers, added)) ?? [],
    volumes: without(parts.volumes, status.volumes),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
