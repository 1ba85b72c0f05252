/** Namespace (core/v1): its labels feed namespace selectors. */
import { z } from 'zod';
import { defineKind, labelsSchema, typeMeta, type KindModule } from './kind.js';

const API_VERSIONS = ['v1'] as const;

export const NamespaceSchema = z.object({
  ...typeMeta('Namespace', API_VERSIONS),
  metadata: z.object({ name: z.string().min(1), labels: labelsSchema }),
});
export type Namespace = z.infer<typeof NamespaceSchema>;

export const namespace: KindModule<'Namespace', Namespace> = defineKind({ kind: 'Namespace', apiVersions: API_VERSIONS, scope: 'cluster', schema: NamespaceSchema });
