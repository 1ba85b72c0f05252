/**
 * Decodes the datapath's ring buffer records (struct meshd_flow_event) into
 * flow records, the shape the observability layer exposes.
 *
 *   const reader = new native.RingBufferReader(eventsFd, (bufs) => bufs.map(decodeFlowEvent));
 */
import { dropReasonName } from '../drop-reasons.js';
import { Dir, EventType, FlowEvent } from '../maps.js';
import { verdictFromCode } from './policy-map-state.js';
import type { Verdict } from '../../policy/types.js';
import { MeshdError } from '../../util/errors.js';

/** audit: policyAuditMode let through a packet the policy would have dropped (dropReason says why). */
export type FlowEventType = 'drop' | 'verdict' | 'redirect' | 'audit';

export interface FlowRecord {
  /** CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns). */
  monotonicNs: bigint;
  type: FlowEventType;
  /** Drop reason name (drop events, and audit events: the drop that did not happen), e.g. "POLICY_DENY". */
  dropReason?: string;
  /** Direction from the endpoint's point of view. */
  direction: 'ingress' | 'egress';
  verdict?: Verdict;
  endpointNumericId: number;
  ifindex: number;
  srcIdentity: number;
  dstIdentity: number;
  family: 4 | 6;
  protocol: number;
  src: { ip: string; port: number };
  dst: { ip: string; port: number };
  proxyPort?: number;
  /** The packet's TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80); TCP only. */
  tcpFlags?: number;
  /** The ICMP or ICMPv6 type; ICMP only. */
  icmpType?: number;
}

/** A ring-buffer record this build cannot decode (short, unknown type or family). */
export class FlowEventError extends MeshdError {
  constructor(message: string) {
    super('MESHD_FLOW_EVENT_MALFORMED', message, { kind: 'invalid' });
  }
}

export function formatIp(family: 4 | 6, raw: Buffer): string {
  if (family === 4) return `${raw[0]}.${raw[1]}.${raw[2]}.${raw[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(raw.readUInt16BE(i).toString(16));
  // compress the longest run of zero groups
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j += 1;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

const types: Record<number, FlowEventType> = {
  [EventType.DROP]: 'drop',
  [EventType.VERDICT]: 'verdict',
  [EventType.REDIRECT]: 'redirect',
  [EventType.AUDIT]: 'audit',
};

export function decodeFlowEvent(buf: Buffer): FlowRecord {
  if (buf.length < FlowEvent.size) throw new FlowEventError(`flow event: ${buf.length} bytes, need ${FlowEvent.size}`);
  const e = FlowEvent.decode(buf);
  const type = types[e.type];
  if (!type) throw new FlowEventError(`flow event: unknown type ${e.type}`);
  if (e.family !== 4 && e.family !== 6) throw new FlowEventError(`flow event: unknown family ${e.family}`);
  const family: 4 | 6 = e.family;
  const icmp = e.proto === 1 || e.proto === 58;
  const rec: FlowRecord = {
    monotonicNs: e.ts_ns,
    type,
    direction: e.dir === Dir.EGRESS ? 'egress' : 'ingress',
    endpointNumericId: e.ep_id,
    ifindex: e.ifindex,
    srcIdentity: e.src_identity,
    dstIdentity: e.dst_identity,
    family,
    protocol: e.proto,
    // ICMP echo identifiers are carried in the port fields; they are not ports
    src: { ip: formatIp(family, e.saddr), port: icmp ? 0 : e.sport },
    dst: { ip: formatIp(family, e.daddr), port: icmp ? 0 : e.dport },
  };
  const verdict = verdictFromCode(e.verdict);
  if (verdict) rec.verdict = verdict;
  if (type === 'drop' || type === 'audit') rec.dropReason = dropReasonName(e.reason);
  if (type === 'redirect') rec.proxyPort = e.proxy_port;
  if (e.proto === 6) rec.tcpFlags = e.tcp_flags;
  if (icmp) rec.icmpType = e.icmp_type;
  return rec;
}
