/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Agent-switched steering of new connections to the node proxy's listeners.
 *
 * The agent fills meshd_steer_socks with the listening sockets of the live
 * proxies (taken from the proxy processes with pidfd_getfd), keyed by
 * (proxy port, family, generation, slot), and switches a port to a new set
 * by writing the set under the other generation and then the port's entry in
 * meshd_steer_ports (one update). A socket that closes leaves the SOCKHASH by
 * itself, so a crashed proxy's slots are empty at once; a lookup that finds
 * an empty slot tries the next ones.
 *
 * Two places pick from it: the tc redirect (bpf/lib/redirect.h) for the
 * socket it assigns, and the SK_REUSEPORT program of each proxy port's
 * reuseport group (bpf/steer.c). The second is the one that counts: every
 * proxy binds its ports with SO_REUSEPORT, and since Linux 6.5 the kernel
 * selects again within the reuseport group of a socket assigned with
 * bpf_sk_assign (by hash, or by the group's SK_REUSEPORT program). Without
 * the program the agent's choice would only decide the group, not the socket
 * (docs/datapath.md). */
#ifndef MESHD_LIB_STEER_H
#define MESHD_LIB_STEER_H

#include <bpf/bpf_helpers.h>

#include "counter.h"
#include "datapath.h"

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4096);
	__type(key, struct meshd_steer_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_steer_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct meshd_steer_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_steer_ports SEC(".maps");

MESHD_PERCPU_COUNTERS(meshd_steer_stats, MESHD_STEER_STATS);

/* The key of the first slot to try for a new connection of this port and
 * family (hash picks the slot), or 0 when the agent steers nothing there. */
static __always_inline int meshd_steer_key(__u16 port, __u8 family, __u32 hash, struct meshd_steer_key *k)
{
	__u32 p = port;
	struct meshd_steer_port *v = bpf_map_lookup_elem(&meshd_steer_ports, &p);
	__u32 n;

	if (!v)
		return 0;
	n = family == 4 ? v->count4 : v->count6;
	if (n == 0 || n > MESHD_STEER_MAX_SLOTS)
		return 0;
	k->port = port;
	k->family = family;
	k->gen = v->gen;
	k->slot = hash % n;
	return n;
}

#endif
