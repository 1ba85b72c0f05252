/**
 * The contract every Kubernetes kind module under src/k8s/ implements: the
 * kind's name, the apiVersions meshd accepts, its scope, its zod schema and the
 * one `parse` that turns untrusted JSON into the typed object (or problems
 * with field paths). Nothing else in meshd parses that kind.
 *
 *   const r = pod.parse(json);
 *   if (r.ok) use(r.value);            // typed Pod, defaults applied
 *   else report(r.problems);           // [{ path: ['spec', 'containers', 0, 'ports', 0, 'containerPort'], code, message }]
 */
import { z } from 'zod';
import { MeshdError } from '../util/errors.js';
import { formatPath, parseWith, type ParseResult, type ResourceProblem } from './problem.js';

export type Scope = 'namespaced' | 'cluster';

export interface KindModule<K extends string, T extends { kind: K }> {
  readonly kind: K;
  readonly apiVersions: readonly [string, ...string[]];
  readonly scope: Scope;
  readonly schema: z.ZodType<T>;
  parse(input: unknown): ParseResult<T>;
}

/**
 * A kind module from its parts: `parse` is the schema, then (on a value the
 * schema accepted) the kind's semantic checks.
 */
export function defineKind<K extends string, T extends { kind: K }>(d: {
  kind: K;
  apiVersions: readonly [string, ...string[]];
  scope: Scope;
  schema: z.ZodType<T>;
  check?: (value: T) => ResourceProblem[];
}): KindModule<K, T> {
  const { check, ...rest } = d;
  return { ...rest, parse: (input) => parseWith(d.schema, input, check) };
}

export const labelsSchema = z.record(z.string(), z.string()).default({});

/**
 * `kind` and `apiVersion` of a core kind. Both default to the module's own
 * values: list items from the Kubernetes API carry neither, and a manifest
 * that names another kind or version is still refused at that field.
 */
export function typeMeta<K extends string>(kind: K, apiVersions: readonly [string, ...string[]]) {
  return {
    kind: z.literal(kind).default(kind),
    apiVersion: z.enum(apiVersions).default(apiVersions[0]),
  };
}

/** Thrown by `mustParse`: the object is not a valid instance of its kind. */
export class ResourceInvalidError extends MeshdError {
  constructor(
    readonly resourceKind: string,
    readonly problems: ResourceProblem[],
  ) {
    super('MESHD_RESOURCE_INVALID', `invalid ${resourceKind}: ${problems.map((p) => `${formatPath(p.path)}: ${p.message}`).join('; ')}`, { kind: 'invalid' });
  }
}

/** Parses an object that must be valid (fixtures, built-in objects); throws ResourceInvalidError otherwise. */
export function mustParse<K extends string, T extends { kind: K }>(m: KindModule<K, T>, input: unknown): T {
  const r = m.parse(input);
  if (!r.ok) throw new ResourceInvalidError(m.kind, r.problems);
  return r.value;
}
