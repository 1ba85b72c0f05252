/**
 * ConfigMap (core/v1), read with gatewayAPI.enabled for the CA bundles
 * BackendTLSPolicies name (`caCertificateRefs`, key `ca.crt`).
 */
import { z } from 'zod';
import { defineKind, typeMeta, type KindModule } from './kind.js';
import { objectName } from './service.js';

const API_VERSIONS = ['v1'] as const;

export const ConfigMapSchema = z.object({
  ...typeMeta('ConfigMap', API_VERSIONS),
  metadata: z.object({ name: objectName, namespace: objectName.default('default') }),
  data: z.record(z.string(), z.string()).default({}),
});
export type ConfigMap = z.infer<typeof ConfigMapSchema>;

export const configMap: KindModule<'ConfigMap', ConfigMap> = defineKind({ kind: 'ConfigMap', apiVersions: API_VERSIONS, scope: 'namespaced', schema: ConfigMapSchema });
