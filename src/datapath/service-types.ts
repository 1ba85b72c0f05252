/**
 * The Kubernetes Service and EndpointSlice fields the socket LB reads, as
 * plain objects (what `kubectl get -o json` gives), validated with zod at the
 * boundary. Fields the LB does not use pass through unchecked.
 *
 *   const r = parseService(obj);
 *   if (!r.ok) log(r.errors);          // ["spec.ports[0].port: must be 1..65535", ...]
 */
import { z } from 'zod';
import { ipFamily } from './lb/lb-maps.js';

const port = z.number().int().min(1, 'must be 1..65535').max(65535, 'must be 1..65535');
const protocol = z.enum(['TCP', 'UDP', 'SCTP']).default('TCP');
const ip = z.string().refine((s) => ipFamily(s) !== null, { message: 'not an IP address' });
const name = z.string().min(1).max(253);

export const ServicePortSchema = z.object({
  name: z.string().optional(),
  protocol,
  port,
  nodePort: port.optional(),
});

export const ServiceSchema = z.object({
  metadata: z.object({
    name,
    namespace: name.default('default'),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  spec: z.object({
    type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).default('ClusterIP'),
    clusterIP: z.union([z.literal('None'), z.literal(''), ip]).optional(),
    clusterIPs: z.array(z.union([z.literal('None'), ip])).optional(),
    externalIPs: z.array(ip).optional(),
    ports: z.array(ServicePortSchema).default([]),
    sessionAffinity: z.enum(['None', 'ClientIP']).default('None'),
    sessionAffinityConfig: z
      .object({ clientIP: z.object({ timeoutSeconds: z.number().int().min(1).max(86400).optional() }).optional() })
      .optional(),
  }),
  status: z
    .object({
      loadBalancer: z.object({ ingress: z.array(z.object({ ip: ip.optional() })).optional() }).optional(),
    })
    .optional(),
});
export type Service = z.infer<typeof ServiceSchema>;

export const EndpointSliceSchema = z.object({
  metadata: z.object({
    name,
    namespace: name.default('default'),
    labels: z.record(z.string(), z.string()).default({}),
  }),
  addressType: z.enum(['IPv4', 'IPv6', 'FQDN']),
  endpoints: z
    .array(
      z.object({
        addresses: z.array(z.string()).min(1),
        conditions: z
          .object({ ready: z.boolean().optional(), serving: z.boolean().optional(), terminating: z.boolean().optional() })
          .optional(),
      }),
    )
    .default([]),
  ports: z.array(z.object({ name: z.string().optional(), protocol, port })).default([]),
});
export type EndpointSlice = z.infer<typeof EndpointSliceSchema>;

/** The label that ties an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Per-service load-balancing algorithm, as Cilium's annotation. */
export const LB_ALGORITHM_ANNOTATION = 'service.cilium.io/lb-algorithm';
/** Kubernetes' default ClientIP affinity timeout. */
export const DEFAULT_AFFINITY_TIMEOUT = 10800;

export type Parsed<T> = { ok: true; value: T } | { ok: false; errors: string[] };

function issues(e: z.ZodError): string[] {
  return e.issues.map((i) => `${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') || '(root)'}: ${i.message}`);
}

export function parseService(input: unknown): Parsed<Service> {
  const r = ServiceSchema.safeParse(input);
  if (!r.success) return { ok: false, errors: issues(r.error) };
  const s = r.data;
  const errors: string[] = [];
  const seen = new Set<string>();
  s.spec.ports.forEach((p, i) => {
    const k = `${p.protocol}/${p.port}`;
    if (seen.has(k)) errors.push(`spec.ports[${i}]: duplicate ${k}`);
    seen.add(k);
  });
  const algo = s.metadata.annotations?.[LB_ALGORITHM_ANNOTATION];
  if (algo !== undefined && algo !== 'random' && algo !== 'maglev') {
    errors.push(`metadata.annotations.${LB_ALGORITHM_ANNOTATION}: must be "random" or "maglev", got "${algo}"`);
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: s };
}

export function parseEndpointSlice(input: unknown): Parsed<EndpointSlice> {
  const r = EndpointSliceSchema.safeParse(input);
  if (!r.success) return { ok: false, errors: issues(r.error) };
  const s = r.data;
  const errors: string[] = [];
  if (!s.metadata.labels[SERVICE_NAME_LABEL]) errors.push(`metadata.labels.${SERVICE_NAME_LABEL}: required`);
  if (s.addressType !== 'FQDN') {
    const want = s.addressType === 'IPv4' ? '4' : '6';
    s.endpoints.forEach((e, i) =>
      e.addresses.forEach((a, j) => {
        if (ipFamily(a) !== want) errors.push(`endpoints[${i}].addresses[${j}]: "${a}" is not an ${s.addressType} address`);
      }),
    );
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: s };
}

export const serviceName = (s: { metadata: { namespace: string; name: string } }): string => `${s.metadata.namespace}/${s.metadata.name}`;
