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
 *
 * Pooled upstream connections are closed after `idleTimeoutS` without a
 * request (Cilium's `envoy.idleTimeoutDurationSeconds`, default 60 s;
 * Envoy's own default is an hour). A server that closes idle connections
 * sooner (Node's HTTP server: 5 s) still races Envoy reusing one; the
 * routes' retry policy (http-connection-manager.ts) covers that race.
 */
import { proxyUpstreamMark } from '../datapath/maps.js';

export const ORIGINAL_DST_CLUSTER_PREFIX = 'meshd-original-dst';
/** Set by the route from %DOWNSTREAM_LOCAL_ADDRESS% (never taken from the client: overwritten). */
export const ORIGINAL_DST_HEADER = 'x-meshd-original-dst';

/** SOL_SOCKET / SO_MARK on Linux. */
const SOL_SOCKET = 1;
const SO_MARK = 36;

/** How the proxy treats its upstream HTTP connections (agent config: `envoy.idleTimeoutDurationSeconds`, `envoy.httpRetryCount`). */
export interface UpstreamHttpOptions {
  /** Seconds a pooled upstream connection may stay idle before Envoy closes it. */
  idleTimeoutS: number;
  /** Retries of an idempotent request whose upstream connection failed or reset before any response (0: none). */
  retries: number;
}

/** Cilium's defaults for the same keys. */
export const DEFAULT_UPSTREAM_HTTP: UpstreamHttpOptions = { idleTimeoutS: 60, retries: 3 };

/** The cluster's HTTP protocol options: what the client spoke, and the upstream idle timeout. */
export function upstreamHttpProtocolOptions(idleTimeoutS: number, protocol: Record<string, unknown>): Record<string, unknown> {
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      common_http_protocol_options: { idle_timeout: `${idleTimeoutS}s` },
      ...protocol,
    },
  };
}

export function originalDstClusterName(identity: number): string {
  return `${ORIGINAL_DST_CLUSTER_PREFIX}-id${identity}`;
}

export function buildOriginalDstCluster(identity: number, idleTimeoutS = DEFAULT_UPSTREAM_HTTP.idleTimeoutS): Record<string, unknown> {
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
    typed_extension_protocol_options: upstreamHttpProtocolOptions(idleTimeoutS, { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} } }),
  };
}
