/**
 * bpf/host.c's programs (test/integration/host-firewall-abi.test.ts checks
 * them against host.o's BTF). host.o has no map of its own: it uses the
 * endpoint datapath's maps, shared by pin.
 */

/** Programs of host.o: tc ingress and egress of each native device. */
export const HostProgram = { ingress: 'meshd_host_in', egress: 'meshd_host_out' } as const;
