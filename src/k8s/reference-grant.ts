/**
 * ReferenceGrant (gateway.networking.k8s.io/v1beta1 and v1): lets objects of
 * the `from` kinds in the `from` namespaces refer to the `to` objects in the
 * grant's own namespace (a route to a Service, a Gateway to a Secret).
 */
import { z } from 'zod';
import { defineKind, type KindModule } from './kind.js';
import { gatewayTypeMeta, namespacedMeta } from './gateway-api-common.js';

const API_VERSIONS = ['gateway.networking.k8s.io/v1beta1', 'gateway.networking.k8s.io/v1'] as const;

export const ReferenceGrantSchema = z.object({
  ...gatewayTypeMeta('ReferenceGrant', API_VERSIONS),
  metadata: namespacedMeta,
  spec: z.object({
    from: z.array(z.object({ group: z.string(), kind: z.string().min(1), namespace: z.string().min(1) })).min(1),
    to: z.array(z.object({ group: z.string(), kind: z.string().min(1), name: z.string().min(1).optional() })).min(1),
  }),
});
export type ReferenceGrant = z.infer<typeof ReferenceGrantSchema>;

export const referenceGrant: KindModule<'ReferenceGrant', ReferenceGrant> = defineKind({ kind: 'ReferenceGrant', apiVersions: API_VERSIONS, scope: 'namespaced', schema: ReferenceGrantSchema });
