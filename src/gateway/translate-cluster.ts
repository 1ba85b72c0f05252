/**
 * Gateway backends as Envoy clusters: one EDS cluster per Service port,
 * balanced by Envoy over the ready endpoints of the Service's
 * EndpointSlices (the ClusterLoadAssignment travels over EDS, so endpoints
 * change without a cluster change). Upstream sockets carry SO_MARK with the
 * reserved `ingress` identity, so the destination pod's policy judges the
 * Gateway's traffic as Cilium's `ingress` entity (docs/datapath.md,
 * "identity by mark").
 */
import { proxyUpstreamMark } from '../datapath/abi.js';
import { ReservedIdentity } from '../identity/reserved.js';
import type { ModelCluster } from './model.js';

type Json = Record<string, unknown>;

/** SOL_SOCKET / SO_MARK on Linux. */
const SOL_SOCKET = 1;
const SO_MARK = 36;

export function buildGatewayCluster(c: ModelCluster): Json {
  const cluster: Json = {
    '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
    name: c.name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: c.name },
    connect_timeout: '5s',
    lb_policy: 'ROUND_ROBIN',
    upstream_bind_config: {
      source_address: { address: '0.0.0.0', port_value: 0 },
      socket_options: [{ description: 'SO_MARK identity ingress', level: SOL_SOCKET, name: SO_MARK, int_value: proxyUpstreamMark(ReservedIdentity.ingress), state: 'STATE_PREBIND' }],
    },
  };
  if (c.tls) {
    // BackendTLSPolicy: TLS to the backend, its certificate checked against the CA for the policy's hostname.
    const ca = 'pem' in c.tls.ca ? { inline_string: c.tls.ca.pem } : { filename: c.tls.ca.file };
    cluster.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        sni: c.tls.sni,
        common_tls_context: { validation_context: { trusted_ca: ca, match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: c.tls.sni } }] } },
      },
    };
  }
  if (c.http2) {
    cluster.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    };
  }
  return cluster;
}

export function buildLoadAssignment(c: ModelCluster): Json {
  return {
    '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
    cluster_name: c.name,
    endpoints: c.endpoints.length === 0 ? [] : [{ lb_endpoints: c.endpoints.map((e) => ({ endpoint: { address: { socket_address: { address: e.ip, port_value: e.port } } } })) }],
  };
}
