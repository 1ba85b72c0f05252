/**
 * Gateway ports as Envoy listeners, apart from the L7-policy listeners (those
 * are transparent, on proxy ports, fed by bpf_sk_assign): a Gateway listener
 * binds the Gateway's own addresses with IP_FREEBIND, so it can be
 * configured before the address is routed to the node (LB IPAM assigns it,
 * the node routes it locally) and survives its coming and going.
 *
 * HTTP ports: one filter chain, whose route configuration holds every
 * listener of the port (virtual host per hostname). HTTPS ports: a TLS
 * inspector and one chain per listener, picked by SNI, terminating TLS with
 * the listener's certificates over SDS.
 */
import { ALS_CLUSTER } from '../../envoy/bootstrap.js';
import { sdsSecretConfig } from '../proxy/sds.js';
import type { ModelChain, ModelGateway, ModelPort } from './model.js';

type Json = Record<string, unknown>;

function hcm(c: ModelChain, accessLog: boolean): Json {
  const out: Json = {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: c.routeConfig.replace(/[^A-Za-z0-9_.-]/g, '_'),
    codec_type: 'AUTO',
    rds: { route_config_name: c.routeConfig, config_source: { ads: {}, resource_api_version: 'V3' } },
    // The Host header's port is not part of the name routes match on.
    strip_any_host_port: true,
    normalize_path: true,
    use_remote_address: true,
    // WebSocket upgrades pass through to the backend (Gateway API: HTTPRouteBackendProtocolWebSocket).
    upgrade_configs: [{ upgrade_type: 'websocket' }],
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
  };
  if (accessLog) {
    out.access_log = [
      {
        name: 'envoy.access_loggers.http_grpc',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig',
          common_config: { log_name: c.routeConfig, transport_api_version: 'V3', grpc_service: { envoy_grpc: { cluster_name: ALS_CLUSTER } } },
        },
      },
    ];
  }
  return out;
}

function chain(c: ModelChain, tls: boolean, accessLog: boolean): Json {
  const out: Json = {
    name: c.routeConfig,
    filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm(c, accessLog) }],
  };
  if (c.serverNames.length > 0) out.filter_chain_match = { server_names: c.serverNames };
  if (tls) {
    out.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
        common_tls_context: { tls_certificate_sds_secret_configs: c.certificates.map(sdsSecretConfig), alpn_protocols: ['h2', 'http/1.1'] },
      },
    };
  }
  return out;
}

export function buildGatewayListener(gw: ModelGateway, p: ModelPort, o: { accessLog: boolean }): Json {
  const [first, ...more] = gw.addresses;
  const sock = (address: string) => ({ socket_address: { address, port_value: p.port } });
  const l: Json = {
    '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
    name: p.listener,
    address: sock(first ?? '0.0.0.0'),
    ...(more.length > 0 ? { additional_addresses: more.map((a) => ({ address: sock(a) })) } : {}),
    freebind: true,
    filter_chains: p.chains.map((c) => chain(c, p.protocol === 'HTTPS', o.accessLog)),
    per_connection_buffer_limit_bytes: 1024 * 1024,
  };
  if (p.protocol === 'HTTPS') {
    l.listener_filters = [{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' } }];
  }
  return l;
}
