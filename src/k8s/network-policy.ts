/**
 * NetworkPolicy (networking.k8s.io/v1). The field schema lives with the other
 * policy schemas (src/policy/api/schema.ts); this module is the one place it
 * is parsed, schema then the semantic checks of src/policy/api/validate.ts.
 */
import { networkPolicy as NetworkPolicySchema, type NetworkPolicySpec } from '../policy/api/schema.js';
import { validateDocument } from '../policy/api/validate.js';
import { defineKind, type KindModule } from './kind.js';

export type NetworkPolicy = NetworkPolicySpec;

export const networkPolicy: KindModule<'NetworkPolicy', NetworkPolicy> = defineKind({
  kind: 'NetworkPolicy',
  apiVersions: ['networking.k8s.io/v1'],
  scope: 'namespaced',
  schema: NetworkPolicySchema,
  check: (doc) => validateDocument({ kind: 'NetworkPolicy', doc }),
});
