/**
 * Service (core/v1): the fields the socket LB (frontends, affinity,
 * algorithm) and the policy engine (selector, ports for toServices) read.
 *
 *   const r = service.parse(json);   // problems e.g. { path: ['spec', 'ports', 1], code: 'DUPLICATE_PORT' }
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { defineKind, labelsSchema, typeMeta, type KindModule } from './kind.js';
import type { ResourceProblem } from './problem.js';

const API_VERSIONS = ['v1'] as const;

/** Label on the per-Gateway Service naming its Gateway (Gateway API's own label key; src/gateway/controller.ts sets it). */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

/** Per-service load-balancing algorithm, as Cilium's annotation. */
export const LB_ALGORITHM_ANNOTATION = 'service.cilium.io/lb-algorithm';
/** Kubernetes' default ClientIP affinity timeout. */
export const DEFAULT_AFFINITY_TIMEOUT = 10800;

export const portNumber = z.number().int().min(1, 'must be 1..65535').max(65535, 'must be 1..65535');
export const l4Protocol = z.enum(['TCP', 'UDP', 'SCTP']).default('TCP');
export const ipAddress = z.string().refine((s) => isIP(s) !== 0, { message: 'not an IP address' });
export const objectName = z.string().min(1).max(253);

export const ServicePortSchema = z.object({
  name: z.string().optional(),
  protocol: l4Protocol,
  port: portNumber,
  targetPort: z.union([z.number().int(), z.string()]).optional(),
  nodePort: portNumber.optional(),
});

export const ServiceSchema = z.object({
  ...typeMeta('Service', API_VERSIONS),
  metadata: z.object({
    name: objectName,
    namespace: objectName.default('default'),
    labels: labelsSchema,
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  spec: z.object({
    type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).default('ClusterIP'),
    selector: z.record(z.string(), z.string()).optional(),
    clusterIP: z.union([z.literal('None'), z.literal(''), ipAddress]).optional(),
    clusterIPs: z.array(z.union([z.literal('None'), ipAddress])).optional(),
    externalIPs: z.array(ipAddress).optional(),
    ports: z.array(ServicePortSchema).default([]),
    sessionAffinity: z.enum(['None', 'ClientIP']).default('None'),
    /** Local: clients outside the cluster reach only backends on the node they arrived at (none there: dropped). */
    externalTrafficPolicy: z.enum(['Cluster', 'Local', '']).optional(),
    sessionAffinityConfig: z
      .object({ clientIP: z.object({ timeoutSeconds: z.number().int().min(1).max(86400).optional() }).optional() })
      .optional(),
  }),
  status: z
    .object({
      loadBalancer: z.object({ ingress: z.array(z.object({ ip: ipAddress.optional() })).optional() }).optional(),
    })
    .optional(),
});
export type Service = z.infer<typeof ServiceSchema>;

function check(s: Service): ResourceProblem[] {
  const out: ResourceProblem[] = [];
  const seen = new Set<string>();
  s.spec.ports.forEach((p, i) => {
    const k = `${p.protocol}/${p.port}`;
    if (seen.has(k)) out.push({ path: ['spec', 'ports', i], code: 'DUPLICATE_PORT', message: `duplicate ${k}` });
    seen.add(k);
  });
  const algo = s.metadata.annotations?.[LB_ALGORITHM_ANNOTATION];
  if (algo !== undefined && algo !== 'random' && algo !== 'maglev') {
    out.push({ path: ['metadata', 'annotations', LB_ALGORITHM_ANNOTATION], code: 'INVALID_ANNOTATION', message: `must be "random" or "maglev", got "${algo}"` });
  }
  return out;
}

export const service: KindModule<'Service', Service> = defineKind({ kind: 'Service', apiVersions: API_VERSIONS, scope: 'namespaced', schema: ServiceSchema, check });

/** "namespace/name". */
export const serviceName = (s: { metadata: { namespace: string; name: string } }): string => `${s.metadata.namespace}/${s.metadata.name}`;

/** The service's cluster IPs ("None" — headless — has none). */
export function serviceClusterIps(s: Service): string[] {
  const ips = s.spec.clusterIPs ?? (s.spec.clusterIP ? [s.spec.clusterIP] : []);
  return ips.filter((ip) => ip !== 'None' && ip !== '');
}
