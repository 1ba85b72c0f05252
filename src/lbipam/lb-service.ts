/**
 * What LB IPAM and the L2 announcer read of a core/v1 Service: the fields
 * src/k8s/service.ts (the datapath's view) does not carry — load balancer
 * class, requested addresses, IP families, status conditions — parsed once
 * here from the API server's JSON, and the annotations Cilium defines.
 *
 *   const r = LbServiceSchema.safeParse(json);
 *   if (r.success) lbRequest(r.data);   // { families, requested, sharingKey, … }
 */
import { z } from 'zod';
import { canonicalIp, ipToBigint, type Family } from './ip-range.js';

/** Requested addresses, comma-separated (Cilium; `io.cilium/lb-ipam-ips` is its older alias). */
export const LBIPAM_IPS_ANNOTATION = 'lbipam.cilium.io/ips';
export const LBIPAM_IPS_ANNOTATION_ALIAS = 'io.cilium/lb-ipam-ips';
/** Services with the same key share addresses when their ports do not clash. */
export const LBIPAM_SHARING_KEY_ANNOTATION = 'lbipam.cilium.io/sharing-key';
export const LBIPAM_SHARING_KEY_ANNOTATION_ALIAS = 'io.cilium/lb-ipam-sharing-key';
/** Namespaces (comma-separated, `*` for all) a shared address may be shared with; required on both Services. */
export const LBIPAM_SHARING_CROSS_NAMESPACE_ANNOTATION = 'lbipam.cilium.io/sharing-cross-namespace';
export const LBIPAM_SHARING_CROSS_NAMESPACE_ANNOTATION_ALIAS = 'io.cilium/lb-ipam-sharing-cross-namespace';
/** The load balancer class L2 announcements serve; LB IPAM also serves Services without a class. */
export const L2_ANNOUNCER_CLASS = 'io.cilium/l2-announcer';
/** The Service condition LB IPAM owns (type, as Cilium's operator writes it). */
export const REQUEST_SATISFIED_CONDITION = 'cilium.io/IPAMRequestSatisfied';

export const ConditionSchema = z.object({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().default(''),
  message: z.string().default(''),
  observedGeneration: z.number().int().optional(),
  lastTransitionTime: z.string().optional(),
});
export type Condition = z.infer<typeof ConditionSchema>;

const PortSchema = z.object({ port: z.number().int(), protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP') });

export const LbServiceSchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().min(1).default('default'),
    labels: z.record(z.string(), z.string()).default({}),
    annotations: z.record(z.string(), z.string()).default({}),
    generation: z.number().int().optional(),
    creationTimestamp: z.string().optional(),
    resourceVersion: z.string().optional(),
  }),
  spec: z.object({
    type: z.string().default('ClusterIP'),
    loadBalancerClass: z.string().nullish(),
    loadBalancerIP: z.string().nullish(),
    externalIPs: z.array(z.string()).nullish(),
    ipFamilyPolicy: z.enum(['SingleStack', 'PreferDualStack', 'RequireDualStack']).nullish(),
    ipFamilies: z.array(z.enum(['IPv4', 'IPv6'])).nullish(),
    ports: z.array(PortSchema).nullish(),
  }),
  status: z
    .object({
      loadBalancer: z.object({ ingress: z.array(z.object({ ip: z.string().optional(), hostname: z.string().optional() }).loose()).nullish() }).loose().nullish(),
      conditions: z.array(ConditionSchema).nullish(),
    })
    .nullish(),
});
export type LbService = z.infer<typeof LbServiceSchema>;

export const serviceKey = (s: { metadata: { namespace: string; name: string } }): string => `${s.metadata.namespace}/${s.metadata.name}`;

const annotation = (s: LbService, key: string, alias: string): string | undefined => s.metadata.annotations[key] ?? s.metadata.annotations[alias];

/** Whether LB IPAM allocates for the Service: type LoadBalancer with no class, or the L2 announcer's. */
export function isLbIpamService(s: LbService): boolean {
  return s.spec.type === 'LoadBalancer' && ((s.spec.loadBalancerClass ?? undefined) === undefined || s.spec.loadBalancerClass === L2_ANNOUNCER_CLASS);
}

/** What a Service asks LB IPAM for, read from its spec and annotations. */
export interface LbRequest {
  key: string;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The families wanted, in order, and whether having only some of them still satisfies (PreferDualStack). */
  families: Family[];
  requireAll: boolean;
  /** Specific addresses (annotation, else spec.loadBalancerIP), canonical; `invalid` lists what did not parse. */
  requested: string[];
  invalid: string[];
  sharingKey: string | undefined;
  /** Namespaces a shared address may come from or go to (`*`: any); the Service's own namespace always. */
  shareWith: string[];
  /** "TCP/80" per port: two Services sharing an address must have none in common. */
  ports: string[];
  /** Order of creation (then name), so that older Services win contested addresses. */
  createdAt: string;
  /** The current status' addresses, adopted when still valid. */
  current: string[];
}

const list = (v: string | undefined): string[] => (v ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');

export function lbRequest(s: LbService): LbRequest {
  const policy = s.spec.ipFamilyPolicy ?? 'SingleStack';
  const declared: Family[] = (s.spec.ipFamilies ?? []).map((f) => (f === 'IPv6' ? 6 : 4));
  const families: Family[] = policy === 'SingleStack' ? [declared[0] ?? 4] : [...new Set<Family>([...declared, 4, 6])];
  const raw = [...list(annotation(s, LBIPAM_IPS_ANNOTATION, LBIPAM_IPS_ANNOTATION_ALIAS))];
  if (raw.length === 0 && s.spec.loadBalancerIP) raw.push(s.spec.loadBalancerIP);
  const requested = raw.filter((ip) => ipToBigint(ip) !== undefined).map(canonicalIp);
  return {
    key: serviceKey(s),
    namespace: s.metadata.namespace,
    name: s.metadata.name,
    labels: { ...s.metadata.labels, 'io.kubernetes.service.namespace': s.metadata.namespace, 'io.kubernetes.service.name': s.metadata.name },
    families,
    requireAll: policy !== 'PreferDualStack',
    requested,
    invalid: raw.filter((ip) => ipToBigint(ip) === undefined),
    sharingKey: annotation(s, LBIPAM_SHARING_KEY_ANNOTATION, LBIPAM_SHARING_KEY_ANNOTATION_ALIAS) || undefined,
    shareWith: [s.metadata.namespace, ...list(annotation(s, LBIPAM_SHARING_CROSS_NAMESPACE_ANNOTATION, LBIPAM_SHARING_CROSS_NAMESPACE_ANNOTATION_ALIAS))],
    ports: (s.spec.ports ?? []).map((p) => `${p.protocol}/${p.port}`),
    createdAt: s.metadata.creationTimestamp ?? '',
    current: (s.status?.loadBalancer?.ingress ?? []).flatMap((i) => (i.ip !== undefined && ipToBigint(i.ip) ? [canonicalIp(i.ip)] : [])),
  };
}
