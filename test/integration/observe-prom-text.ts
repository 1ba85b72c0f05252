/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4),
 * written against the format's specification for the observe tests: no
 * Prometheus parser is installed here. Every line must be a comment (# HELP,
 * # TYPE or other), blank, or a sample `name{label="value",…} value [timestamp]`;
 * anything else throws with its line number. Label values unescape \\, \" and \n.
 *
 *   const m = parsePromText(text);
 *   m.types.get('hubble_drop_total')                       // 'counter'
 *   value(m, 'hubble_drop_total', { reason: 'POLICY_DENIED' })
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromText {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: PromSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s: string, line: number): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`line ${line}: "${s}" is not a sample value`);
  return Number(s);
}

export function parsePromText(text: string): PromText {
  const out: PromText = { types: new Map(), help: new Map(), samples: [] };
  if (text !== '' && !text.endsWith('\n')) throw new Error('the exposition must end with a line feed');
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((raw, i) => {
    const n = i + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(raw);
      if (!m) return; // another comment
      const [, kind, name = '', rest = ''] = m;
      if (!NAME.test(name) || NAME.exec(name)?.[0] !== name) throw new Error(`line ${n}: bad metric name "${name}"`);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`line ${n}: unknown type "${rest}"`);
        if (out.types.has(name)) throw new Error(`line ${n}: a second TYPE for ${name}`);
        if (out.samples.some((s) => s.name === name)) throw new Error(`line ${n}: TYPE for ${name} after its samples`);
        out.types.set(name, rest);
      } else out.help.set(name, rest);
      return;
    }
    let s = raw;
    const nm = NAME.exec(s);
    if (!nm) throw new Error(`line ${n}: no metric name in "${raw}"`);
    const name = nm[0];
    s = s.slice(name.length);
    const labels: Record<string, string> = {};
    if (s.startsWith('{')) {
      s = s.slice(1);
      for (;;) {
        s = s.replace(/^\s*/, '');
        if (s.startsWith('}')) {
          s = s.slice(1);
          break;
        }
        const lm = LABEL.exec(s);
        if (!lm) throw new Error(`line ${n}: bad label name in "${raw}"`);
        const key = lm[0];
        s = s.slice(key.length);
        if (!s.startsWith('="')) throw new Error(`line ${n}: expected ="…" after label ${key}`);
        s = s.slice(2);
        let value = '';
        for (;;) {
          const c = s[0];
          if (c === undefined) throw new Error(`line ${n}: unterminated label value`);
          if (c === '"') {
            s = s.slice(1);
            break;
          }
          if (c === '\\') {
            const e = s[1];
            if (e === '\\') value += '\\';
            else if (e === '"') value += '"';
            else if (e === 'n') value += '\n';
            else throw new Error(`line ${n}: bad escape \\${e ?? ''}`);
            s = s.slice(2);
            continue;
          }
          value += c;
          s = s.slice(1);
        }
        if (key in labels) throw new Error(`line ${n}: label ${key} twice`);
        labels[key] = value;
        s = s.replace(/^\s*/, '');
        if (s.startsWith(',')) s = s.slice(1);
        else if (!s.startsWith('}')) throw new Error(`line ${n}: expected , or } after label ${key}`);
      }
    }
    if (!/^[ \t]+/.test(s)) throw new Error(`line ${n}: expected whitespace before the value`);
    const parts = s.trim().split(/[ \t]+/);
    if (parts.length < 1 || parts.length > 2) throw new Error(`line ${n}: expected "value [timestamp]"`);
    const value = parseValue(parts[0] ?? '', n);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`line ${n}: bad timestamp "${parts[1]}"`);
    out.samples.push({ name, labels, value });
  });
  return out;
}

/** The sum of the samples of `name` whose labels include `labels`. */
export function value(m: PromText, name: string, labels: Record<string, string> = {}): number {
  return m.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}
