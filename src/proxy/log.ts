// The proxy's logger: the JSON lines src/telemetry/logger.ts writes (winston's json(): keys sorted,
// an ISO timestamp, every field but level and timestamp redacted, on stderr), without loading winston,
// which is ~6 MiB of a sidecar's RSS. The proxy's classes take any ProxyLogger, a winston Logger too
// (the tests pass one).
import { parseLogLevel, type LogLevel } from '../telemetry/log-level.ts';
import { redact, redactString } from '../telemetry/redact.ts';

export type LogMeta = object;

export interface ProxyLogger {
  error(message: string, meta?: LogMeta): unknown;
  warn(message: string, meta?: LogMeta): unknown;
  info(message: string, meta?: LogMeta): unknown;
  debug(message: string, meta?: LogMeta): unknown;
  child(context: Record<string, unknown>): ProxyLogger;
}

// npm levels' numbers, as winston's; `cinch.dev/log-level` takes error, warn, info or debug.
const LEVELS: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 5 };

export interface ProxyLoggerOptions {
  level?: string;
  context?: Record<string, unknown>;
  /** Where lines go; stderr by default. */
  write?: (line: string) => void;
}

export function createProxyLogger(options: ProxyLoggerOptions = {}): ProxyLogger {
  const max = LEVELS[parseLogLevel(options.level ?? process.env.CINCH_LOG_LEVEL)];
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  return make(max, write, options.context ?? {});
}

function make(max: number, write: (line: string) => void, context: Record<string, unknown>): ProxyLogger {
  const at =
    (level: LogLevel) =>
    (message: string, meta?: LogMeta): void => {
      if (LEVELS[level] > max) return;
      // As winston: the call's fields over the child's context, then level and message.
      const record: Record<string, unknown> = { ...context, ...(meta as Record<string, unknown> | undefined) };
      for (const key of Object.keys(record)) record[key] = redact(record[key]);
      record.level = level;
      record.message = redactString(String(message));
      record.timestamp = new Date().toISOString();
      write(`${stableStringify(record)}\n`);
    };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (more) => make(max, write, { ...context, ...more }),
  };
}

/** JSON with object keys sorted at every depth (what winston's json() format writes); undefined fields left out. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'bigint') return JSON.stringify(value.toString());
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined || typeof v === 'function' ? 'null' : stableStringify(v))).join(',')}]`;
  const toJSON = (value as { toJSON?: () => unknown }).toJSON;
  if (typeof toJSON === 'function') return stableStringify(toJSON.call(value));
  const parts: string[] = [];
  for (const key of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[key];
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
    parts.push(`${JSON.stringify(key)}:${stableStringify(v)}`);
  }
  return `{${parts.join(',')}}`;
}
