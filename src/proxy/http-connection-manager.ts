/**
 * The HTTP connection manager for one filter chain: RBAC from the policy,
 * then the router to the original destination (through the cluster that
 * marks the upstream with the client's identity). Denied requests are answered
 * locally with 403 and the body "Access denied", as Cilium's proxy answers.
 * HTTP/1.1 (WebSocket upgrades included) and HTTP/2 with prior knowledge (gRPC included) are detected on
 * the same port (codec AUTO); the upstream speaks what the client spoke.
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
}

export function buildHttpConnectionManager(i: HcmInput): Json {
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
    route_config: {
      name: i.statPrefix,
      virtual_hosts: [
        {
          name: 'original-destination',
          domains: ['*'],
          routes: [
            {
              match: { prefix: '/' },
              route: { cluster: i.cluster, timeout: '0s' },
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
