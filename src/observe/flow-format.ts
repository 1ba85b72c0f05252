/**
 * Flows as `meshd observe` prints them, in the forms `hubble observe` has:
 * compact (one line), table and jsonpb (each GetFlowsResponse as protobuf's
 * JSON mapping with the proto's field names).
 *
 *   compactLine(flow)        // "Dec  2 01:02:03.456: default/client:40000 (ID:300) -> default/api:8080 (ID:301) http-request FORWARDED (HTTP/1.1 GET http://api/x)"
 *   protoJson(response)      // plain JSON value
 */
import { timestampNs, type Endpoint, type Flow, type Timestamp } from './flow.js';

/** RFC 3339 with 0, 3, 6 or 9 fractional digits, as protobuf's JSON mapping writes a Timestamp. */
export function rfc3339(t: Timestamp): string {
  const ns = timestampNs(t);
  const ms = Number(ns / 1_000_000n);
  const base = new Date(ms).toISOString().slice(0, 19);
  const nanos = t.nanos;
  if (nanos === 0) return `${base}Z`;
  const digits = nanos % 1_000_000 === 0 ? 3 : nanos % 1000 === 0 ? 6 : 9;
  return `${base}.${String(nanos).padStart(9, '0').slice(0, digits)}Z`;
}

function isTimestamp(v: unknown): v is Timestamp {
  return typeof v === 'object' && v !== null && 'seconds' in v && 'nanos' in v && Object.keys(v).length === 2;
}

const TIMESTAMP_KEYS = new Set(['time', 'first', 'last', 'since', 'until']);
/** google.protobuf.*Value wrappers: printed as their bare value, even when it is the default. */
const WRAPPER_KEYS = new Set(['is_reply', 'num_connected_nodes', 'num_unavailable_nodes', 'cpu']);
/** proto-loader's virtual oneof keys (oneofs: true), not fields, by the message that has them. */
const ONEOF_KEYS: Record<string, string> = { l4: 'protocol', l7: 'record', '': 'response_types' };

/** A decoded message → protobuf's JSON mapping with proto field names (defaults omitted). */
export function protoJson(msg: unknown, parentKey = ''): unknown {
  if (Array.isArray(msg)) return msg.map((m) => protoJson(m, parentKey));
  if (typeof msg !== 'object' || msg === null) return msg;
  const out: Record<string, unknown> = {};
  const oneof = ONEOF_KEYS[parentKey];
  for (const [k, v] of Object.entries(msg)) {
    if (k === oneof) continue;
    if (v === undefined || v === null || v === '' || v === 0 || v === '0' || v === false) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (TIMESTAMP_KEYS.has(k) && isTimestamp(v)) {
      out[k] = rfc3339(v);
      continue;
    }
    if (WRAPPER_KEYS.has(k) && typeof v === 'object' && 'value' in v) {
      out[k] = (v as { value: unknown }).value ?? false;
      continue;
    }
    out[k] = protoJson(v, k);
  }
  return out;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Hubble's compact time: "Dec  2 01:02:03.456" (UTC). */
export function compactTime(t: Timestamp): string {
  const d = new Date(Number(timestampNs(t) / 1_000_000n));
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${MONTHS[d.getUTCMonth()] ?? ''} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`;
}

function port(f: Flow, side: 'source' | 'destination'): number | undefined {
  const l4 = f.l4;
  if (!l4) return undefined;
  if (l4.protocol === 'TCP') return side === 'source' ? l4.TCP.source_port : l4.TCP.destination_port;
  if (l4.protocol === 'UDP') return side === 'source' ? l4.UDP.source_port : l4.UDP.destination_port;
  if (l4.protocol === 'SCTP') return side === 'source' ? l4.SCTP.source_port : l4.SCTP.destination_port;
  return undefined;
}

/** "ns/pod:port (ID:n)", or the address when the side is not a pod; a reserved identity shows its name. */
export function peer(f: Flow, side: 'source' | 'destination'): string {
  const e: Endpoint = f[side];
  const ip = side === 'source' ? f.IP?.source : f.IP?.destination;
  const name = e.pod_name ? `${e.namespace ?? ''}/${e.pod_name}` : (ip ?? '?');
  const p = port(f, side);
  const reserved = e.labels.find((l) => l.startsWith('reserved:'));
  return `${name}${p ? `:${p}` : ''} (${reserved ?? `ID:${e.identity}`})`;
}

/** Hubble's event type name: drop, policy-verdict:…, to-proxy, http-request, http-response, dns-…. */
export function eventName(f: Flow): string {
  if (f.l7) return `${f.l7.record}-${f.l7.type === 'REQUEST' ? 'request' : f.l7.type === 'RESPONSE' ? 'response' : 'sample'}`;
  if (f.event_type.type === 1) return 'drop';
  if (f.verdict === 'REDIRECTED') return 'to-proxy';
  if (f.event_type.type === 5) return `policy-verdict:${f.traffic_direction === 'INGRESS' ? 'L3-L4 INGRESS' : f.traffic_direction === 'EGRESS' ? 'L3-L4 EGRESS' : 'L3-L4'}`;
  return `event-${f.event_type.type}`;
}

/** The part in parentheses at the end of a compact line. */
export function summary(f: Flow): string {
  const l7 = f.l7;
  if (l7?.record === 'http') {
    const h = l7.http;
    if (l7.type === 'RESPONSE') {
      const ms = l7.latency_ns !== undefined ? ` ${Math.round(Number(l7.latency_ns) / 1e6)}ms` : '';
      return `${h.protocol} ${h.code}${ms} (${h.method} ${h.url})`;
    }
    return `${h.protocol} ${h.method} ${h.url}`;
  }
  if (l7?.record === 'dns') return `DNS ${l7.type === 'RESPONSE' ? 'Answer' : 'Query'} ${l7.dns.query}`;
  if (l7?.record === 'kafka') return `Kafka ${l7.kafka.api_key} ${l7.kafka.topic}`;
  if (f.verdict === 'DROPPED' && f.drop_reason_desc) return f.drop_reason_desc;
  if (f.l4?.protocol === 'TCP' && f.l4.TCP.flags) {
    const flags = Object.entries(f.l4.TCP.flags).filter(([, v]) => v).map(([k]) => k);
    if (flags.length > 0) return `TCP Flags: ${flags.join(', ')}`;
  }
  return f.l4?.protocol ?? '';
}

/** A reply is printed from the client's side, `client <- server`, as the hubble CLI does. */
export function compactLine(f: Flow): string {
  const s = summary(f);
  const sides = f.is_reply?.value === true ? `${peer(f, 'destination')} <- ${peer(f, 'source')}` : `${peer(f, 'source')} -> ${peer(f, 'destination')}`;
  const log = f.policy_log && f.policy_log.length > 0 ? ` policy-log=${f.policy_log.join(',')}` : '';
  return `${compactTime(f.time)}: ${sides} ${eventName(f)} ${f.verdict}${s ? ` (${s})` : ''}${log}`;
}

export const TABLE_HEADERS = ['TIMESTAMP', 'SOURCE', 'DESTINATION', 'TYPE', 'VERDICT', 'SUMMARY'] as const;

export function tableRow(f: Flow): string[] {
  return [compactTime(f.time), peer(f, 'source'), peer(f, 'destination'), eventName(f), f.verdict, summary(f)];
}
