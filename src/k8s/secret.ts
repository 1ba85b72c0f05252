/**
 * Secret (core/v1), read for TLS interception only: the certificates that
 * policies name in terminatingTLS / originatingTLS (`{namespace, name}` with
 * keys such as `tls.crt`, `tls.key`, `ca.crt`). `data` values are base64 as
 * the API server returns them; `stringData` (manifests in the policy
 * directory may use it) is plain text and wins over `data` for the same key,
 * as the API server merges them.
 *
 *   const r = secret.parse(json);
 *   if (r.ok) secrets.set(`${ns}/${name}`, secretData(r.value));
 */
import { z } from 'zod';
import { defineKind, typeMeta, type KindModule } from './kind.js';
import type { ResourceProblem } from './problem.js';

const API_VERSIONS = ['v1'] as const;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Where TLS interception's Secrets are read by default: Cilium's tls.secretsNamespace.name. */
export const DEFAULT_SECRETS_NAMESPACE = 'cilium-secrets';

export const SecretSchema = z.object({
  ...typeMeta('Secret', API_VERSIONS),
  metadata: z.object({ name: z.string().min(1), namespace: z.string().min(1).optional() }),
  type: z.string().optional(),
  data: z.record(z.string(), z.string()).default({}),
  stringData: z.record(z.string(), z.string()).default({}),
});
export type Secret = z.infer<typeof SecretSchema>;

function check(s: Secret): ResourceProblem[] {
  return Object.entries(s.data)
    .filter(([, v]) => v.length % 4 !== 0 || !BASE64.test(v))
    .map(([k]) => ({ path: ['data', k], code: 'INVALID_VALUE', message: `data.${k} is not base64` }));
}

export const secret: KindModule<'Secret', Secret> = defineKind({ kind: 'Secret', apiVersions: API_VERSIONS, scope: 'namespaced', schema: SecretSchema, check });

/** Key → text (data decoded, stringData over it). */
export function secretData(s: Secret): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.data)) out[k] = Buffer.from(v, 'base64').toString('utf8');
  for (const [k, v] of Object.entries(s.stringData)) out[k] = v;
  return out;
}
