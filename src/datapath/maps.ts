/**
 * Codecs for the endpoint datapath's maps and events, mirroring
 * bpf/include/datapath.h (checked against bpf/build/lxc.o's BTF by
 * test/integration/datapath-codec.test.ts), plus its constants.
 *
 *   PolicyKey.encode({ prefixlen: 96, ep_id: 3, identity: 1234, egress: 1, proto: 6, dport: 80 });
 */
import { MeshdError } from '../util/errors.js';
import { defineStruct } from './codec.js';

export const Identity = { UNKNOWN: 0, HOST: 1, WORLD: 2 } as const;
export const Dir = { INGRESS: 0, EGRESS: 1 } as const;
export const VerdictCode = { ALLOW: 1, DENY: 2, REDIRECT: 3 } as const;
export const EndpointFlag = { DEFAULT_DENY_INGRESS: 1, DEFAULT_DENY_EGRESS: 2 } as const;
export const ConfigFlag = { PER_PACKET_LB: 1, SOCKMAP_SHORTCUT: 2 } as const;
export const EventType = { DROP: 1, VERDICT: 2, REDIRECT: 3 } as const;
export const MarkMagic = { MASK: 0x0f00, IDENTITY: 0x0a00 } as const;
/** meshd_ct_entry.flags: remote_identity is stored, not the ipcache's (proxy mark, or a VIP kept for the proxy). */
export const CtFlag = { STORED_IDENTITY: 1 } as const;
/** meshd_metrics layout (bpf/include/datapath.h MESHD_METRIC_*). */
export const Metric = {
  REASONS: 16,
  drop: (dir: 0 | 1, reason: number) => dir * 16 + (reason & 15),
  newAllowed: (dir: 0 | 1) => 32 + dir,
  newRedirected: (dir: 0 | 1) => 34 + dir,
  MAX: 36,
} as const;

/** The mark the node proxy puts on its upstream sockets (SO_MARK) so the
 * destination's ingress policy judges the original client's identity. */
export function proxyUpstreamMark(identity: number): number {
  if (!Number.isInteger(identity) || identity < 0 || identity > 0xffffff) {
    throw new MeshdError('MESHD_IDENTITY_MARK_RANGE', `identity ${identity} does not fit the 24 bits of the mark`, { kind: 'invalid' });
  }
  return (((identity & 0xffff) << 16) | MarkMagic.IDENTITY | ((identity >>> 16) & 0xff)) >>> 0;
}

export const IpcacheKey = defineStruct('meshd_ipcache_key', [
  ['prefixlen', 'u32'],
  ['family', 'u8'],
  ['pad', { bytes: 3 }],
  ['addr', { bytes: 16 }],
] as const);

export const IpcacheValue = defineStruct('meshd_ipcache_value', [
  ['identity', 'u32'],
  ['flags', 'u32'],
] as const);

export const EndpointValue = defineStruct('meshd_endpoint', [
  ['ep_id', 'u32'],
  ['identity', 'u32'],
  ['flags', 'u32'],
  ['policy_gen', 'u32'],
] as const);

export const PolicyKey = defineStruct('meshd_policy_key', [
  ['prefixlen', 'u32'],
  ['ep_id', 'u32'],
  ['identity', 'u32'],
  ['egress', 'u8'],
  ['proto', 'u8'],
  ['dport', 'be16'],
] as const);

export const PolicyValue = defineStruct('meshd_policy_value', [
  ['verdict', 'u8'],
  ['pad', 'u8'],
  ['proxy_port', 'u16'],
  ['rule_id', 'u32'],
] as const);

export const CtKey = defineStruct('meshd_ct_key', [
  ['local', { bytes: 16 }],
  ['remote', { bytes: 16 }],
  ['local_port', 'be16'],
  ['remote_port', 'be16'],
  ['proto', 'u8'],
  ['family', 'u8'],
  ['pad', { bytes: 2 }],
  ['ep_id', 'u32'],
] as const);

export const CtEntry = defineStruct('meshd_ct_entry', [
  ['created_ns', 'u64'],
  ['last_seen_ns', 'u64'],
  ['packets', 'u64'],
  ['bytes', 'u64'],
  ['gen', 'u32'],
  ['remote_identity', 'u32'],
  ['proxy_port', 'u16'],
  ['verdict', 'u8'],
  ['flags', 'u8'],
  ['dir', 'u8'],
  ['pad', { bytes: 3 }],
] as const);

export const DatapathConfig = defineStruct('meshd_config', [
  ['proxy_mark', 'u32'],
  ['proxy_mark_mask', 'u32'],
  ['ipcache_gen', 'u32'],
  ['verdict_sample', 'u32'],
  ['flags', 'u32'],
  ['proxy_ipv4', 'be32'],
] as const);

export const FlowEvent = defineStruct('meshd_flow_event', [
  ['ts_ns', 'u64'],
  ['type', 'u32'],
  ['reason', 'u32'],
  ['ep_id', 'u32'],
  ['src_identity', 'u32'],
  ['dst_identity', 'u32'],
  ['ifindex', 'u32'],
  ['saddr', { bytes: 16 }],
  ['daddr', { bytes: 16 }],
  ['sport', 'be16'],
  ['dport', 'be16'],
  ['proto', 'u8'],
  ['family', 'u8'],
  ['dir', 'u8'],
  ['verdict', 'u8'],
  ['proxy_port', 'u16'],
  ['pad', 'u16'],
] as const);

export const NatDir = { FWD: 0, REV: 1 } as const;

export const NatKey = defineStruct('meshd_nat_key', [
  ['saddr', { bytes: 16 }],
  ['daddr', { bytes: 16 }],
  ['sport', 'be16'],
  ['dport', 'be16'],
  ['proto', 'u8'],
  ['family', 'u8'],
  ['dir', 'u8'],
  ['pad', 'u8'],
] as const);

export const NatValue = defineStruct('meshd_nat_value', [
  ['addr', { bytes: 16 }],
  ['port', 'be16'],
  ['pad', 'u16'],
  ['svc_id', 'u32'],
] as const);

/** Every codec of this object, for the BTF check. */
export const datapathCodecs = [
  IpcacheKey,
  IpcacheValue,
  EndpointValue,
  PolicyKey,
  PolicyValue,
  CtKey,
  CtEntry,
  DatapathConfig,
  FlowEvent,
  NatKey,
  NatValue,
] as const;
