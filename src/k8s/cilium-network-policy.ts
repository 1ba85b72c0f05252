/**
 * CiliumNetworkPolicy (cilium.io/v2). The field schema lives with the other
 * policy schemas (src/policy/api/schema.ts); this module is the one place it
 * is parsed, schema then the semantic checks of src/policy/api/validate.ts.
 */
import { ciliumNetworkPolicy as CiliumNetworkPolicySchema, type CiliumNetworkPolicySpec } from '../policy/api/schema.js';
import { validateDocument } from '../policy/api/validate.js';
import { defineKind, type KindModule } from './kind.js';

export type CiliumNetworkPolicy = CiliumNetworkPolicySpec;

export const ciliumNetworkPolicy: KindModule<'CiliumNetworkPolicy', CiliumNetworkPolicy> = defineKind({
  kind: 'CiliumNetworkPolicy',
  apiVersions: ['cilium.io/v2'],
  scope: 'namespaced',
  schema: CiliumNetworkPolicySchema,
  check: (doc) => validateDocument({ kind: 'CiliumNetworkPolicy', doc }),
});
