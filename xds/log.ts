/**
 * Logging for the xDS package: a four-method interface the host application
 * implements (the agent passes its own logger). The default writes one JSON
 * line per warning or error to stderr and drops info.
 */
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface XdsLogger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

function line(level: string, msg: string, fields?: LogFields): string {
  return `${JSON.stringify({ time: new Date().toISOString(), level, component: 'xds', msg, ...fields })}\n`;
}

export const stderrLogger: XdsLogger = {
  info() {},
  warn(msg, fields) {
    process.stderr.write(line('warn', msg, fields));
  },
  error(msg, fields) {
    process.stderr.write(line('error', msg, fields));
  },
};

/** Keeps every entry in memory (tests, `meshd xds serve --verbose`). */
export class MemoryLogger implements XdsLogger {
  readonly entries: Array<{ level: 'info' | 'warn' | 'error'; msg: string; fields: LogFields }> = [];
  info(msg: string, fields: LogFields = {}): void {
    this.entries.push({ level: 'info', msg, fields });
  }
  warn(msg: string, fields: LogFields = {}): void {
    this.entries.push({ level: 'warn', msg, fields });
  }
  error(msg: string, fields: LogFields = {}): void {
    this.entries.push({ level: 'error', msg, fields });
  }
}
