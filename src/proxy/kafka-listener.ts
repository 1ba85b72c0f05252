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
import { KAFKA_MAX_RANGE_PORTS } from '../policy/l7-match.js';
import type { Direction, EndpointPolicy, KafkaRule, PolicyEntry } from '../policy/types.js';
import { buildOriginalDstCluster, originalDstClusterName } from './cluster.js';
import { buildFilterChain, buildListener } from './listener.js';
import { cidrs } from './rbac.js';

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
  ports: { ingress: number; egress: number };
  bindAddress?: string;
  processorSocket: string;
}

export interface KafkaTranslateOutput {
  listeners: Json[];
  clusters: Json[];
  /** Endpoints (and direction) that get a redirect to a Kafka listener. */
  redirects: Array<{ endpointId: string; direction: Direction }>;
  /** Policy key → rules, for the processor. */
  policies: Map<string, KafkaRule[]>;
  /** Rows no chain can express (a port range wider than KAFKA_MAX_RANGE_PORTS, any port): their flows stay closed. */
  unsupported: Array<{ endpointId: string; direction: Direction; derivedFrom: string[] }>;
}

export const KAFKA_INGRESS_LISTENER = 'meshd-kafka-ingress';
export const KAFKA_EGRESS_LISTENER = 'meshd-kafka-egress';

/*
 * A chain matches one destination port (Envoy's filter_chain_match has no port ranges): a rule's
 * range becomes one chain per port, up to KAFKA_MAX_RANGE_PORTS ports; a wider range (or a rule on
 * every port) is refused when the policy is loaded (src/policy/api/validate.ts) and reported
 * unsupported here.
 */

/** The ports of a Kafka row's chains, or null when the row cannot be expressed as chains. */
export function kafkaRowPorts(e: Pick<PolicyEntry, 'port' | 'endPort'>): number[] | null {
  if (e.port === 0) return null;
  const end = Math.max(e.endPort, e.port);
  if (end - e.port + 1 > KAFKA_MAX_RANGE_PORTS) return null;
  return Array.from({ length: end - e.port + 1 }, (_, i) => e.port + i);
}

const isKafkaRedirect = (e: PolicyEntry): boolean => e.verdict === 'REDIRECT' && e.l7?.kind === 'kafka';
const kafkaRules = (e: PolicyEntry | undefined): KafkaRule[] => (e?.l7?.kind === 'kafka' ? e.l7.rules : []);
const safeStat = (s: string): string => s.replace(/[^A-Za-z0-9_]/g, '_');

/** An endpoint's Kafka rows in one direction by port: remote identity → row (ranges are disjoint per identity). */
function rowsByPort(entries: readonly PolicyEntry[], unsupported: () => void): Map<number, Map<number, PolicyEntry>> {
  const out = new Map<number, Map<number, PolicyEntry>>();
  for (const e of entries.filter(isKafkaRedirect)) {
    const ports = kafkaRowPorts(e);
    if (ports === null) {
      unsupported();
      continue;
    }
    for (const p of ports) {
      const m = out.get(p) ?? new Map<number, PolicyEntry>();
      if (!m.has(e.remoteIdentity)) m.set(e.remoteIdentity, e);
      out.set(p, m);
    }
  }
  return out;
}

interface ChainSpec {
  name: string;
  port: number;
  destinationIps?: readonly string[];
  sourceIps?: readonly string[];
  /** Every key's rules must allow a request (an egress chain into a local endpoint with ingress rules). */
  keys: string[];
  mark: number;
}

/**
 * Kafka rules → Envoy listeners. A chain always matches one destination port; its policy keys
 * are sent to the processor (space-separated) in the stream's initial metadata.
 *
 * Ingress (`meshd-kafka-ingress`), per local endpoint D and port: one chain per client identity R
 * that has its own row (source = R's addresses, upstream marked with R) and one for every other
 * client (the wildcard row's rules, or none: every request refused; upstream marked `world`).
 *
 * Egress (`meshd-kafka-egress`), per local client S and port: one chain per destination identity
 * R that any client has a row for at that port (destination = R's addresses, source = S's; rules
 * = S's row for R, else S's wildcard row), one chain for every other destination (S's wildcard
 * row), and one per local endpoint D with ingress Kafka rules at that port (destination = D,
 * source = S; S's egress rules and D's ingress rules for S's identity must both allow: the
 * datapath redirects such a connection once, at egress). Envoy picks the most specific
 * destination first and only then the source, so every client gets a chain at every destination
 * prefix used at that port. Upstreams are marked with S's identity. The destination is the
 * connection's own local address (the original destination) on both sides.
 */
export function translateKafka(input: KafkaTranslateInput): KafkaTranslateOutput {
  const policies = new Map<string, KafkaRule[]>();
  const marks = new Set<number>();
  const redirects: KafkaTranslateOutput['redirects'] = [];
  const unsupported: KafkaTranslateOutput['unsupported'] = [];
  const endpoints = [...input.endpoints].filter((e) => e.ips.length > 0).sort((a, b) => a.policy.endpointId.localeCompare(b.policy.endpointId));
  const ipsOf = (id: number): readonly string[] => input.identityIps.get(id) ?? [];
  const byPort = (ep: (typeof endpoints)[number], direction: Direction): Map<number, Map<number, PolicyEntry>> => {
    const entries = ep.policy[direction].entries;
    return rowsByPort(entries, () => {
      if (!unsupported.some((u) => u.endpointId === ep.policy.endpointId && u.direction === direction)) {
        const derivedFrom = [...new Set(entries.filter((e) => isKafkaRedirect(e) && kafkaRowPorts(e) === null).flatMap((e) => e.derivedFrom))].sort();
        unsupported.push({ endpointId: ep.policy.endpointId, direction, derivedFrom });
      }
    });
  };
  const key = (endpointId: string, direction: Direction, remote: number, port: number, rules: KafkaRule[]): string => {
    const k = kafkaPolicyKey(endpointId, direction, remote, port);
    policies.set(k, rules);
    return k;
  };

  // Ingress.
  const ingress: ChainSpec[] = [];
  const ingressRows = new Map<string, Map<number, Map<number, PolicyEntry>>>();
  for (const d of endpoints) {
    const rows = byPort(d, 'ingress');
    if (rows.size === 0) continue;
    const id = d.policy.endpointId;
    ingressRows.set(id, rows);
    redirects.push({ endpointId: id, direction: 'ingress' });
    for (const port of [...rows.keys()].sort((a, b) => a - b)) {
      const here = rows.get(port) ?? new Map<number, PolicyEntry>();
      for (const r of [...here.keys()].filter((r) => r !== 0).sort((a, b) => a - b)) {
        if (ipsOf(r).length === 0) continue; // no address carries this identity yet
        ingress.push({ name: `${id}/ingress/kafka/id${r}/${port}`, port, destinationIps: d.ips, sourceIps: ipsOf(r), keys: [key(id, 'ingress', r, port, kafkaRules(here.get(r)))], mark: r });
      }
      ingress.push({ name: `${id}/ingress/kafka/any/${port}`, port, destinationIps: d.ips, keys: [key(id, 'ingress', 0, port, kafkaRules(here.get(0)))], mark: Identity.WORLD });
    }
  }

  // Egress.
  const egressOf = new Map<string, Map<number, Map<number, PolicyEntry>>>();
  for (const s of endpoints) {
    const rows = byPort(s, 'egress');
    if (rows.size === 0) continue;
    egressOf.set(s.policy.endpointId, rows);
    redirects.push({ endpointId: s.policy.endpointId, direction: 'egress' });
  }
  const egress = new Map<string, ChainSpec>();
  const add = (c: ChainSpec): void => {
    const norm = (ips: readonly string[] | undefined): string => JSON.stringify(cidrs(ips ?? []).sort((a, b) => a.address_prefix.localeCompare(b.address_prefix) || a.prefix_len - b.prefix_len));
    const k = `${c.port}|${norm(c.destinationIps)}|${norm(c.sourceIps)}`;
    const prev = egress.get(k);
    if (prev) prev.keys.push(...c.keys.filter((x) => !prev.keys.includes(x)));
    else egress.set(k, c);
  };
  const remotesAt = new Map<number, Set<number>>();
  for (const rows of egressOf.values()) {
    for (const [port, m] of rows) for (const r of m.keys()) if (r !== 0 && ipsOf(r).length > 0) remotesAt.set(port, (remotesAt.get(port) ?? new Set()).add(r));
  }
  for (const s of endpoints) {
    const rows = egressOf.get(s.policy.endpointId);
    if (!rows) continue;
    const id = s.policy.endpointId;
    const me = s.policy.identity;
    for (const port of [...rows.keys()].sort((a, b) => a - b)) {
      const here = rows.get(port) ?? new Map<number, PolicyEntry>();
      const rowFor = (r: number): { remote: number; row: PolicyEntry } | undefined => {
        const own = here.get(r);
        if (own) return { remote: r, row: own };
        const any = here.get(0);
        return any ? { remote: 0, row: any } : undefined;
      };
      const egressKey = (x: { remote: number; row: PolicyEntry }): string => key(id, 'egress', x.remote, port, kafkaRules(x.row));
      for (const r of [...(remotesAt.get(port) ?? [])].sort((a, b) => a - b)) {
        const x = rowFor(r);
        if (x) add({ name: `${id}/egress/kafka/id${r}/${port}`, port, destinationIps: ipsOf(r), sourceIps: s.ips, keys: [egressKey(x)], mark: me });
      }
      const any = here.get(0);
      if (any) add({ name: `${id}/egress/kafka/any/${port}`, port, sourceIps: s.ips, keys: [egressKey({ remote: 0, row: any })], mark: me });
      for (const d of endpoints) {
        const dRows = ingressRows.get(d.policy.endpointId)?.get(port);
        const x = rowFor(d.policy.identity);
        if (!dRows || !x || d.policy.endpointId === id) continue;
        const ingressKey = key(d.policy.endpointId, 'ingress', me, port, kafkaRules(dRows.get(me) ?? dRows.get(0)));
        add({ name: `${id}/egress/kafka/to/${d.policy.endpointId}/${port}`, port, destinationIps: d.ips, sourceIps: s.ips, keys: [egressKey(x), ingressKey], mark: me });
      }
    }
  }

  const listeners: Json[] = [];
  const build = (name: string, port: number, specs: readonly ChainSpec[]): void => {
    if (specs.length === 0) return;
    const chains = specs.map((c) => {
      marks.add(c.mark);
      const chain = buildFilterChain({
        name: c.name,
        ...(c.destinationIps ? { destinationIps: c.destinationIps } : {}),
        ...(c.sourceIps ? { sourceIps: c.sourceIps } : {}),
        networkFilters: buildKafkaFilters({ originalDst: true, policyKey: c.keys.join(' '), statPrefix: `kafka_${safeStat(c.name)}`, cluster: tcpOriginalDstClusterName(c.mark) }),
      });
      (chain.filter_chain_match as Json).destination_port = c.port;
      return chain;
    });
    const l: Parameters<typeof buildListener>[0] = { name, port, filterChains: chains };
    if (input.bindAddress !== undefined) l.bindAddress = input.bindAddress;
    listeners.push(buildListener(l));
  };
  build(KAFKA_EGRESS_LISTENER, input.ports.egress, [...egress.values()]);
  build(KAFKA_INGRESS_LISTENER, input.ports.ingress, ingress);
  if (listeners.length === 0) return { listeners, clusters: [], redirects, policies, unsupported };
  const clusters = [...[...marks].sort((a, b) => a - b).map(buildTcpOriginalDstCluster), buildKafkaProcessorCluster(input.processorSocket)];
  return { listeners, clusters, redirects, policies, unsupported };
}
