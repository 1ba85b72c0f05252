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
import type { ParseResult } from './problem.js';

export type Scope = 'namespaced' | 'cluster';

export interface KindModule<K extends string, T extends { kind: K }> {
  readonly kind: K;
  readonly apiVersions: readonly [string, ...string[]];
  readonly scope: Scope;
  readonly schema: z.ZodType<T>;
  parse(input: unknown): ParseResult<T>;
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
