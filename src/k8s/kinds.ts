/**
 * The registry of Kubernetes kinds meshd reads. Adding a kind (Gateway API,
 * LB IPAM pools, …) is one module beside this file and one line in `KINDS`;
 * `Resource` and `ResourceKind` follow from the registry.
 *
 *   const r = parseResource(json);          // dispatches on json.kind
 *   if (r.ok && r.value.kind === 'Pod') podIps(r.value);
 */
import { ciliumCidrGroup } from './cilium-cidr-group.js';
import { ciliumL2AnnouncementPolicy } from './cilium-l2-announcement-policy.js';
import { ciliumLbIpPool } from './cilium-lb-ip-pool.js';
import { ciliumClusterwideNetworkPolicy } from './cilium-clusterwide-network-policy.js';
import { ciliumNetworkPolicy } from './cilium-network-policy.js';
import { endpointSlice } from './endpoint-slice.js';
import { backendTlsPolicy } from './backend-tls-policy.js';
import { configMap } from './config-map.js';
import { gatewayClass } from './gateway-class.js';
import { gateway } from './gateway.js';
import { grpcRoute } from './grpc-route.js';
import { httpRoute } from './http-route.js';
import { referenceGrant } from './reference-grant.js';
import type { KindModule, Scope } from './kind.js';
import { namespace } from './namespace.js';
import { networkPolicy } from './network-policy.js';
import { node } from './node.js';
import { pod } from './pod.js';
import type { ParseResult } from './problem.js';
import { secret } from './secret.js';
import { service } from './service.js';

export const KINDS = {
  Pod: pod,
  Namespace: namespace,
  Node: node,
  Service: service,
  EndpointSlice: endpointSlice,
  NetworkPolicy: networkPolicy,
  CiliumNetworkPolicy: ciliumNetworkPolicy,
  CiliumClusterwideNetworkPolicy: ciliumClusterwideNetworkPolicy,
  CiliumCIDRGroup: ciliumCidrGroup,
  CiliumLoadBalancerIPPool: ciliumLbIpPool,
  CiliumL2AnnouncementPolicy: ciliumL2AnnouncementPolicy,
  Secret: secret,
  GatewayClass: gatewayClass,
  Gateway: gateway,
  HTTPRoute: httpRoute,
  GRPCRoute: grpcRoute,
  ReferenceGrant: referenceGrant,
  BackendTLSPolicy: backendTlsPolicy,
  ConfigMap: configMap,
} as const;

export type ResourceKind = keyof typeof KINDS;

type ParsedBy<M> = M extends KindModule<string, infer T> ? T : never;
/** Any parsed object meshd reads, discriminated by `kind`. */
export type Resource = { [K in ResourceKind]: ParsedBy<(typeof KINDS)[K]> }[ResourceKind];
/** The parsed object of one kind: `ResourceOf<'Pod'>` is `Pod`. */
export type ResourceOf<K extends ResourceKind> = Extract<Resource, { kind: K }>;

export function isResourceKind(kind: unknown): kind is ResourceKind {
  return typeof kind === 'string' && Object.hasOwn(KINDS, kind);
}

export const RESOURCE_KINDS: readonly ResourceKind[] = Object.keys(KINDS).filter(isResourceKind);

export function scopeOf(kind: ResourceKind): Scope {
  return KINDS[kind].scope;
}

/** Parses an object with the module of the kind it names; an unknown kind is a problem at `kind`. */
export function parseResource(input: unknown): ParseResult<Resource> {
  const kind = typeof input === 'object' && input !== null && 'kind' in input ? input.kind : undefined;
  if (!isResourceKind(kind)) {
    return { ok: false, problems: [{ path: ['kind'], code: 'UNKNOWN_KIND', message: `unsupported kind ${JSON.stringify(kind)} (${RESOURCE_KINDS.join(', ')})` }] };
  }
  return KINDS[kind].parse(input);
}

/** Identity of an object within its kind: namespace (namespaced kinds, "default" if unset) and name. */
export interface ResourceRef {
  kind: ResourceKind;
  namespace?: string;
  name: string;
}

export function refOf(r: Resource): ResourceRef {
  if (scopeOf(r.kind) === 'cluster') return { kind: r.kind, name: r.metadata.name };
  const namespace = 'namespace' in r.metadata ? r.metadata.namespace : undefined;
  return { kind: r.kind, namespace: namespace ?? 'default', name: r.metadata.name };
}

/** "Kind/namespace/name", or "Kind/name" for cluster-scoped objects. */
export type ResourceKey = string;

export function resourceKey(ref: ResourceRef): ResourceKey {
  return ref.namespace ? `${ref.kind}/${ref.namespace}/${ref.name}` : `${ref.kind}/${ref.name}`;
}
