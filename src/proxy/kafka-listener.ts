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
import { Identity } from '../datapath/maps.js';
import { POLICY_KEY_HEADER } from '../kafka/processor.js';
import type { EndpointPolicy, KafkaRule, PolicyEntry } from '../policy/types.js';
import { buildOriginalDstCluster, originalDstClusterName } from './cluster.js';
import { buildFilterChain, buildListener } from './listener.js';

type Json = Record<string, unknown>;

export const KAFKA_PROCESSOR_CLUSTER = 'meshd-kafka-processor';

/** Per-message answer deadline of the filter; the processor answers in well under a millisecond. */
export const KAFKA_MESSAGE_TIMEOUT = '5s';

export function kafkaPolicyKey(endpointId: string, direction: string, remoteIdentity: number, port: number | string): string {
  return `${endpointId}/${direction}/id${remoteIdentity}/${port}`;
}

/**
 * The TCP path has no HTTP header to carry the original destination to the ORIGINAL_DST cluster,
 * and with bpf_sk_assign no listener filter "restores" it (there is no SO_ORIGINAL_DST to read):
 * the connection's own local address is put into the filter state the cluster reads instead.
 */
export const ORIGINAL_DST_FILTER_STATE = 'envoy.network.transport_socket.original_dst_address';

function originalDstFromLocalAddress(): Json {
  return {
    name: 'envoy.filters.network.set_filter_state',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config',
      on_new_connection: [{ object_key: ORIGINAL_DST_FILTER_STATE, format_string: { text_format_source: { inline_string: '%DOWNSTREAM_LOCAL_ADDRESS%' } } }],
    },
  };
}

export function buildKafkaFilters(o: { policyKey: string; statPrefix: string; cluster: string; originalDst?: boolean }): Json[] {
  return [
    ...(o.originalDst ? [originalDstFromLocalAddress()] : []),
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

/** The TCP upstream of a Kafka chain: the identity's ORIGINAL_DST cluster without the HTTP header lookup. */
export function tcpOriginalDstClusterName(identity: number): string {
  return `${originalDstClusterName(identity)}-tcp`;
}

export function buildTcpOriginalDstCluster(identity: number): Json {
  const { original_dst_lb_config: _header, typed_extension_protocol_options: _http, ...c } = buildOriginalDstCluster(identity);
  return { ...c, name: tcpOriginalDstClusterName(identity) };
}

export interface KafkaTranslateInput {
  endpoints: ReadonlyArray<{ policy: EndpointPolicy; ips: readonly string[] }>;
  identityIps: ReadonlyMap<number, readonly string[]>;
  port: number;
  bindAddress?: string;
  processorSocket: string;
}

export interface KafkaTranslateOutput {
  listeners: Json[];
  clusters: Json[];
  /** Endpoints that get an ingress redirect to the Kafka listener. */
  endpointIds: string[];
  /** Policy key → rules, for the processor. */
  policies: Map<string, KafkaRule[]>;
}

export const KAFKA_INGRESS_LISTENER = 'meshd-kafka-ingress';

const isKafkaRedirect = (e: PolicyEntry): boolean => e.verdict === 'REDIRECT' && e.l7?.kind === 'kafka';
const kafkaRules = (e: PolicyEntry | undefined): KafkaRule[] => (e?.l7?.kind === 'kafka' ? e.l7.rules : []);

/**
 * Ingress Kafka rules → one listener. Per local endpoint D and port (range) with Kafka rows:
 * one chain per client identity R that has its own row (source = R's addresses, rules = R's
 * row, upstream marked with R) and one chain for every other client (the wildcard row's rules,
 * or none: every request refused; upstream marked `world`). A single port is matched with
 * destination_port; a range is not matched by port (one such range per endpoint is assumed).
 */
export function translateKafkaIngress(input: KafkaTranslateInput): KafkaTranslateOutput {
  const policies = new Map<string, KafkaRule[]>();
  const chains: Json[] = [];
  const marks = new Set<number>();
  const endpointIds: string[] = [];
  const endpoints = [...input.endpoints].filter((e) => e.ips.length > 0).sort((a, b) => a.policy.endpointId.localeCompare(b.policy.endpointId));
  for (const d of endpoints) {
    const rows = d.policy.ingress.entries.filter(isKafkaRedirect);
    if (rows.length === 0) continue;
    const id = d.policy.endpointId;
    endpointIds.push(id);
    const ranges = [...new Map(rows.map((r) => [`${r.port}-${r.endPort}`, { port: r.port, endPort: r.endPort }])).values()].sort((a, b) => a.port - b.port);
    for (const range of ranges) {
      const here = rows.filter((r) => r.port === range.port && r.endPort === range.endPort);
      const portLabel = range.port === range.endPort ? String(range.port) : `${range.port}-${range.endPort}`;
      const destinationPort = range.port === range.endPort && range.port !== 0 ? range.port : undefined;
      const chain = (remote: number, sourceIps: readonly string[] | undefined, rules: KafkaRule[], mark: number): void => {
        const policyKey = kafkaPolicyKey(id, 'ingress', remote, portLabel);
        policies.set(policyKey, rules);
        marks.add(mark);
        const c = buildFilterChain({
          name: `${id}/ingress/kafka/${remote === 0 ? 'any' : `id${remote}`}/${portLabel}`,
          destinationIps: d.ips,
          ...(sourceIps ? { sourceIps } : {}),
          networkFilters: buildKafkaFilters({ originalDst: true, policyKey, statPrefix: `kafka_${id.replace(/[^A-Za-z0-9_]/g, '_')}_${remote}_${portLabel.replace('-', '_')}`, cluster: tcpOriginalDstClusterName(mark) }),
        });
        if (destinationPort !== undefined) (c.filter_chain_match as Json).destination_port = destinationPort;
        chains.push(c);
      };
      for (const r of here.filter((e) => e.remoteIdentity !== 0).sort((a, b) => a.remoteIdentity - b.remoteIdentity)) {
        const ips = input.identityIps.get(r.remoteIdentity) ?? [];
        if (ips.length === 0) continue; // no address carries this identity yet
        chain(r.remoteIdentity, ips, kafkaRules(r), r.remoteIdentity);
      }
      chain(0, undefined, kafkaRules(here.find((e) => e.remoteIdentity === 0)), Identity.WORLD);
    }
  }
  if (chains.length === 0) return { listeners: [], clusters: [], endpointIds, policies };
  const l: Parameters<typeof buildListener>[0] = { name: KAFKA_INGRESS_LISTENER, port: input.port, filterChains: chains };
  if (input.bindAddress !== undefined) l.bindAddress = input.bindAddress;
  const clusters = [...[...marks].sort((a, b) => a - b).map(buildTcpOriginalDstCluster), buildKafkaProcessorCluster(input.processorSocket)];
  return { listeners: [buildListener(l)], clusters, endpointIds, policies };
}
