// One JSON line per event, with the context (component, namespace, pod, identity) carried by child loggers.
import winston from 'winston';
import { LOG_LEVELS, parseLogLevel } from './log-level.ts';
import { redact, redactString } from './redact.ts';

export { LOG_LEVELS, parseLogLevel, type LogLevel } from './log-level.ts';

export type Logger = winston.Logger;

// Runs last, after child-logger fields are merged, so nothing a caller adds escapes redaction.
// Errors are turned into plain fields here because winston's errors() format misses them on child loggers.
const redactFormat = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (key === 'level' || key === 'timestamp') continue;
    const value = info[key];
    info[key] = key === 'message' && typeof value === 'string' ? redactString(value) : redact(value);
  }
  return info;
});

export interface LoggerOptions {
  level?: string;
  /** Where lines go; stderr by default so command output on stdout stays clean. */
  stream?: NodeJS.WritableStream;
  context?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = parseLogLevel(options.level ?? process.env.CINCH_LOG_LEVEL);
  const transport = options.stream
    ? new winston.transports.Stream({ stream: options.stream })
    : new winston.transports.Console({ stderrLevels: [...LOG_LEVELS] });
  const logger = winston.createLogger({
    level,
    levels: winston.config.npm.levels,
    format: winston.format.combine(winston.format.timestamp(), redactFormat(), winston.format.json()),
    transports: [transport],
  });
  // A child rather than defaultMeta: winston applies defaultMeta last, so it would override the
  // more specific fields (component, namespace) of every child logger made from this one.
  return options.context ? logger.child(options.context) : logger;
}
