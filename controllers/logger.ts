// The logger controllers write to. The daemon sends it to its log file; tests capture it.
// One line per record, JSON, so that `d2p` tooling and `jq` can filter by controller/key.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every record (e.g. controller and key). */
  child(fields: LogFields): Logger;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface JsonLoggerOptions {
  level?: LogLevel;
  write?: (line: string) => void;
  fields?: LogFields;
}

export function createJsonLogger(opts: JsonLoggerOptions = {}): Logger {
  const minRank = LEVEL_RANK[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const base = opts.fields ?? {};
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (LEVEL_RANK[level] < minRank) return;
    write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...fields }, errorReplacer));
  };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (fields) => createJsonLogger({ ...opts, fields: { ...base, ...fields } }),
  };
}

// Error objects stringify to {} by default; keep what a reader needs to act on one.
function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const errno = value as NodeJS.ErrnoException;
    return { name: value.name, message: value.message, code: errno.code, syscall: errno.syscall, path: errno.path };
  }
  return value;
}
