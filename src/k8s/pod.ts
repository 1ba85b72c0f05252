/**
 * Pod (core/v1): the labels, service account, named container ports and
 * addresses the policy engine reads. Everything else passes unchecked and is
 * dropped from the typed object.
 */
import { z } from 'zod';
import { defineKind, labelsSchema, typeMeta, type KindModule } from './kind.js';

const API_VERSIONS = ['v1'] as const;

const containerPort = z.object({
  name: z.string().optional(),
  containerPort: z.number().int().min(1).max(65535),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
});

export const PodSchema = z.object({
  ...typeMeta('Pod', API_VERSIONS),
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().min(1).default('default'),
    labels: labelsSchema,
    // The controlling owner names the Pod's workload in flows (src/observe/workload.ts).
    ownerReferences: z.array(z.object({ kind: z.string(), name: z.string(), controller: z.boolean().optional() })).optional(),
  }),
  spec: z
    .object({
      nodeName: z.string().optional(),
      serviceAccountName: z.string().optional(),
      containers: z.array(z.object({ name: z.string(), ports: z.array(containerPort).default([]) })).default([]),
    })
    .default({ containers: [] }),
  status: z.object({ podIPs: z.array(z.object({ ip: z.string() })).optional(), podIP: z.string().optional() }).default({}),
});
export type Pod = z.infer<typeof PodSchema>;

export const pod: KindModule<'Pod', Pod> = defineKind({ kind: 'Pod', apiVersions: API_VERSIONS, scope: 'namespaced', schema: PodSchema });

export interface NamedPort {
  name: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

/** The named container ports (what `toPorts: [{port: http}]` resolves against). */
export function podNamedPorts(p: Pod): NamedPort[] {
  return p.spec.containers.flatMap((c) => c.ports.flatMap((x) => (x.name ? [{ name: x.name, port: x.containerPort, protocol: x.protocol }] : [])));
}

/** status.podIPs, or the older single status.podIP. */
export function podIps(p: Pod): string[] {
  const ips = p.status.podIPs?.map((x) => x.ip) ?? [];
  if (ips.length === 0 && p.status.podIP) ips.push(p.status.podIP);
  return ips;
}
