/**
 * bpf/nodeport.c's own maps, mirrored from bpf/include/lb.h
 * (test/integration/bpf-abi.test.ts compares each codec with nodeport.o's BTF).
 */
import { NpFlag, NpStatSlot } from '../abi.js';
import { defineStruct } from '../codec.js';

export const NpMapName = { nat: 'meshd_np_nat', nat6: 'meshd_np_nat6', dev: 'meshd_np_dev', stats: 'meshd_np_stats' } as const;
export const NP_F_SNAT = NpFlag.SNAT;

/** Programs of nodeport.o: tc ingress and egress of each native device. */
export const NpProgram = { ingress: 'meshd_np_in', egress: 'meshd_np_out' } as const;

export const NpDev = defineStruct('meshd_np_dev', [
  ['ipv4', 'be32'],
  ['flags', 'u32'],
  ['ipv6', { bytes: 16, align: 1 }],
] as const);

export const NpNatValue = defineStruct('meshd_np_nat_value', [
  ['to_addr', 'be32'],
  ['to_port', 'be16'],
  ['flags', 'u8'],
  ['pad', 'u8'],
  ['snat_addr', 'be32'],
  ['snat_port', 'be16'],
  ['pad2', 'u16'],
  ['svc_id', 'u32'],
] as const);

export const NpNat6Value = defineStruct('meshd_np_nat6_value', [
  ['to_addr', { bytes: 16, align: 1 }],
  ['snat_addr', { bytes: 16, align: 1 }],
  ['to_port', 'be16'],
  ['snat_port', 'be16'],
  ['flags', 'u8'],
  ['pad', { bytes: 3, align: 1 }],
  ['svc_id', 'u32'],
] as const);

export const nodePortCodecs = [NpDev, NpNatValue, NpNat6Value] as const;

/** meshd_np_stats slots by the names status() reports. */
export const NpStat = {
  translated: NpStatSlot.XLATED,
  reverseTranslated: NpStatSlot.REVNAT,
  noBackend: NpStatSlot.NO_BACKEND,
  snat: NpStatSlot.SNAT,
  snatFailed: NpStatSlot.SNAT_FAILED,
} as const;
