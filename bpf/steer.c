// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* steer: the SK_REUSEPORT program the agent attaches to the reuseport group
 * of every proxy port (bpf/lib/steer.h). A new connection for the group —
 * found by the kernel's own lookup, or assigned by the tc redirect — goes to
 * the socket the agent's map names for the port, family and the packet's
 * hash; when the map names none that is still open, the kernel's hash
 * selection decides (SK_PASS without a selection). Never refuses.
 *
 * Attached with SO_ATTACH_REUSEPORT_EBPF (BPF_SK_REUSEPORT_SELECT): a
 * closing listener's queued connections still move by hash to another
 * listener of the group (net.ipv4.tcp_migrate_req), and the agent no longer
 * lists a closing proxy's sockets in the map. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "counter.h"
#include "datapath.h"
#include "steer.h"

#define MESHD_AF_INET6 10
#define MESHD_IPPROTO_TCP_ 6

SEC("sk_reuseport")
int meshd_proxy_select(struct sk_reuseport_md *md)
{
	struct meshd_steer_key k = {};
	struct bpf_sock *sk = md->sk;
	__u8 family;
	__u32 n, i;

	if (!sk || md->ip_protocol != MESHD_IPPROTO_TCP_)
		return SK_PASS;
	family = sk->family == MESHD_AF_INET6 ? 6 : 4;
	n = meshd_steer_key((__u16)sk->src_port, family, md->hash, &k);
	for (i = 0; i < MESHD_STEER_MAX_SLOTS && i < n; i++) {
		if (bpf_sk_select_reuseport(md, &meshd_steer_socks, &k, 0) == 0) {
			meshd_percpu_inc(&meshd_steer_stats, MESHD_STEER_SELECTED);
			return SK_PASS;
		}
		k.slot = k.slot + 1 == n ? 0 : k.slot + 1;
	}
	meshd_percpu_inc(&meshd_steer_stats, MESHD_STEER_UNSTEERED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
