/**
 * NetworkPolicy (networking.k8s.io/v1). The field schema lives with the other
 * policy schemas (src/policy/api/schema.ts); this module is the one place it
 * is parsed, schema then the semantic checks of src/policy/api/validate.ts.
 */
import { networkPolicy as NetworkPolicySchema, type NetworkPolicySpec } from '../policy/api/schema.js';
import { validateDocument } from '../policy/api/validate.js';
import type { KindModule } from './kind.js';
import { parseWith } from './problem.js';

export type NetworkPolicy = NetworkPolicySpec;

export const networkPolicy: KindModule<'NetworkPolicy', NetworkPolicy> = {
  kind: 'NetworkPolicy',
  apiVersions: ['networking.k8s.io/v1'],
  scope: 'namespaced',
  schema: NetworkPolicySchema,
  parse: (input) => parseWith(NetworkPolicySchema, input, (doc) => validateDocument({ kind: 'NetworkPolicy', doc })),
};
