/**
 * The items of a Kubernetes list response that fit a schema. For sweeps
 * that delete only what they understand: an item that does not parse is
 * skipped, never touched.
 *
 *   const nodes = itemsOf(MeshdNodeSchema, await client.getJson(MESHD_NODES_PATH), MESHD_NODES_PATH);
 */
import { z } from 'zod';
import { KubeApiError, type Json } from './client.js';

const ListSchema = z.object({ items: z.array(z.unknown()).nullish() });

/** Throws MESHD_K8S_BAD_RESPONSE when the answer is not a list at all. */
export function itemsOf<T>(schema: z.ZodType<T>, list: Json, what: string): T[] {
  const l = ListSchema.safeParse(list);
  if (!l.success) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `${what}: not a list`);
  return (l.data.items ?? []).flatMap((i) => {
    const r = schema.safeParse(i);
    return r.success ? [r.data] : [];
  });
}
