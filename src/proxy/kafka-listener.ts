/**
 * Envoy resources for Kafka rules: a filter chain's network filters —
 * `envoy.filters.network.ext_proc` (every byte both ways through the agent's
 * Kafka processor, src/kafka/processor.ts) then `tcp_proxy` to the chain's
 * upstream cluster — and the STATIC cluster that reaches the processor over
 * its unix socket (HTTP/2, as gRPC needs).
 *
 * The chain names its rules with a policy key, sent as the initial metadata of
 * the processor stream; the processor looks the key's rules up per request.
 * Keys name (endpoint, direction, client identity, port), so a rule edit
 * changes the processor's table and not the listener: open connections are
 * not drained and the edit applies to their next request.
 *
 * `failure_mode_allow` stays false: without the processor (agent restarting)
 * a Kafka connection is closed, never passed unfiltered.
 */
import { POLICY_KEY_HEADER } from '../kafka/processor.js';

type Json = Record<string, unknown>;

export const KAFKA_PROCESSOR_CLUSTER = 'meshd-kafka-processor';

/** Per-message answer deadline of the filter; the processor answers in well under a millisecond. */
export const KAFKA_MESSAGE_TIMEOUT = '5s';

export function kafkaPolicyKey(endpointId: string, direction: string, remoteIdentity: number, port: number): string {
  return `${endpointId}/${direction}/id${remoteIdentity}/${port}`;
}

export function buildKafkaFilters(o: { policyKey: string; statPrefix: string; cluster: string }): Json[] {
  return [
    {
      name: 'envoy.filters.network.ext_proc',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.ext_proc.v3.NetworkExternalProcessor',
        grpc_service: { envoy_grpc: { cluster_name: KAFKA_PROCESSOR_CLUSTER }, initial_metadata: [{ key: POLICY_KEY_HEADER, value: o.policyKey }] },
        failure_mode_allow: false,
        processing_mode: { process_read: 'STREAMED', process_write: 'STREAMED' },
        message_timeout: KAFKA_MESSAGE_TIMEOUT,
        stat_prefix: o.statPrefix,
      },
    },
    {
      name: 'envoy.filters.network.tcp_proxy',
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: o.statPrefix, cluster: o.cluster },
    },
  ];
}

export function buildKafkaProcessorCluster(socketPath: string): Json {
  return {
    '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
    name: KAFKA_PROCESSOR_CLUSTER,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: { cluster_name: KAFKA_PROCESSOR_CLUSTER, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: socketPath } } } }] }] },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
  };
}
