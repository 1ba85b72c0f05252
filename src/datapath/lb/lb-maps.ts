/**
 * The socket-LB maps' keys and values, mirrored from bpf/include/lb.h
 * (test/integration/bpf-abi.test.ts compares each codec, and each map name,
 * with sock.o's BTF), and the address encoding they use:
 * 16 bytes, IPv4 as IPv4-mapped IPv6, so one set of maps serves both families.
 *
 *   const key = SvcKey.encode({ addr: encodeAddr('10.96.0.10'), port: 53, proto: PROTO_UDP, pad0: 0, slot: 0, pad: 0 });
 */
import ipaddr from 'ipaddr.js';
import { LbFlag, LbLimit, LbScope, LbStatSlot } from '../abi.js';
import { defineStruct } from '../codec.js';

// bpf/include/lb.h's enums, from ./abi.js (checked against sock.o's BTF), under this module's names.
export const MAGLEV_M = LbLimit.MAGLEV_M;
export const MAX_SLOTS = LbLimit.MAX_SLOTS;
export const LB_F_AFFINITY = LbFlag.AFFINITY;
export const LB_F_MAGLEV = LbFlag.MAGLEV;
export const Scope = {
  ClusterIP: LbScope.CLUSTER_IP,
  NodePort: LbScope.NODE_PORT,
  ExternalIP: LbScope.EXTERNAL_IP,
  LoadBalancer: LbScope.LB_INGRESS,
} as const;
export type ScopeNumber = (typeof Scope)[keyof typeof Scope];
/** meshd_lb_stats slots by the names `SockLb.stats()` reports. */
export const LbStat = {
  Xlated: LbStatSlot.XLATED,
  Refused: LbStatSlot.REFUSED,
  SkippedNetns: LbStatSlot.SKIPPED_NS,
  Affinity: LbStatSlot.AFFINITY,
  Revnat: LbStatSlot.REVNAT,
} as const;
export const LB_STAT_MAX = LbStatSlot.MAX;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

/** Map names in sock.o (also their pin names under the pin directory). */
export const LbMapName = {
  svc: 'meshd_lb_svc',
  backends: 'meshd_lb_be',
  revnat: 'meshd_lb_revnat',
  affinity: 'meshd_lb_affin',
  affmatch: 'meshd_lb_affm',
  maglev: 'meshd_lb_maglev',
  stats: 'meshd_lb_stats',
} as const;

const addr16 = { bytes: 16, align: 1 } as const;

export const SvcKey = defineStruct('meshd_lb_svc_key', [
  ['addr', addr16],
  ['port', 'be16'],
  ['proto', 'u8'],
  ['pad0', 'u8'],
  ['slot', 'u16'],
  ['pad', 'u16'],
] as const);

export const SvcValue = defineStruct('meshd_lb_svc_value', [
  ['backend_id', 'u32'],
  ['svc_id', 'u32'],
  ['count', 'u16'],
  ['flags', 'u8'],
  ['scope', 'u8'],
  ['affinity_timeout', 'u32'],
] as const);

export const Backend = defineStruct('meshd_lb_backend', [
  ['addr', addr16],
  ['port', 'be16'],
  ['proto', 'u8'],
  ['pad', 'u8'],
] as const);

export const RevnatKey = defineStruct('meshd_lb_revnat_key', [
  ['cookie', 'u64'],
  ['addr', addr16],
  ['port', 'be16'],
  ['pad', 'u16'],
  ['pad2', 'u32'],
] as const);

export const RevnatValue = defineStruct('meshd_lb_revnat_value', [
  ['addr', addr16],
  ['port', 'be16'],
  ['pad', 'u16'],
  ['svc_id', 'u32'],
] as const);

export const AffinityKey = defineStruct('meshd_lb_affinity_key', [
  ['client', 'u64'],
  ['svc_id', 'u32'],
  ['pad', 'u32'],
] as const);

export const AffinityValue = defineStruct('meshd_lb_affinity_value', [
  ['last_used_ns', 'u64'],
  ['backend_id', 'u32'],
  ['pad', 'u32'],
] as const);

export const AffmatchKey = defineStruct('meshd_lb_affmatch_key', [
  ['svc_id', 'u32'],
  ['backend_id', 'u32'],
] as const);

export const Maglev = defineStruct('meshd_lb_maglev', [['backend_ids', { bytes: 4 * MAGLEV_M, align: 4 }]] as const);

/** Every codec that mirrors a struct of bpf/include/lb.h (for the BTF test). */
export const lbCodecs = [SvcKey, SvcValue, Backend, RevnatKey, RevnatValue, AffinityKey, AffinityValue, AffmatchKey, Maglev] as const;

// Backend and VIP literals repeat across thousands of services: parse each once.
const addrCache = new Map<string, Buffer>();
const familyCache = new Map<string, '4' | '6' | null>();
const CACHE_MAX = 200_000;

/** 16-byte map address of an IPv4 or IPv6 literal (IPv4 → ::ffff:a.b.c.d). Throws on an invalid literal. Do not mutate the result. */
export function encodeAddr(ip: string): Buffer {
  const hit = addrCache.get(ip);
  if (hit) return hit;
  const a = ipaddr.parse(ip);
  const v6 = a instanceof ipaddr.IPv4 ? a.toIPv4MappedAddress() : a;
  const b = Buffer.from(v6.toByteArray());
  if (addrCache.size >= CACHE_MAX) addrCache.clear();
  addrCache.set(ip, b);
  return b;
}

/** The literal for a 16-byte map address (IPv4-mapped → dotted quad). */
export function decodeAddr(b: Buffer): string {
  const a = ipaddr.fromByteArray([...b]);
  if (a instanceof ipaddr.IPv6 && a.isIPv4MappedAddress()) return a.toIPv4Address().toString();
  return a.toString();
}

/** "4" or "6" for a valid literal, null otherwise. */
export function ipFamily(ip: string): '4' | '6' | null {
  const hit = familyCache.get(ip);
  if (hit !== undefined) return hit;
  const fam = ipaddr.IPv4.isValidFourPartDecimal(ip) ? '4' : ip.includes(':') && ipaddr.IPv6.isValid(ip) ? '6' : null;
  if (familyCache.size >= CACHE_MAX) familyCache.clear();
  familyCache.set(ip, fam);
  return fam;
}
