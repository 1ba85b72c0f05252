/**
 * The fields of Pods, Namespaces and Nodes the agent reads, validated at the
 * boundary (everything else passes through unchecked). Services and
 * EndpointSlices are validated by the socket LB's own schemas
 * (src/datapath/service-types.ts), policies by the policy loader.
 */
import { z } from 'zod';

const labels = z.record(z.string(), z.string()).default({});

export const NamespaceSchema = z.object({
  metadata: z.object({ name: z.string().min(1), labels }),
});

export const NodeSchema = z.object({
  metadata: z.object({ name: z.string().min(1), labels }),
  status: z
    .object({ addresses: z.array(z.object({ type: z.string(), address: z.string() })).default([]) })
    .default({ addresses: [] }),
});

const containerPort = z.object({
  name: z.string().optional(),
  containerPort: z.number().int().min(1).max(65535),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
});

export const PodSchema = z.object({
  metadata: z.object({ name: z.string().min(1), namespace: z.string().min(1).default('default'), labels }),
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

export function podNamedPorts(p: Pod): Array<{ name: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }> {
  return p.spec.containers.flatMap((c) => c.ports.filter((x) => x.name).map((x) => ({ name: x.name as string, port: x.containerPort, protocol: x.protocol })));
}

export function podIps(p: Pod): string[] {
  const ips = p.status.podIPs?.map((x) => x.ip) ?? [];
  if (ips.length === 0 && p.status.podIP) ips.push(p.status.podIP);
  return ips;
}

/** "path: message" for each problem of a failed parse. */
export function zodProblems(e: z.ZodError): Array<{ path: string; message: string }> {
  return e.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
}
