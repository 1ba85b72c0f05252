/**
 * Pieces every Gateway API kind module shares (gateway.networking.k8s.io):
 * object metadata with the generation conditions are written against, the
 * references routes and listeners make (parentRefs, backendRefs,
 * certificateRefs), and the Condition shape of their status.
 *
 * The schemas read the fields meshd translates and accept unknown ones; kinds
 * and filter types are free strings here, so an object using a feature meshd
 * lacks is still read and gets the condition the spec prescribes
 * (src/gateway/ingestion.ts) instead of disappearing at the parse.
 */
import { z } from 'zod';
import { labelsSchema } from './kind.js';
import { objectName, portNumber } from './service.js';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
/** Served versions meshd reads (v1 first: the stored one). */
export const GATEWAY_V1 = ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'] as const;

export function gatewayTypeMeta<K extends string>(kind: K, apiVersions: readonly [string, ...string[]]) {
  return { kind: z.literal(kind).default(kind), apiVersion: z.enum(apiVersions).default(apiVersions[0]) };
}

const metaFields = {
  name: objectName,
  labels: labelsSchema,
  annotations: z.record(z.string(), z.string()).optional(),
  generation: z.number().int().nonnegative().default(0),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  creationTimestamp: z.string().optional(),
};
export const namespacedMeta = z.object({ ...metaFields, namespace: objectName.default('default') });
export const clusterMeta = z.object(metaFields);

export const ConditionSchema = z.object({
  type: z.string().min(1),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().default(''),
  message: z.string().default(''),
  observedGeneration: z.number().int().optional(),
  lastTransitionTime: z.string().optional(),
});
export type Condition = z.infer<typeof ConditionSchema>;

/** A route's (or policy's) reference to the object it attaches to; defaults as the CRD sets them. */
export const ParentRefSchema = z.object({
  group: z.string().default(GATEWAY_GROUP),
  kind: z.string().default('Gateway'),
  namespace: objectName.optional(),
  name: objectName,
  sectionName: z.string().optional(),
  port: portNumber.optional(),
});
export type ParentRef = z.infer<typeof ParentRefSchema>;

export const HeaderValueSchema = z.object({ name: z.string().min(1), value: z.string() });
export const HeaderModifierSchema = z.object({
  set: z.array(HeaderValueSchema).optional(),
  add: z.array(HeaderValueSchema).optional(),
  remove: z.array(z.string().min(1)).optional(),
});
export type HeaderModifier = z.infer<typeof HeaderModifierSchema>;

/** A reference to a backend (a Service unless group/kind say otherwise). */
export const BackendObjectRefSchema = z.object({
  group: z.string().default(''),
  kind: z.string().default('Service'),
  name: objectName,
  namespace: objectName.optional(),
  port: portNumber.optional(),
});
export type BackendObjectRef = z.infer<typeof BackendObjectRefSchema>;

/** A Secret (or other object) a listener names for its certificate. */
export const SecretObjectRefSchema = z.object({
  group: z.string().default(''),
  kind: z.string().default('Secret'),
  name: objectName,
  namespace: objectName.optional(),
});
export type SecretObjectRef = z.infer<typeof SecretObjectRefSchema>;

/** One controller's entry in a route's status.parents. */
export const RouteParentStatusSchema = z.object({
  parentRef: ParentRefSchema,
  controllerName: z.string(),
  conditions: z.array(ConditionSchema).default([]),
});
export type RouteParentStatus = z.infer<typeof RouteParentStatusSchema>;

export const RouteStatusSchema = z.object({ parents: z.array(RouteParentStatusSchema).default([]) }).optional();

/** Gateway API durations ("1h", "10s", "500ms"; GEP-2257), in milliseconds; undefined when malformed. */
export function parseGatewayDuration(s: string): number | undefined {
  if (!/^([0-9]{1,5}(h|m|s|ms)){1,4}$/.test(s)) return undefined;
  let ms = 0;
  for (const [, n, u] of s.matchAll(/(\d+)(ms|h|m|s)/g)) ms += Number(n) * ({ h: 3_600_000, m: 60_000, s: 1_000, ms: 1 }[u ?? 'ms'] ?? 1);
  return ms;
}
