/**
 * The flow record meshd keeps and serves: Hubble's `flow.Flow` message
 * (api/v1/flow/flow.proto of the cilium module) in the object form
 * @grpc/proto-loader encodes (field names as in the proto, enums by name,
 * 64-bit integers as decimal strings, Timestamp as {seconds, nanos}). Only
 * the fields meshd fills are typed; a flow is encoded as is, nothing is
 * copied on the way out.
 *
 *   const f: Flow = { time: ts, verdict: 'DROPPED', Type: 'L3_L4', … };
 *   flowTimeNs(f)   // bigint wall-clock nanoseconds, for since/until and merging
 *
 * The L7 part is a union (`l7.http` now; `l7.dns` and `l7.kafka` as the DNS
 * and Kafka proxies produce their records); each protocol fills its own
 * member and the filters and metrics look only at the one they understand.
 */

export interface Timestamp {
  /** Seconds since the epoch, decimal (int64 as proto-loader encodes it with longs: String). */
  seconds: string;
  nanos: number;
}

export type Verdict = 'VERDICT_UNKNOWN' | 'FORWARDED' | 'DROPPED' | 'ERROR' | 'AUDIT' | 'REDIRECTED' | 'TRACED' | 'TRANSLATED';
export type FlowType = 'UNKNOWN_TYPE' | 'L3_L4' | 'L7' | 'SOCK';
export type TrafficDirection = 'TRAFFIC_DIRECTION_UNKNOWN' | 'INGRESS' | 'EGRESS';
export type L7FlowType = 'UNKNOWN_L7_TYPE' | 'REQUEST' | 'RESPONSE' | 'SAMPLE';
export type LostEventSource = 'UNKNOWN_LOST_EVENT_SOURCE' | 'PERF_EVENT_RING_BUFFER' | 'OBSERVER_EVENTS_QUEUE' | 'HUBBLE_RING_BUFFER';

export interface Workload {
  name: string;
  kind: string;
}

export interface Endpoint {
  ID?: number;
  identity: number;
  cluster_name?: string;
  namespace?: string;
  /** Hubble's form: "k8s:app=web", sorted. */
  labels: string[];
  pod_name?: string;
  workloads?: Workload[];
}

export interface TcpFlags {
  FIN?: boolean;
  SYN?: boolean;
  RST?: boolean;
  PSH?: boolean;
  ACK?: boolean;
  URG?: boolean;
  ECE?: boolean;
  CWR?: boolean;
  NS?: boolean;
}

export type Layer4 =
  | { protocol: 'TCP'; TCP: { source_port: number; destination_port: number; flags?: TcpFlags } }
  | { protocol: 'UDP'; UDP: { source_port: number; destination_port: number } }
  | { protocol: 'SCTP'; SCTP: { source_port: number; destination_port: number } }
  | { protocol: 'ICMPv4'; ICMPv4: { type: number; code: number } }
  | { protocol: 'ICMPv6'; ICMPv6: { type: number; code: number } };

export interface HttpRecord {
  code: number;
  method: string;
  url: string;
  protocol: string;
  headers?: Array<{ key: string; value: string }>;
}

export interface DnsRecord {
  query: string;
  ips?: string[];
  ttl?: number;
  cnames?: string[];
  observation_source?: string;
  rcode?: number;
  qtypes?: string[];
  rrtypes?: string[];
}

export interface KafkaRecord {
  error_code: number;
  api_version: number;
  api_key: string;
  correlation_id: number;
  topic: string;
}

/** Layer7: one member of the record oneof is set. */
export type Layer7 = { type: L7FlowType; latency_ns?: string } & (
  | { record: 'http'; http: HttpRecord }
  | { record: 'dns'; dns: DnsRecord }
  | { record: 'kafka'; kafka: KafkaRecord }
);

export interface Policy {
  name: string;
  namespace: string;
  labels?: string[];
  revision?: string;
  kind: string;
}

export interface Flow {
  time: Timestamp;
  uuid: string;
  emitter?: { name: string; version: string };
  verdict: Verdict;
  /** Deprecated numeric drop reason, kept filled as Hubble does. */
  drop_reason?: number;
  drop_reason_desc?: string;
  IP?: { source: string; destination: string; ipVersion: 'IPv4' | 'IPv6'; encrypted?: boolean };
  l4?: Layer4;
  source: Endpoint;
  destination: Endpoint;
  Type: FlowType;
  node_name: string;
  source_names?: string[];
  destination_names?: string[];
  l7?: Layer7;
  /** Cilium's monitor event type: 1 drop, 4 trace, 5 policy verdict, 129 L7 (api/v1/flow EventType). */
  event_type: { type: number; sub_type: number };
  source_service?: { name: string; namespace: string };
  destination_service?: { name: string; namespace: string };
  traffic_direction: TrafficDirection;
  is_reply?: { value: boolean };
  interface?: { index: number; name: string };
  proxy_port?: number;
  /** Deprecated in the proto but what the hubble CLI prints as the summary of a flow. */
  Summary?: string;
  egress_allowed_by?: Policy[];
  ingress_allowed_by?: Policy[];
  egress_denied_by?: Policy[];
  ingress_denied_by?: Policy[];
  /** The `log.value`s of the policy rules that decided the flow (Hubble's Flow.policy_log), unique and sorted. */
  policy_log?: string[];
}

export interface LostEvent {
  source: LostEventSource;
  num_events_lost: string;
  first?: Timestamp;
  last?: Timestamp;
}

/** Cilium's monitor message types (pkg/monitor/api), as Hubble puts them in event_type.type. */
export const MonitorEvent = { DROP: 1, TRACE: 4, POLICY_VERDICT: 5, L7: 129 } as const;

export function timestampFromNs(ns: bigint): Timestamp {
  return { seconds: (ns / 1_000_000_000n).toString(), nanos: Number(ns % 1_000_000_000n) };
}

/** Wall-clock milliseconds (Date.now(), Date.parse) → Timestamp, without BigInt. */
export function timestampFromMs(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** `t` plus a non-negative number of nanoseconds below 2^53 (a latency), without BigInt. */
export function addNanos(t: Timestamp, ns: number): Timestamp {
  if (ns === 0) return t;
  const total = t.nanos + ns;
  const carry = Math.floor(total / 1e9);
  return { seconds: carry === 0 ? t.seconds : String(Number(t.seconds) + carry), nanos: total - carry * 1e9 };
}

export function timestampNs(t: Timestamp): bigint {
  return BigInt(t.seconds) * 1_000_000_000n + BigInt(t.nanos);
}

export function flowTimeNs(f: Flow): bigint {
  return timestampNs(f.time);
}

/** Hubble's protocol name of a flow (the `--protocol` filter and the metrics' `protocol` label). */
export function flowProtocol(f: Flow): string {
  if (f.l7) return f.l7.record;
  return f.l4?.protocol ?? '';
}

export function flowPorts(f: Flow): { source: number; destination: number } | undefined {
  const l4 = f.l4;
  if (!l4) return undefined;
  switch (l4.protocol) {
    case 'TCP':
      return { source: l4.TCP.source_port, destination: l4.TCP.destination_port };
    case 'UDP':
      return { source: l4.UDP.source_port, destination: l4.UDP.destination_port };
    case 'SCTP':
      return { source: l4.SCTP.source_port, destination: l4.SCTP.destination_port };
    default:
      return undefined;
  }
}
