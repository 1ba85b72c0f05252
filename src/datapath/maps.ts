/**
 * Codecs for the endpoint datapath's maps and events, mirroring the structs
 * of bpf/include/datapath.h (test/integration/bpf-abi.test.ts checks each
 * against bpf/build/lxc.o's BTF: size, and every field's name, offset and
 * type).
 *
 *   PolicyKey.encode({ prefixlen: 96, ep_id: 3, identity: 1234, egress: 1, proto: 6, dport: 80 });
 */
import { defineStruct } from './codec.js';

// The constants live in ./abi.js (checked against the objects' BTF); re-exported for this module's importers.
export { ConfigFlag, CtFlag, Dir, EndpointFlag, EventType, Identity, Metric, NatDir, proxyUpstreamMark, VerdictCode } from './abi.js';

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

/** meshd_tunnel's value: another node's pod CIDR (key as IpcacheKey) -> its address and the local tunnel device. */
export const TunnelValue = defineStruct('meshd_tunnel_value', [
  ['endpoint', 'be32'],
  ['ifindex', 'u32'],
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
  ['icmp_type', 'u8'],
  ['pad', { bytes: 2 }],
] as const);

export const DatapathConfig = defineStruct('meshd_config', [
  ['proxy_mark', 'u32'],
  ['proxy_mark_mask', 'u32'],
  ['ipcache_gen', 'u32'],
  ['verdict_sample', 'u32'],
  ['flags', 'u32'],
  ['proxy_ipv4', 'be32'],
] as const);

/** MESHD_TUPLE_FIELDS: the packet tuple flow events and NAT keys share. */
const tupleFields = [
  ['saddr', { bytes: 16 }],
  ['daddr', { bytes: 16 }],
  ['sport', 'be16'],
  ['dport', 'be16'],
  ['proto', 'u8'],
  ['family', 'u8'],
  ['dir', 'u8'],
] as const;

export const FlowEvent = defineStruct('meshd_flow_event', [
  ['ts_ns', 'u64'],
  ['type', 'u32'],
  ['reason', 'u32'],
  ['ep_id', 'u32'],
  ['src_identity', 'u32'],
  ['dst_identity', 'u32'],
  ['ifindex', 'u32'],
  ...tupleFields,
  ['verdict', 'u8'],
  ['proxy_port', 'u16'],
  ['tcp_flags', 'u8'],
  ['icmp_type', 'u8'],
] as const);

export const NatKey = defineStruct('meshd_nat_key', [
  ...tupleFields,
  ['pad', 'u8'],
] as const);

export const NatValue = defineStruct('meshd_nat_value', [
  ['addr', { bytes: 16 }],
  ['port', 'be16'],
  ['pad', 'u16'],
  ['svc_id', 'u32'],
] as const);

/** The proxy steering's SOCKHASH key (bpf/lib/steer.h; src/proxy/steering.ts). */
export const SteerKey = defineStruct('meshd_steer_key', [
  ['port', 'u16'],
  ['family', 'u8'],
  ['gen', 'u8'],
  ['slot', 'u32'],
] as const);

/** meshd_steer_ports value: a proxy port's active generation and its slots per family. */
export const SteerPort = defineStruct('meshd_steer_port', [
  ['gen', 'u8'],
  ['count4', 'u8'],
  ['count6', 'u8'],
  ['pad', 'u8'],
] as const);

/** Every codec of this object, for the BTF check. */
export const datapathCodecs = [
  IpcacheKey,
  IpcacheValue,
  TunnelValue,
  EndpointValue,
  PolicyKey,
  PolicyValue,
  CtKey,
  CtEntry,
  DatapathConfig,
  FlowEvent,
  NatKey,
  NatValue,
  SteerKey,
  SteerPort,
] as const;
