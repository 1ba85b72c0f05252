/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: an LRU hash keyed by the connection as the endpoint
 * sees it (its own address and port, the peer's), identical for both
 * directions, so every packet costs one lookup. The entry says who opened
 * the connection: a packet in that direction is forward, otherwise a reply.
 *
 * Policy changes: every entry records the generation (endpoint policy_gen +
 * global ipcache_gen) it was judged under. A packet that finds an entry from
 * an older generation re-evaluates the policy once: if the new policy denies
 * the connection it is dropped and the entry deleted, otherwise the entry
 * keeps its verdict and takes the new generation. See docs/datapath.md. */
#ifndef MESHD_LIB_CONNTRACK_H
#define MESHD_LIB_CONNTRACK_H

#include "datapath.h"
#include "parse.h"

#ifndef MESHD_CT_MAX
#define MESHD_CT_MAX 262144
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESHD_CT_MAX);
	__type(key, struct meshd_ct_key);
	__type(value, struct meshd_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_ct SEC(".maps");

/* The key of the packet's connection at endpoint ep_id; dir is the hook's
 * direction (the endpoint is the source when it is EGRESS). */
static __always_inline void meshd_ct_key_of(struct meshd_ct_key *k, const struct meshd_tuple *t, __u32 ep_id,
					     __u8 dir)
{
	if (dir == MESHD_DIR_EGRESS) {
		__builtin_memcpy(k->local, t->saddr, 16);
		__builtin_memcpy(k->remote, t->daddr, 16);
		k->local_port = t->sport;
		k->remote_port = t->dport;
	} else {
		__builtin_memcpy(k->local, t->daddr, 16);
		__builtin_memcpy(k->remote, t->saddr, 16);
		k->local_port = t->dport;
		k->remote_port = t->sport;
	}
	k->proto = t->proto;
	k->family = t->family;
	k->pad[0] = 0;
	k->pad[1] = 0;
	k->ep_id = ep_id;
}

/* The connection's destination port (the one policy is about). */
static __always_inline __be16 meshd_ct_dport(const struct meshd_ct_key *k, const struct meshd_ct_entry *e)
{
	if (k->proto == MESHD_IPPROTO_ICMP || k->proto == MESHD_IPPROTO_ICMPV6)
		return bpf_htons(e->icmp_type);
	return e->dir == MESHD_DIR_EGRESS ? k->remote_port : k->local_port;
}

/* Per-packet accounting. Plain increments: a lost update between two CPUs
 * costs a packet in a statistic, an atomic costs every packet a locked
 * instruction on a shared cache line. last_seen_ns is refreshed every 32nd
 * packet (a clock read per packet is measurable at this scale). */
static __always_inline void meshd_ct_touch(struct meshd_ct_entry *e, struct __sk_buff *skb)
{
	if ((e->packets & 31) == 0)
		e->last_seen_ns = bpf_ktime_get_ns();
	e->packets += 1;
	e->bytes += skb->len;
}

static __always_inline int meshd_ct_create(const struct meshd_ct_key *k, __u8 dir, __u8 verdict, __u16 proxy_port,
					    __u32 remote_identity, __u32 gen, __u8 flags, __u8 icmp_type,
					    struct __sk_buff *skb)
{
	struct meshd_ct_entry e = {};

	e.dir = dir;
	e.created_ns = bpf_ktime_get_ns();
	e.last_seen_ns = e.created_ns;
	e.packets = 1;
	e.bytes = skb->len;
	e.gen = gen;
	e.remote_identity = remote_identity;
	e.proxy_port = proxy_port;
	e.verdict = verdict;
	e.flags = flags;
	e.icmp_type = icmp_type;
	return bpf_map_update_elem(&meshd_ct, k, &e, BPF_ANY);
}

#endif
