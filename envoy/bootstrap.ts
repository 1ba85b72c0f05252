/**
 * Bootstrap for the node's one Envoy. Envoy learns everything else over ADS
 * from meshd; the bootstrap only says who the node is, where meshd's xDS
 * server is (a unix socket by default), where the admin API listens (a unix
 * socket or loopback only, never a routable address), the overload limits,
 * and the cluster through which Envoy sends access logs to meshd (gRPC ALS).
 *
 *   const b = buildBootstrap({ nodeId: 'node-a', xds: { unix: '/run/meshd/xds.sock' },
 *                               admin: { unix: '/run/meshd/envoy-admin.sock' } });
 *   writeFileSync(path, JSON.stringify(b));
 */
import { z } from 'zod';

export const XDS_CLUSTER = 'meshd-xds';
export const ALS_CLUSTER = 'meshd-als';

const endpointSchema = z.union([
  z.object({ unix: z.string().min(1) }).strict(),
  z
    .object({
      host: z.union([z.literal('127.0.0.1'), z.literal('::1'), z.literal('localhost')]),
      port: z.number().int().min(0).max(65535),
    })
    .strict(),
]);
export type LocalEndpoint = z.infer<typeof endpointSchema>;

export const bootstrapOptionsSchema = z
  .object({
    nodeId: z.string().min(1),
    cluster: z.string().min(1).default('meshd'),
    xds: endpointSchema,
    /** 'sotw' = StreamAggregatedResources, 'delta' = DeltaAggregatedResources. */
    xdsMode: z.enum(['sotw', 'delta']).default('delta'),
    admin: endpointSchema,
    /** Where Envoy sends access logs (gRPC ALS); defaults to the xDS endpoint. */
    als: endpointSchema.optional(),
    overload: z
      .object({
        maxHeapBytes: z.number().int().positive().default(1024 * 1024 * 1024),
        maxDownstreamConnections: z.number().int().positive().default(50_000),
      })
      .strict()
      .default({ maxHeapBytes: 1024 * 1024 * 1024, maxDownstreamConnections: 50_000 }),
    /** How long Envoy waits for the first CDS/LDS answer before it reports ready anyway. */
    initialFetchTimeoutMs: z.number().int().positive().default(5_000),
  })
  .strict();
export type BootstrapOptions = z.input<typeof bootstrapOptionsSchema>;

function address(ep: LocalEndpoint): Record<string, unknown> {
  if ('unix' in ep) return { pipe: { path: ep.unix } };
  return { socket_address: { address: ep.host === 'localhost' ? '127.0.0.1' : ep.host, port_value: ep.port } };
}

function grpcCluster(name: string, ep: LocalEndpoint): Record<string, unknown> {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: address(ep) } }] }] },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: { connection_keepalive: { interval: '30s', timeout: '5s' } } },
      },
    },
  };
}

/** Envoy bootstrap (v3, JSON shape). Throws a zod error naming the bad option. */
export function buildBootstrap(input: BootstrapOptions): Record<string, unknown> {
  const o = bootstrapOptionsSchema.parse(input);
  const fetchTimeout = `${o.initialFetchTimeoutMs / 1000}s`;
  const adsSource = { ads: {}, resource_api_version: 'V3', initial_fetch_timeout: fetchTimeout };
  return {
    node: { id: o.nodeId, cluster: o.cluster },
    admin: { address: address(o.admin) },
    dynamic_resources: {
      ads_config: {
        api_type: o.xdsMode === 'delta' ? 'DELTA_GRPC' : 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER } }],
        set_node_on_first_message_only: true,
      },
      cds_config: adsSource,
      lds_config: adsSource,
    },
    static_resources: {
      clusters: [grpcCluster(XDS_CLUSTER, o.xds), grpcCluster(ALS_CLUSTER, o.als ?? o.xds)],
    },
    overload_manager: {
      refresh_interval: '0.25s',
      resource_monitors: [
        {
          name: 'envoy.resource_monitors.fixed_heap',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig',
            max_heap_size_bytes: o.overload.maxHeapBytes,
          },
        },
        {
          name: 'envoy.resource_monitors.global_downstream_max_connections',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig',
            max_active_downstream_connections: o.overload.maxDownstreamConnections,
          },
        },
      ],
      actions: [
        {
          name: 'envoy.overload_actions.shrink_heap',
          triggers: [{ name: 'envoy.resource_monitors.fixed_heap', threshold: { value: 0.95 } }],
        },
        {
          name: 'envoy.overload_actions.stop_accepting_requests',
          triggers: [{ name: 'envoy.resource_monitors.fixed_heap', threshold: { value: 0.98 } }],
        },
      ],
    },
  };
}
