/**
 * Structured logging: JSON lines when stderr is not a terminal (or when asked),
 * short text lines on a terminal. Context (endpoint, policy, identity, …)
 * travels with child loggers.
 *
 *   const log = createLogger({ component: 'agent' });
 *   log.child({ endpoint: 'default/web' }).warn('policy map full', { entries: 65536 });
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(ctx: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: 'auto' | 'json' | 'text';
  write?: (line: string) => void;
}

function errorFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = v instanceof Error ? { message: v.message, ...('code' in v ? { code: v.code } : {}) } : v;
  }
  return out;
}

export function createLogger(ctx: Record<string, unknown> = {}, opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? (process.env.MESHD_DEBUG ? 'debug' : 'info');
  const json = opts.format === 'json' || (opts.format !== 'text' && !process.stderr.isTTY);
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const emit = (lvl: LogLevel, msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[lvl] < ORDER[level]) return;
    const all = { ...ctx, ...errorFields(fields) };
    if (json) {
      write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...all }));
    } else {
      const kv = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${lvl.toUpperCase().padEnd(5)} ${msg}${kv ? ` ${kv}` : ''}`);
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (more) => createLogger({ ...ctx, ...more }, { ...opts, level }),
  };
}
