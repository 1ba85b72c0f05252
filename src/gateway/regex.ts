/**
 * Regular expressions of HTTPRoute and GRPCRoute matches are RE2 (Envoy's
 * safe_regex): checked here with RE2 itself (re2-wasm, the RE2 build
 * @grpc/grpc-js-xds uses for the same purpose), so a pattern Envoy would
 * reject never reaches it, and one JavaScript would accept but RE2 would
 * not (lookaround, backreferences) is refused too.
 */
import { createRequire } from 'node:module';

interface Re2Ctor {
  new (pattern: string, flags: string): { test(s: string): boolean };
}

const require = createRequire(import.meta.url);
let re2: Re2Ctor | null = null;

function ctor(): Re2Ctor {
  if (!re2) {
    const mod: unknown = require('re2-wasm');
    if (typeof mod !== 'object' || mod === null || !('RE2' in mod) || typeof mod.RE2 !== 'function') throw new Error('re2-wasm does not export RE2');
    re2 = mod.RE2 as Re2Ctor; // a module's export, not external data
  }
  return re2;
}

/**
 * Envoy refuses a regular expression whose compiled RE2 program is larger
 * than this (runtime key re2.max_program_size.error_level, default 100).
 */
export const ENVOY_MAX_PROGRAM_SIZE = 100;

/** null when `pattern` compiles under RE2 and Envoy takes its program size, else why not. */
export function re2Problem(pattern: string): string | null {
  if (pattern === '') return 'empty regular expression';
  try {
    new (ctor())(pattern, 'u');
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  const size = re2ProgramSizeEstimate(pattern);
  return size > ENVOY_MAX_PROGRAM_SIZE ? `its RE2 program (about ${size} instructions) is larger than Envoy accepts (${ENVOY_MAX_PROGRAM_SIZE})` : null;
}

/**
 * An estimate of RE2's program size for a pattern RE2 accepts, as RE2's
 * compiler counts instructions (checked against Envoy's own count: a literal
 * byte 1, `.` 2, a class about one per range, a capture 2, an alternative
 * 1, `x*`/`x+`/`x?` one more than x, `x{n,m}` n copies and m-n optional
 * ones, 4 for the program's frame). It errs on the high side by an
 * instruction or two, never far low.
 */
export function re2ProgramSizeEstimate(pattern: string): number {
  let i = 0;
  const peek = () => pattern[i];
  const utf8 = (ch: string) => Buffer.byteLength(ch, 'utf8');
  const escape = (): number => {
    const c = pattern[i + 1] ?? '';
    i += 2;
    if (c === 'd') return 1;
    if (c === 'w' || c === 's') return 3;
    if (c === 'D' || c === 'W' || c === 'S') return 4;
    if (c === 'p' || c === 'P') {
      if (peek() === '{') i = pattern.indexOf('}', i) + 1;
      else i += 1;
      return 60;
    }
    if (c === 'b' || c === 'B' || c === 'A' || c === 'z') return 1;
    return 1;
  };
  const klass = (): number => {
    i += 1; // [
    let n = 0;
    let negated = false;
    if (peek() === '^') {
      negated = true;
      i += 1;
    }
    let first = true;
    while (i < pattern.length && (peek() !== ']' || first)) {
      first = false;
      if (peek() === '[' && pattern[i + 1] === ':') {
        i = pattern.indexOf(':]', i + 2) + 2;
        n += 3;
      } else if (peek() === '\\') n += escape();
      else {
        i += 1;
        n += 1;
      }
      if (peek() === '-' && pattern[i + 1] !== ']' && pattern[i + 1] !== undefined) i += 2; // a range counts once
    }
    i += 1; // ]
    return Math.max(1, n) + (negated ? 1 : 0);
  };
  const atom = (): number => {
    const c = peek() ?? '';
    if (c === '(') {
      i += 1;
      let capture = 2;
      if (peek() === '?') {
        if (pattern[i + 1] === 'P' || pattern[i + 1] === '<') {
          i = pattern.indexOf('>', i) + 1;
        } else {
          // (?flags) or (?flags:…)
          while (i < pattern.length && peek() !== ':' && peek() !== ')') i += 1;
          capture = 0;
          if (peek() === ')') {
            i += 1;
            return 0;
          }
          i += 1;
        }
      }
      const inner = alternation();
      i += 1; // )
      return inner + capture;
    }
    if (c === '[') return klass();
    if (c === '\\') return escape();
    if (c === '.') {
      i += 1;
      return 2;
    }
    const cp = String.fromCodePoint(pattern.codePointAt(i) ?? 0);
    i += cp.length;
    return c === '^' || c === '$' ? 1 : utf8(cp);
  };
  const concat = (): number => {
    let total = 0;
    while (i < pattern.length && peek() !== '|' && peek() !== ')') {
      let a = atom();
      for (;;) {
        const q = peek();
        if (q === '*' || q === '+' || q === '?') {
          i += 1;
          a += 1;
        } else if (q === '{') {
          const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
          if (!m) break;
          i += m[0].length;
          const lo = Number(m[1]);
          if (m[2] === undefined) a = lo * a;
          else if (m[3] === '' || m[3] === undefined) a = lo * a + 1 + (lo === 0 ? a : 0);
          else a = lo * a + (Number(m[3]) - lo) * (a + 1);
        } else break;
        if (peek() === '?') i += 1; // lazy
      }
      total += a;
    }
    return total;
  };
  const alternation = (): number => {
    let total = concat();
    while (peek() === '|') {
      i += 1;
      total += concat() + 1;
    }
    return total;
  };
  return alternation() + 4;
}

/** Full-match test under RE2 (for tests and tools; Envoy does the serving). */
export function re2FullMatch(pattern: string, value: string): boolean {
  return new (ctor())(`^(?:${pattern})$`, 'u').test(value);
}
