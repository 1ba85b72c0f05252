/** Node (core/v1): labels (node selectors) and addresses (the host and remote-node identities). */
import { z } from 'zod';
import { defineKind, labelsSchema, typeMeta, type KindModule } from './kind.js';

const API_VERSIONS = ['v1'] as const;

export const NodeSchema = z.object({
  ...typeMeta('Node', API_VERSIONS),
  metadata: z.object({ name: z.string().min(1), labels: labelsSchema }),
  status: z
    .object({ addresses: z.array(z.object({ type: z.string(), address: z.string() })).default([]) })
    .default({ addresses: [] }),
});
export type Node = z.infer<typeof NodeSchema>;

export const node: KindModule<'Node', Node> = defineKind({ kind: 'Node', apiVersions: API_VERSIONS, scope: 'cluster', schema: NodeSchema });

/** InternalIP and ExternalIP addresses (not Hostname / InternalDNS). */
export function nodeIps(n: Node): string[] {
  return n.status.addresses.filter((a) => a.type.endsWith('IP')).map((a) => a.address);
}
