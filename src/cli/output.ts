/**
 * What a command prints: the human text (default), or the same data as JSON
 * or YAML (`-o json|yaml`), the same way for every command. JSON is one line
 * per value, so `meshd … -o json | jq` and tests read it line by line; YAML
 * is one document per value. Both encode the same JSON value (bigints as
 * decimal strings, Maps as objects), so either parses back to the same data.
 */
import { stringify as toYaml } from 'yaml';

export const OUTPUT_FORMATS = ['text', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function isOutputFormat(s: string): s is OutputFormat {
  return OUTPUT_FORMATS.some((f) => f === s);
}

/** The JSON value of `data` (what JSON.stringify would encode), with bigints as decimal strings and Maps as objects. */
export function toJsonValue(data: unknown): unknown {
  const text = JSON.stringify(data, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Map ? Object.fromEntries(v) : v));
  return text === undefined ? null : JSON.parse(text);
}

/** `data` in the format, newline-terminated; `text` renders the human form and is only called for it. */
export function formatOutput(format: OutputFormat, data: unknown, text: () => string): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(toJsonValue(data))}\n`;
    case 'yaml':
      return `---\n${toYaml(toJsonValue(data))}`;
    case 'text': {
      const t = text();
      return t.endsWith('\n') || t === '' ? t : `${t}\n`;
    }
  }
}

/** A plain aligned table; cells are stringified, null and undefined as "-". */
export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<unknown>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : typeof c === 'object' ? JSON.stringify(c) : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}
