/**
 * Structured logging: one JSON object per line on stderr (or a sink given by the host), with the
 * run id and stage carried by child loggers. Fields whose names look like secrets are redacted
 * whatever their value, so a careless call cannot print key material.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_FIELD =
  /(secret|password|token|symkey|privatekey|private_key|authorization|key_?material)/i;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export function redact(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [name, value] of Object.entries(fields)) {
    if (SECRET_FIELD.test(name)) {
      out[name] = '[redacted]';
    } else if (value instanceof Error) {
      out[name] = value.message;
    } else {
      out[name] = value;
    }
  }
  return out;
}

export function createLogger(
  base: LogFields = {},
  options: { level?: LogLevel; sink?: LogSink } = {},
): Logger {
  const threshold = LEVELS[options.level ?? envLevel()];
  const sink = options.sink ?? ((line: string) => process.stderr.write(line + '\n'));

  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LEVELS[level] < threshold) return;
    const time = new Date().toISOString();
    const record = { time, level, msg, ...redact({ ...base, ...fields }) };
    sink(JSON.stringify(record));
  };

  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (fields) => createLogger({ ...base, ...fields }, options),
  };
}

function envLevel(): LogLevel {
  const value = process.env.CCPIPE_LOG_LEVEL;
  return value === 'debug' || value === 'warn' || value === 'error' ? value : 'info';
}

/** A logger that drops everything, for tests that assert on behaviour rather than logs. */
export const silentLogger: Logger = createLogger({}, { sink: () => undefined, level: 'error' });
