/**
 * HTTPRoute (gateway.networking.k8s.io/v1): rules of matches (path, headers,
 * query parameters, method), filters and weighted backends, attached to
 * Gateways by parentRefs.
 *
 * Shape only: a regular expression that does not compile, a filter type
 * meshd lacks or a backend that does not exist is not a parse problem but a
 * route condition (src/gateway/ingestion.ts), as the spec wants the rest of
 * the route to keep working.
 */
import { z } from 'zod';
import { defineKind, type KindModule } from './kind.js';
import {
  BackendObjectRefSchema,
  GATEWAY_V1,
  gatewayTypeMeta,
  HeaderModifierSchema,
  namespacedMeta,
  ParentRefSchema,
  RouteStatusSchema,
} from './gateway-api-common.js';
import { portNumber } from './service.js';

export const HttpPathMatchSchema = z.object({
  type: z.enum(['Exact', 'PathPrefix', 'RegularExpression']).default('PathPrefix'),
  value: z.string().default('/'),
});

const valueMatch = z.object({ type: z.enum(['Exact', 'RegularExpression']).default('Exact'), name: z.string().min(1), value: z.string() });

export const HttpRouteMatchSchema = z.object({
  path: HttpPathMatchSchema.optional(),
  headers: z.array(valueMatch).optional(),
  queryParams: z.array(valueMatch).optional(),
  method: z.string().optional(),
});
export type HttpRouteMatch = z.infer<typeof HttpRouteMatchSchema>;

export const HttpPathModifierSchema = z.object({
  type: z.enum(['ReplaceFullPath', 'ReplacePrefixMatch']),
  replaceFullPath: z.string().optional(),
  replacePrefixMatch: z.string().optional(),
});

export const HttpRouteFilterSchema = z.object({
  type: z.string().min(1),
  requestHeaderModifier: HeaderModifierSchema.optional(),
  responseHeaderModifier: HeaderModifierSchema.optional(),
  requestRedirect: z
    .object({
      scheme: z.enum(['http', 'https']).optional(),
      hostname: z.string().optional(),
      path: HttpPathModifierSchema.optional(),
      port: portNumber.optional(),
      statusCode: z.number().int().default(302),
    })
    .optional(),
  urlRewrite: z.object({ hostname: z.string().optional(), path: HttpPathModifierSchema.optional() }).optional(),
  requestMirror: z
    .object({
      backendRef: BackendObjectRefSchema,
      percent: z.number().int().min(0).max(100).optional(),
      fraction: z.object({ numerator: z.number().int().min(0), denominator: z.number().int().min(1).default(100) }).optional(),
    })
    .optional(),
});
export type HttpRouteFilter = z.infer<typeof HttpRouteFilterSchema>;

export const HttpBackendRefSchema = BackendObjectRefSchema.extend({
  weight: z.number().int().min(0).max(1_000_000).default(1),
  filters: z.array(HttpRouteFilterSchema).optional(),
});
export type HttpBackendRef = z.infer<typeof HttpBackendRefSchema>;

export const HttpRouteRuleSchema = z.object({
  name: z.string().optional(),
  matches: z.array(HttpRouteMatchSchema).default([{ path: { type: 'PathPrefix', value: '/' } }]),
  filters: z.array(HttpRouteFilterSchema).default([]),
  backendRefs: z.array(HttpBackendRefSchema).default([]),
  timeouts: z.object({ request: z.string().optional(), backendRequest: z.string().optional() }).optional(),
});
export type HttpRouteRule = z.infer<typeof HttpRouteRuleSchema>;

export const HttpRouteSchema = z.object({
  ...gatewayTypeMeta('HTTPRoute', GATEWAY_V1),
  metadata: namespacedMeta,
  spec: z.object({
    parentRefs: z.array(ParentRefSchema).default([]),
    hostnames: z.array(z.string().min(1)).default([]),
    rules: z.array(HttpRouteRuleSchema).default([{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], filters: [], backendRefs: [] }]),
  }),
  status: RouteStatusSchema,
});
export type HttpRoute = z.infer<typeof HttpRouteSchema>;

export const httpRoute: KindModule<'HTTPRoute', HttpRoute> = defineKind({ kind: 'HTTPRoute', apiVersions: GATEWAY_V1, scope: 'namespaced', schema: HttpRouteSchema });
