// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* sockops + sk_msg: short-circuit data between two TCP sockets of this node
 * (for example the node proxy and a local pod), behind the config flag
 * MESHD_CFG_SOCKMAP_SHORTCUT (off by default; measured in
 * docs/benchmarks/datapath.md).
 *
 *   meshd_sockops  cgroup sockops: established sockets into meshd_sock_hash
 *   meshd_sk_msg   sk_msg verdict on meshd_sock_hash: a message for a peer
 *                  that is in the map goes straight to the peer's receive
 *                  queue (bpf_msg_redirect_hash), skipping TCP/IP and tc
 *
 * Only connections that were established (so passed the tc programs' policy
 * on their handshake) are inserted. Data redirected this way no longer
 * passes the tc programs: a policy change that would revoke such a
 * connection is not seen by it (docs/datapath.md). When the peer is not in
 * the map (remote end, flag off) the message takes the normal path: SK_PASS
 * either way.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "counter.h"
#include "datapath.h"
#include "endpoint.h"

#define MESHD_AF_INET 2
#define MESHD_AF_INET6 10
#define MESHD_SOCK_OPS_ACTIVE_ESTABLISHED_CB 4
#define MESHD_SOCK_OPS_PASSIVE_ESTABLISHED_CB 5

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct meshd_sock_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_sock_hash SEC(".maps");

MESHD_PERCPU_COUNTERS(meshd_sk_stats, MESHD_SK_STAT_MAX);

static __always_inline void meshd_sk_count(__u32 slot)
{
	meshd_percpu_inc(&meshd_sk_stats, slot);
}

/* remote_port holds the network-order port in its upper 16 bits (see
 * DATAPATH facts); local_port is host order already. */
static __always_inline __u32 meshd_remote_port(__u32 raw)
{
	return bpf_ntohs((__u16)(raw >> 16));
}

/* A dual-stack (AF_INET6) socket talking IPv4 carries ::ffff:a.b.c.d; its
 * IPv4 peer knows plain a.b.c.d. Both sides are keyed as IPv4. */
static __always_inline void meshd_sock_addrs(struct meshd_sock_key *k, const __u32 l[4], const __u32 r[4])
{
	if (l[0] == 0 && l[1] == 0 && l[2] == bpf_htonl(0x0000ffff) && r[0] == 0 && r[1] == 0 &&
	    r[2] == bpf_htonl(0x0000ffff)) {
		__builtin_memcpy(k->local, &l[3], 4);
		__builtin_memcpy(k->remote, &r[3], 4);
		k->family = 4;
		return;
	}
	__builtin_memcpy(k->local, l, 16);
	__builtin_memcpy(k->remote, r, 16);
	k->family = 6;
}

static __always_inline int meshd_shortcut_on(void)
{
	struct meshd_config *cfg = meshd_get_config();

	return cfg && (cfg->flags & MESHD_CFG_SOCKMAP_SHORTCUT);
}

SEC("sockops")
int meshd_sockops(struct bpf_sock_ops *ops)
{
	struct meshd_sock_key k = {};

	if (ops->op != MESHD_SOCK_OPS_ACTIVE_ESTABLISHED_CB && ops->op != MESHD_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (!meshd_shortcut_on())
		return 1;
	if (ops->family == MESHD_AF_INET) {
		__u32 l = ops->local_ip4, r = ops->remote_ip4;

		__builtin_memcpy(k.local, &l, 4);
		__builtin_memcpy(k.remote, &r, 4);
		k.family = 4;
	} else if (ops->family == MESHD_AF_INET6) {
		__u32 l[4] = { ops->local_ip6[0], ops->local_ip6[1], ops->local_ip6[2], ops->local_ip6[3] };
		__u32 r[4] = { ops->remote_ip6[0], ops->remote_ip6[1], ops->remote_ip6[2], ops->remote_ip6[3] };

		meshd_sock_addrs(&k, l, r);
	} else {
		return 1;
	}
	k.local_port = ops->local_port;
	k.remote_port = meshd_remote_port(ops->remote_port);
	if (bpf_sock_hash_update(ops, &meshd_sock_hash, &k, BPF_ANY) == 0)
		meshd_sk_count(MESHD_SK_STAT_INSERTED);
	return 1;
}

SEC("sk_msg")
int meshd_sk_msg(struct sk_msg_md *msg)
{
	struct meshd_sock_key peer = {};

	if (msg->family == MESHD_AF_INET) {
		__u32 l = msg->local_ip4, r = msg->remote_ip4;

		__builtin_memcpy(peer.local, &r, 4);
		__builtin_memcpy(peer.remote, &l, 4);
		peer.family = 4;
	} else if (msg->family == MESHD_AF_INET6) {
		__u32 l[4] = { msg->local_ip6[0], msg->local_ip6[1], msg->local_ip6[2], msg->local_ip6[3] };
		__u32 r[4] = { msg->remote_ip6[0], msg->remote_ip6[1], msg->remote_ip6[2], msg->remote_ip6[3] };

		meshd_sock_addrs(&peer, r, l); /* the peer's view: local and remote swapped */
	} else {
		return SK_PASS;
	}
	peer.local_port = meshd_remote_port(msg->remote_port);
	peer.remote_port = msg->local_port;
	if (bpf_msg_redirect_hash(msg, &meshd_sock_hash, &peer, BPF_F_INGRESS) == SK_PASS) {
		meshd_sk_count(MESHD_SK_STAT_REDIRECTED);
		return SK_PASS;
	}
	meshd_sk_count(MESHD_SK_STAT_PASSED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
