/**
 * bpf/host.c's own map and programs, mirrored from bpf/include/datapath.h
 * (test/integration/host-firewall-abi.test.ts compares them with host.o's BTF).
 * Everything else host.o uses is the endpoint datapath's maps, shared by pin.
 */
import { defineStruct } from '../codec.js';

export const HostMapName = { config: 'meshd_host_cfg' } as const;

/** Programs of host.o: tc ingress and egress of each native device. */
export const HostProgram = { ingress: 'meshd_host_in', egress: 'meshd_host_out' } as const;

export const HostConfigValue = defineStruct('meshd_host_config', [
  ['flags', 'u32'],
  ['gen', 'u32'],
] as const);

export const hostCodecs = [HostConfigValue] as const;
