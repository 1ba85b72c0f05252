/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: an LRU hash keyed by the connection's tuple in its
 * original direction, the endpoint and who opened it. A packet is either
 * forward (key as seen), a reply (key reversed, the other direction) or new.
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

/* meshd_ct_entry.flags */
#define MESHD_CT_F_PROXY_IDENTITY 0x01 /* remote_identity came from the proxy's mark */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESHD_CT_MAX);
	__type(key, struct meshd_ct_key);
	__type(value, struct meshd_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_ct SEC(".maps");

static __always_inline void meshd_ct_key_fwd(struct meshd_ct_key *k, const struct meshd_tuple *t, __u32 ep_id,
					      __u8 dir)
{
	__builtin_memcpy(k->saddr, t->saddr, 16);
	__builtin_memcpy(k->daddr, t->daddr, 16);
	k->sport = t->sport;
	k->dport = t->dport;
	k->proto = t->proto;
	k->family = t->family;
	k->dir = dir;
	k->pad = 0;
	k->ep_id = ep_id;
}

static __always_inline void meshd_ct_key_rev(struct meshd_ct_key *k, const struct meshd_tuple *t, __u32 ep_id,
					      __u8 dir)
{
	__builtin_memcpy(k->saddr, t->daddr, 16);
	__builtin_memcpy(k->daddr, t->saddr, 16);
	k->sport = t->dport;
	k->dport = t->sport;
	k->proto = t->proto;
	k->family = t->family;
	k->dir = dir;
	k->pad = 0;
	k->ep_id = ep_id;
}

static __always_inline void meshd_ct_touch(struct meshd_ct_entry *e, struct __sk_buff *skb)
{
	e->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, skb->len);
}

static __always_inline int meshd_ct_create(const struct meshd_ct_key *k, __u8 verdict, __u16 proxy_port,
					    __u32 remote_identity, __u32 gen, __u8 flags, struct __sk_buff *skb)
{
	struct meshd_ct_entry e = {};

	e.created_ns = bpf_ktime_get_ns();
	e.last_seen_ns = e.created_ns;
	e.packets = 1;
	e.bytes = skb->len;
	e.gen = gen;
	e.remote_identity = remote_identity;
	e.proxy_port = proxy_port;
	e.verdict = verdict;
	e.flags = flags;
	return bpf_map_update_elem(&meshd_ct, k, &e, BPF_ANY);
}

#endif
