/**
 * CiliumClusterwideNetworkPolicy (cilium.io/v2), cluster-scoped; the only
 * policy kind that may hold host policies (nodeSelector). Parsed here only,
 * from the schema in src/policy/api/schema.ts and the checks of validate.ts.
 */
import { ciliumClusterwideNetworkPolicy as Schema, type CiliumClusterwideNetworkPolicySpec } from '../policy/api/schema.js';
import { validateDocument } from '../policy/api/validate.js';
import { defineKind, type KindModule } from './kind.js';

export type CiliumClusterwideNetworkPolicy = CiliumClusterwideNetworkPolicySpec;

export const ciliumClusterwideNetworkPolicy: KindModule<'CiliumClusterwideNetworkPolicy', CiliumClusterwideNetworkPolicy> = defineKind({
  kind: 'CiliumClusterwideNetworkPolicy',
  apiVersions: ['cilium.io/v2'],
  scope: 'cluster',
  schema: Schema,
  check: (doc) => validateDocument({ kind: 'CiliumClusterwideNetworkPolicy', doc }),
});
