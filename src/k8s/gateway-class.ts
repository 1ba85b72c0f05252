/**
 * GatewayClass (gateway.networking.k8s.io/v1, cluster-scoped): which
 * controller implements the Gateways of a class. meshd takes the classes
 * whose controllerName is its own (src/gateway/controller-name.ts).
 */
import { z } from 'zod';
import { defineKind, type KindModule } from './kind.js';
import { clusterMeta, ConditionSchema, GATEWAY_V1, gatewayTypeMeta } from './gateway-api-common.js';

export const GatewayClassSchema = z.object({
  ...gatewayTypeMeta('GatewayClass', GATEWAY_V1),
  metadata: clusterMeta,
  spec: z.object({
    controllerName: z.string().min(1),
    description: z.string().optional(),
    parametersRef: z.object({ group: z.string(), kind: z.string(), name: z.string(), namespace: z.string().optional() }).optional(),
  }),
  status: z.object({ conditions: z.array(ConditionSchema).default([]) }).optional(),
});
export type GatewayClass = z.infer<typeof GatewayClassSchema>;

export const gatewayClass: KindModule<'GatewayClass', GatewayClass> = defineKind({ kind: 'GatewayClass', apiVersions: GATEWAY_V1, scope: 'cluster', schema: GatewayClassSchema });
