// Per-pod override annotations: validated before anything is rendered, so a bad value refuses the
// pod with a message naming the annotation and the value instead of producing a broken sidecar.
import { InjectionError } from './errors.ts';
import { ANNOTATION, STATUS_ANNOTATION } from './names.ts';
import {
  parseBooleanString,
  parseCidrList,
  parseCidrListOrAll,
  parseImage,
  parseLogLevel,
  parsePortList,
  parsePortListOrAll,
  parseQuantity,
  type LogLevel,
  type Parsed,
} from './values.ts';

export interface PodOverrides {
  proxyImage?: string;
  proxyCpu?: string;
  proxyMemory?: string;
  proxyCpuLimit?: string;
  proxyMemoryLimit?: string;
  logLevel?: LogLevel;
  nativeSidecar?: boolean;
  rewriteProbes?: boolean;
  includeInboundPorts?: number[] | '*';
  excludeInboundPorts?: number[];
  excludeOutboundPorts?: number[];
  includeOutboundCidrs?: string[] | '*';
  excludeOutboundCidrs?: string[];
}

type Parser = (text: string) => Parsed<unknown>;
// Validated as a quantity, kept as written: the API server canonicalises it, not us.
const quantity: Parser = (text) => {
  const parsed = parseQuantity(text);
  return parsed.ok ? { ok: true, value: text } : parsed;
};

// Which override each annotation sets, and how its value is read.
const PARSERS: Record<keyof PodOverrides, Parser> = {
  proxyImage: parseImage,
  proxyCpu: quantity,
  proxyMemory: quantity,
  proxyCpuLimit: quantity,
  proxyMemoryLimit: quantity,
  logLevel: parseLogLevel,
  nativeSidecar: parseBooleanString,
  rewriteProbes: parseBooleanString,
  includeInboundPorts: parsePortListOrAll,
  excludeInboundPorts: parsePortList,
  excludeOutboundPorts: parsePortList,
  includeOutboundCidrs: parseCidrListOrAll,
  // `*` here would exclude everything, which is "no outbound capture": say that with include-outbound-cidrs="".
  excludeOutboundCidrs: parseCidrList,
};
const OVERRIDE_KEYS = Object.keys(PARSERS) as (keyof PodOverrides)[];
const KNOWN_ANNOTATIONS: ReadonlySet<string> = new Set([...Object.values(ANNOTATION), STATUS_ANNOTATION]);

/** The message for an invalid annotation value; the value is quoted as JSON so spaces and quotes stay visible. */
export function invalidAnnotation(annotation: string, value: string, reason: string): InjectionError {
  const shown = value.length > 200 ? `${value.slice(0, 200)}…` : value;
  return new InjectionError('invalid_annotation', `invalid annotation ${annotation}=${JSON.stringify(shown)}: ${reason}`, annotation);
}

/** Validate every Cinch override annotation; throws InjectionError('invalid_annotation') on the first bad one. */
export function parseOverrides(annotations: Readonly<Record<string, string>> | undefined): PodOverrides {
  const overrides: PodOverrides = {};
  if (!annotations) return overrides;
  for (const key of OVERRIDE_KEYS) {
    const annotation = ANNOTATION[key];
    const value = annotations[annotation];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw invalidAnnotation(annotation, String(value), 'annotation values must be strings');
    const parsed = PARSERS[key](value);
    if (!parsed.ok) throw invalidAnnotation(annotation, value, parsed.reason);
    (overrides as Record<string, unknown>)[key] = parsed.value;
  }
  return overrides;
}

/** Annotations in Cinch's prefixes that no code reads: almost always a typo worth a warning. */
export function unknownCinchAnnotations(annotations: Readonly<Record<string, string>> | undefined): string[] {
  if (!annotations) return [];
  return Object.keys(annotations).filter((key) => (key.startsWith('cinch.dev/') || key.startsWith('traffic.cinch.dev/')) && !KNOWN_ANNOTATIONS.has(key));
}
