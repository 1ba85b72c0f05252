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

/** null when `pattern` compiles under RE2, else why not. */
export function re2Problem(pattern: string): string | null {
  if (pattern === '') return 'empty regular expression';
  try {
    new (ctor())(pattern, 'u');
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** Full-match test under RE2 (for tests and tools; Envoy does the serving). */
export function re2FullMatch(pattern: string, value: string): boolean {
  return new (ctor())(`^(?:${pattern})$`, 'u').test(value);
}
