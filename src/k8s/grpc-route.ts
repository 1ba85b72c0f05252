/**
 * GRPCRoute (gateway.networking.k8s.io/v1): rules matching gRPC service and
 * method (and headers), with header filters, mirroring and weighted
 * backends. Translated as HTTP/2 routes on `/<service>/<method>`.
 */
import { z } from 'zod';
import { defineKind, type KindModule } from './kind.js';
import { BackendObjectRefSchema, gatewayTypeMeta, HeaderModifierSchema, namespacedMeta, ParentRefSchema, RouteStatusSchema } from './gateway-api-common.js';

const API_VERSIONS = ['gateway.networking.k8s.io/v1'] as const;

export const GrpcRouteMatchSchema = z.object({
  method: z.object({ type: z.enum(['Exact', 'RegularExpression']).default('Exact'), service: z.string().optional(), method: z.string().optional() }).optional(),
  headers: z.array(z.object({ type: z.enum(['Exact', 'RegularExpression']).default('Exact'), name: z.string().min(1), value: z.string() })).optional(),
});
export type GrpcRouteMatch = z.infer<typeof GrpcRouteMatchSchema>;

export const GrpcRouteFilterSchema = z.object({
  type: z.string().min(1),
  requestHeaderModifier: HeaderModifierSchema.optional(),
  responseHeaderModifier: HeaderModifierSchema.optional(),
  requestMirror: z.object({ backendRef: BackendObjectRefSchema, percent: z.number().int().min(0).max(100).optional() }).optional(),
});

export const GrpcRouteSchema = z.object({
  ...gatewayTypeMeta('GRPCRoute', API_VERSIONS),
  metadata: namespacedMeta,
  spec: z.object({
    parentRefs: z.array(ParentRefSchema).default([]),
    hostnames: z.array(z.string().min(1)).default([]),
    rules: z
      .array(
        z.object({
          name: z.string().optional(),
          matches: z.array(GrpcRouteMatchSchema).default([{}]),
          filters: z.array(GrpcRouteFilterSchema).default([]),
          backendRefs: z.array(BackendObjectRefSchema.extend({ weight: z.number().int().min(0).max(1_000_000).default(1), filters: z.array(GrpcRouteFilterSchema).optional() })).default([]),
        }),
      )
      .default([{ matches: [{}], filters: [], backendRefs: [] }]),
  }),
  status: RouteStatusSchema,
});
export type GrpcRoute = z.infer<typeof GrpcRouteSchema>;

export const grpcRoute: KindModule<'GRPCRoute', GrpcRoute> = defineKind({ kind: 'GRPCRoute', apiVersions: API_VERSIONS, scope: 'namespaced', schema: GrpcRouteSchema });
