/**
 * The upstream of every proxy listener: an ORIGINAL_DST cluster, so a request
 * goes where the client was going. With bpf_sk_assign the accepted socket's
 * local address already is that original destination (no SO_ORIGINAL_DST
 * needed), and Envoy's original_dst load balancer connects there.
 */
import { ORIGINAL_DST_CLUSTER } from './http-connection-manager.js';

export function buildOriginalDstCluster(): Record<string, unknown> {
  return {
    '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
    name: ORIGINAL_DST_CLUSTER,
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    connect_timeout: '2s',
    cleanup_interval: '30s',
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} },
      },
    },
  };
}
