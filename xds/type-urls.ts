/**
 * The five xDS resource types meshd serves, their type URLs, the key each is
 * named by, and the order responses go out in.
 *
 * Order matters for make-before-break (xDS protocol, "eventual consistency
 * considerations"): a cluster and its endpoints must exist before a listener
 * or route that uses them, and a cluster may only go away after the listeners
 * and routes that used it were replaced.
 */
export const TYPE_URL = {
  clusters: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoints: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listeners: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  routes: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  secrets: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;

export type ResourceKind = keyof typeof TYPE_URL;
export type TypeUrl = (typeof TYPE_URL)[ResourceKind];

/** Make-before-break send order: CDS, EDS, LDS, RDS, SDS. */
export const KIND_ORDER: readonly ResourceKind[] = ['clusters', 'endpoints', 'listeners', 'routes', 'secrets'];

const KIND_BY_URL = new Map<string, ResourceKind>(KIND_ORDER.map((k) => [TYPE_URL[k], k]));

export function kindOf(typeUrl: string): ResourceKind | undefined {
  return KIND_BY_URL.get(typeUrl);
}

export function isTypeUrl(s: string): s is TypeUrl {
  return KIND_BY_URL.has(s);
}

/** Field that names a resource of this kind (Envoy keys load assignments by cluster name). */
export const NAME_FIELD: Record<ResourceKind, string> = {
  clusters: 'name',
  endpoints: 'cluster_name',
  listeners: 'name',
  routes: 'name',
  secrets: 'name',
};

/** Protobuf full name behind a type URL ("type.googleapis.com/x.y.Z" → "x.y.Z"). */
export function messageNameOf(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf('/');
  return slash >= 0 ? typeUrl.slice(slash + 1) : typeUrl;
}

/** Kinds whose SotW subscription with no names means "everything" (the rest name what they want). */
export const WILDCARD_KINDS: ReadonlySet<ResourceKind> = new Set(['clusters', 'listeners']);

/**
 * Kinds whose removals wait until the kinds listed have been answered (ACK or
 * NACK) at the current snapshot: a cluster disappears only after listeners and
 * routes stopped pointing at it; endpoints only after their cluster went.
 */
export const REMOVAL_WAITS_FOR: Partial<Record<ResourceKind, readonly ResourceKind[]>> = {
  clusters: ['listeners', 'routes'],
  endpoints: ['clusters', 'listeners', 'routes'],
};
