/**
 * What a kind module reports when an object does not parse: the field path as
 * data (`['spec', 'ports', 0, 'port']`), a stable code and a message for
 * people. Paths come straight from zod's issues and from the semantic checks;
 * `formatPath` renders them for logs and the CLI, nothing parses them back.
 */
import type { z } from 'zod';

export type FieldPath = Array<string | number>;

export type ProblemCode =
  // shape (zod)
  | 'UNKNOWN_KIND'
  | 'UNKNOWN_FIELD'
  | 'WRONG_TYPE'
  | 'INVALID_VALUE'
  // policy semantics (src/policy/api/validate.ts)
  | 'YAML_SYNTAX'
  | 'MISSING_SPEC'
  | 'SELECTOR_REQUIRED'
  | 'INVALID_SELECTOR'
  | 'INVALID_REGEX'
  | 'INVALID_CIDR'
  | 'INVALID_PORT'
  | 'INVALID_PORT_RANGE'
  | 'INVALID_ICMP'
  | 'INVALID_DNS'
  | 'INVALID_KAFKA'
  | 'L7_NON_TCP'
  | 'L7_MIXED'
  | 'L7_WITHOUT_PORTS'
  | 'DNS_ON_INGRESS'
  | 'DENY_WITH_L7'
  | 'DENY_WITH_FQDN'
  | 'NODE_SELECTOR_NAMESPACED'
  | 'L7_ON_HOST'
  /** A field Cilium defines whose feature meshd does not have (the message names the feature). */
  | 'UNSUPPORTED_FIELD'
  /** Not an error: a field Cilium deprecated or removed that meshd still enforces (a warning). */
  | 'DEPRECATED_FIELD'
  // Service / EndpointSlice semantics
  | 'DUPLICATE_PORT'
  | 'INVALID_ANNOTATION'
  | 'MISSING_LABEL'
  | 'WRONG_ADDRESS_FAMILY';

export interface ResourceProblem {
  path: FieldPath;
  code: ProblemCode;
  message: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; problems: ResourceProblem[] };

/** `spec.ingress[0].toPorts`; `(document)` for the empty path. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out === '' ? '(document)' : out;
}

/** One problem per zod issue (one per key for unknown keys), paths kept as arrays. */
export function zodProblems(err: z.ZodError, base: FieldPath = []): ResourceProblem[] {
  const out: ResourceProblem[] = [];
  for (const issue of err.issues) {
    const path: FieldPath = [...base, ...issue.path.filter((s): s is string | number => typeof s !== 'symbol')];
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) out.push({ path: [...path, k], code: 'UNKNOWN_FIELD', message: `unknown field "${k}"` });
      continue;
    }
    // A refinement may name its own problem code (src/policy/api/schema.ts: unsupported()).
    const own = issue.code === 'custom' ? issue.params?.['problem'] : undefined;
    if (own === 'UNSUPPORTED_FIELD') {
      out.push({ path, code: own, message: issue.message });
      continue;
    }
    if (issue.code === 'invalid_type') {
      out.push({ path, code: 'WRONG_TYPE', message: issue.input === undefined ? 'required field is missing' : issue.message });
      continue;
    }
    out.push({ path, code: 'INVALID_VALUE', message: issue.message });
  }
  return out;
}

/** Schema first; the semantic checks run only on a value the schema accepted, so they trust its types. */
export function parseWith<T>(schema: z.ZodType<T>, input: unknown, semantic?: (value: T) => ResourceProblem[]): ParseResult<T> {
  const r = schema.safeParse(input);
  if (!r.success) return { ok: false, problems: zodProblems(r.error) };
  const problems = semantic?.(r.data) ?? [];
  return problems.length > 0 ? { ok: false, problems } : { ok: true, value: r.data };
}
