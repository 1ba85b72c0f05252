/**
 * BackendTLSPolicy (gateway.networking.k8s.io/v1): the Gateway connects to
 * the target Services over TLS, checking the server's certificate against
 * the named CA (a ConfigMap or Secret key `ca.crt`) and hostname.
 */
import { z } from 'zod';
import { defineKind, type KindModule } from './kind.js';
import { ConditionSchema, gatewayTypeMeta, namespacedMeta, ParentRefSchema } from './gateway-api-common.js';

const API_VERSIONS = ['gateway.networking.k8s.io/v1'] as const;

export const BackendTlsPolicySchema = z.object({
  ...gatewayTypeMeta('BackendTLSPolicy', API_VERSIONS),
  metadata: namespacedMeta,
  spec: z.object({
    targetRefs: z.array(z.object({ group: z.string().default(''), kind: z.string().default('Service'), name: z.string().min(1), sectionName: z.string().optional() })).min(1),
    validation: z.object({
      caCertificateRefs: z.array(z.object({ group: z.string().default(''), kind: z.string().min(1), name: z.string().min(1) })).default([]),
      wellKnownCACertificates: z.string().optional(),
      hostname: z.string().min(1),
      subjectAltNames: z.array(z.object({ type: z.enum(['Hostname', 'URI']), hostname: z.string().optional(), uri: z.string().optional() })).optional(),
    }),
  }),
  status: z
    .object({ ancestors: z.array(z.object({ ancestorRef: ParentRefSchema, controllerName: z.string(), conditions: z.array(ConditionSchema).default([]) })).default([]) })
    .optional(),
});
export type BackendTlsPolicy = z.infer<typeof BackendTlsPolicySchema>;

export const backendTlsPolicy: KindModule<'BackendTLSPolicy', BackendTlsPolicy> = defineKind({ kind: 'BackendTLSPolicy', apiVersions: API_VERSIONS, scope: 'namespaced', schema: BackendTlsPolicySchema });
