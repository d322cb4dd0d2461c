/**
 * Structured JSON logging: one line per record with time, level, service, message,
 * and any fields (request id, trace id, ...). Values under keys that look like
 * secrets are redacted so tokens and passwords never reach a log.
 *
 * @example
 * ```ts
 * const log = createLogger({ service: "gateway" });
 * log.info("Request done", { request_id: id, status: 200 });
 * const child = log.with({ request_id: id }); // fields on every record
 * ```
 * @module
 */

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_KEY = /token|secret|password|authorization|cookie|jwt/i;

/** Extra fields on a log record. */
export type LogFields = Record<string, unknown>;

/** A structured logger. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every record. */
  with(fields: LogFields): Logger;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Service name on every record. */
  service: string;
  /** Records below this level are dropped (default "info"). */
  level?: LogLevel;
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/** Create a JSON-lines logger. */
export function createLogger(options: LoggerOptions, bound: LogFields = {}): Logger {
  const minimum = LEVEL_RANK[options.level ?? "info"];
  const write = options.write ?? writeStderr;
  const emit = (level: LogLevel, message: string, fields?: LogFields) => {
    if (LEVEL_RANK[level] < minimum) return;
    const record = {
      time: new Date().toISOString(),
      level,
      service: options.service,
      message,
      ...redact(bound),
      ...redact(fields ?? {}),
    };
    write(JSON.stringify(record, errorReplacer));
  };
  return {
    debug: (message, fields) => emit("debug", message, fields),
    info: (message, fields) => emit("info", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    error: (message, fields) => emit("error", message, fields),
    with: (fields) => createLogger(options, { ...bound, ...fields }),
  };
}

/** A logger that drops everything (for tests and libraries). */
export const silentLogger: Logger = createLogger({ service: "silent", write: () => {} });

function redact(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] = SECRET_KEY.test(key) ? "[redacted]" : value;
  }
  return out;
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (typeof value === "bigint") return value.toString();
  return value;
}
