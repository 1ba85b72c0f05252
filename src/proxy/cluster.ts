/**
 * The upstreams of the proxy listeners: ORIGINAL_DST clusters, so a request
 * goes where the client was going. With bpf_sk_assign the accepted socket's
 * local address already is that original destination (no SO_ORIGINAL_DST
 * needed), and Envoy's original_dst load balancer connects there.
 *
 * One cluster per client identity: its upstream sockets carry
 * SO_MARK = proxyUpstreamMark(identity) (set before bind), so the
 * destination's datapath judges the upstream leg with the original client's
 * identity instead of the node's (docs/datapath.md, "identity by mark").
 * Connection pools are per cluster, so connections of different identities
 * are never shared.
 */
import { proxyUpstreamMark } from '../datapath/maps.js';

export const ORIGINAL_DST_CLUSTER_PREFIX = 'meshd-original-dst';
/** Set by the route from %DOWNSTREAM_LOCAL_ADDRESS% (never taken from the client: overwritten). */
export const ORIGINAL_DST_HEADER = 'x-meshd-original-dst';

/** SOL_SOCKET / SO_MARK on Linux. */
const SOL_SOCKET = 1;
const SO_MARK = 36;

export function originalDstClusterName(identity: number): string {
  return `${ORIGINAL_DST_CLUSTER_PREFIX}-id${identity}`;
}

export function buildOriginalDstCluster(identity: number): Record<string, unknown> {
  return {
    '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
    name: originalDstClusterName(identity),
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    connect_timeout: '2s',
    cleanup_interval: '30s',
    // The route sets this header to the downstream connection's local address (the original destination).
    original_dst_lb_config: { use_http_header: true, http_header_name: ORIGINAL_DST_HEADER },
    upstream_bind_config: {
      socket_options: [{ description: `SO_MARK identity ${identity}`, level: SOL_SOCKET, name: SO_MARK, int_value: proxyUpstreamMark(identity), state: 'STATE_PREBIND' }],
    },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} },
      },
    },
  };
}
