/**
 * The HTTP connection manager for one filter chain: RBAC from the policy,
 * then the router to the original destination (through the cluster that
 * marks the upstream with the client's identity). Denied requests are answered
 * locally with 403 and the body "Access denied", as Cilium's proxy answers.
 * HTTP/1.1 (WebSocket upgrades included) and HTTP/2 with prior knowledge (gRPC included) are detected on
 * the same port (codec AUTO); the upstream speaks what the client spoke.
 *
 * Retries: an idempotent request (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE,
 * PUT, DELETE) whose upstream connection could not be made, was reset, or
 * refused the stream before any response header is sent again, up to
 * `retries` times. The case this is for: Envoy reuses a pooled upstream
 * connection at the instant the server closes it for being idle (Node's HTTP
 * server after 5 s), and the request meets the close; without a retry the
 * client gets a 503 "reset reason: connection termination" for a request
 * the server never processed. Upstream 5xx answers are not retried (unlike
 * Cilium's `5xx` policy): the server answered, and its answer is passed on.
 * A request with another method is never sent twice.
 */
import { ALS_CLUSTER } from '../../envoy/bootstrap.js';
import { ORIGINAL_DST_HEADER } from './cluster.js';

type Json = Record<string, unknown>;

export const ACCESS_DENIED_BODY = 'Access denied';

export interface HcmInput {
  statPrefix: string;
  /** RBAC filters, applied in order (an egress chain toward a local destination with ingress L7 rules has two). */
  rbac: Json[];
  /** Upstream cluster: the client identity's original-destination cluster (cluster.ts). */
  cluster: string;
  /** Send access logs to meshd over gRPC ALS. */
  accessLog?: boolean;
  /** Retries of an idempotent request on a failed or reset upstream connection (0 or absent: none). */
  retries?: number;
}

/** The methods RFC 9110 §9.2.2 calls idempotent: a retry cannot do what the first attempt did not. */
export const IDEMPOTENT_METHODS = ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'] as const;

function retryPolicy(retries: number): Json {
  return {
    retry_on: 'connect-failure,reset,refused-stream',
    num_retries: retries,
    retriable_request_headers: [{ name: ':method', string_match: { safe_regex: { regex: IDEMPOTENT_METHODS.join('|') } } }],
  };
}

export function buildHttpConnectionManager(i: HcmInput): Json {
  const route: Json = { cluster: i.cluster, timeout: '0s' };
  if (i.retries !== undefined && i.retries > 0) route.retry_policy = retryPolicy(i.retries);
  const hcm: Json = {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: i.statPrefix,
    codec_type: 'AUTO',
    normalize_path: true,
    merge_slashes: true,
    path_with_escaped_slashes_action: 'UNESCAPE_AND_REDIRECT',
    use_remote_address: false,
    // WebSocket upgrades of allowed requests are relayed, as Cilium's proxy relays them (without this
    // Envoy answers every upgrade with 403, denied or not).
    upgrade_configs: [{ upgrade_type: 'websocket' }],
    // A draining HTTP/2 connection gets its final GOAWAY (streams after it are refused, which a client
    // may retry) 1 s after the first, within the listener's drain time (2 s) that ends in closing it:
    // the last second is for the streams in flight (Envoy's default, 5 s, outlasted the drain time).
    drain_timeout: '1s',
    route_config: {
      name: i.statPrefix,
      virtual_hosts: [
        {
          name: 'original-destination',
          domains: ['*'],
          routes: [
            {
              match: { prefix: '/' },
              route,
              // Where the client was going: the accepted socket's own address (bpf_sk_assign keeps it).
              // Overwrites anything the client sent under that name (the upstream receives it: its own address).
              request_headers_to_add: [{ header: { key: ORIGINAL_DST_HEADER, value: '%DOWNSTREAM_LOCAL_ADDRESS%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
            },
          ],
        },
      ],
    },
    http_filters: [
      ...i.rbac.map((typed_config) => ({ name: 'envoy.filters.http.rbac', typed_config })),
      { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
    ],
    local_reply_config: {
      mappers: [
        {
          filter: { status_code_filter: { comparison: { op: 'EQ', value: { default_value: 403, runtime_key: 'meshd.access_denied_status' } } } },
          body: { inline_string: ACCESS_DENIED_BODY },
          body_format_override: { text_format_source: { inline_string: '%LOCAL_REPLY_BODY%' }, content_type: 'text/plain' },
        },
      ],
    },
  };
  if (i.accessLog) {
    hcm.access_log = [
      {
        name: 'envoy.access_loggers.http_grpc',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig',
          common_config: {
            log_name: i.statPrefix,
            transport_api_version: 'V3',
            grpc_service: { envoy_grpc: { cluster_name: ALS_CLUSTER } },
          },
        },
      },
    ];
  }
  return hcm;
}
