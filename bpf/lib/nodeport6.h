/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The IPv6 half of bpf/lib/nodeport.h: the same translation for IPv6
 * frontends and backends, recorded in meshd_np_nat6 (whole addresses).
 * IPv6 has no header checksum; the L4 checksum covers the addresses through
 * the pseudo header, so an address change is folded in with bpf_csum_diff. */
#ifndef MESHD_LIB_NODEPORT6_H
#define MESHD_LIB_NODEPORT6_H

#include "nodeport.h"

#ifndef AF_INET6
#define AF_INET6 10
#endif

#define MESHD_IP6_SADDR_OFF 8
#define MESHD_IP6_DADDR_OFF 24

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESHD_NP_NAT_MAX);
	__type(key, struct meshd_nat_key);
	__type(value, struct meshd_np_nat6_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_np_nat6 SEC(".maps");

static __always_inline void np6_key(struct meshd_nat_key *k, const __u8 *saddr, const __u8 *daddr, __be16 sport,
				    __be16 dport, __u8 proto, __u8 dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, saddr, 16);
	__builtin_memcpy(k->daddr, daddr, 16);
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->family = 6;
	k->dir = dir;
}

static __always_inline bool np6_is_v4_mapped(const __u8 *a)
{
	__u32 w[3];

	__builtin_memcpy(w, a, 12);
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline bool np6_is_zero(const __u8 *a)
{
	__u64 w[2];

	__builtin_memcpy(w, a, 16);
	return w[0] == 0 && w[1] == 0;
}

/* Rewrites the destination (dst) or source address and port of an IPv6
 * packet whose current tuple is *t (0 or a negative drop reason). */
static __always_inline int np6_rewrite(struct __sk_buff *skb, const struct meshd_tuple *t, bool dst, const __u8 *addr,
				       __be16 port)
{
	__u32 csum_off = meshd_l4_csum_off(t);
	__u64 mangled = t->proto == MESHD_IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u8 old[16], new[16];
	__be16 old_port = dst ? t->dport : t->sport;
	__s64 diff;

	__builtin_memcpy(old, dst ? t->daddr : t->saddr, 16);
	__builtin_memcpy(new, addr, 16);
	diff = bpf_csum_diff((__be32 *)old, 16, (__be32 *)new, 16, 0);
	if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff, BPF_F_PSEUDO_HDR | mangled) < 0 ||
	    bpf_skb_store_bytes(skb, t->l3_off + (dst ? MESHD_IP6_DADDR_OFF : MESHD_IP6_SADDR_OFF), new, 16, 0) < 0)
		return -MESHD_DROP_NAT_FAILED;
	if (old_port != port &&
	    (bpf_l4_csum_replace(skb, csum_off, old_port, port, mangled | 2) < 0 ||
	     bpf_skb_store_bytes(skb, t->l4_off + (dst ? 2 : 0), &port, 2, 0) < 0))
		return -MESHD_DROP_NAT_FAILED;
	return 0;
}

static __always_inline int np6_fib_ifindex(struct __sk_buff *skb, const __u8 *saddr, const __u8 *daddr, __u8 proto,
					   __u32 *ifindex)
{
	struct bpf_fib_lookup p = {};
	int ret;

	p.family = AF_INET6;
	p.l4_protocol = proto;
	p.tot_len = (__u16)skb->len;
	p.ifindex = skb->ifindex;
	__builtin_memcpy(p.ipv6_src, saddr, 16);
	__builtin_memcpy(p.ipv6_dst, daddr, 16);
	ret = bpf_fib_lookup(skb, &p, sizeof(p), 0);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return 0;
	*ifindex = p.ifindex;
	return 1;
}

static __always_inline int np6_forward(struct __sk_buff *skb, const __u8 *saddr, const __u8 *daddr, __u8 proto)
{
	__u32 ifindex = 0;

	if (!np6_fib_ifindex(skb, saddr, daddr, proto, &ifindex))
		return TC_ACT_OK;
	return bpf_redirect_neigh(ifindex, 0, 0, 0);
}

/* Claims a source port on the node's IPv6 address towards a remote backend (0: none free). */
static __always_inline __be16 np6_snat_port(const struct meshd_tuple *t, const __u8 *be_addr, __be16 be_port,
					    const __u8 *node, const struct meshd_np_nat6_value *rv)
{
	struct meshd_nat_key rk;
	__be16 port = t->sport;
	int i;

	for (i = 0; i < MESHD_NP_SNAT_TRIES; i++) {
		np6_key(&rk, be_addr, node, be_port, port, t->proto, MESHD_NAT_REV);
		if (bpf_map_update_elem(&meshd_np_nat6, &rk, rv, BPF_NOEXIST) == 0)
			return port;
		port = bpf_htons(MESHD_NP_SNAT_PORT_MIN + bpf_get_prandom_u32() % MESHD_NP_SNAT_PORT_SPAN);
	}
	return 0;
}

/* A new IPv6 connection from outside to frontend svc (see np_new). */
static __always_inline int np6_new(struct __sk_buff *skb, const struct meshd_tuple *t, struct meshd_lb_svc_key *sk,
				   const struct meshd_lb_svc_value *svc, struct meshd_np_nat6_value *fv)
{
	struct meshd_np_nat6_value rv = {};
	struct meshd_lb_svc_value *slot;
	struct meshd_nat_key fk, rk;
	struct meshd_lb_backend *be;
	struct meshd_np_dev *dev;
	__u32 ifindex = skb->ifindex, id = 0;

	if (svc->count == 0)
		goto no_backend;
	if (svc->flags & MESHD_LB_F_MAGLEV) {
		__u64 h;

		__builtin_memcpy(&h, &t->saddr[8], 8);
		id = maglev_backend(svc->svc_id, h ^ ((__u64)t->sport << 48));
	}
	if (!id) {
		sk->slot = (__u16)(bpf_get_prandom_u32() % svc->count) + 1;
		slot = bpf_map_lookup_elem(&meshd_lb_svc, sk);
		sk->slot = 0;
		if (slot)
			id = slot->backend_id;
	}
	be = id ? bpf_map_lookup_elem(&meshd_lb_be, &id) : 0;
	if (!be || np6_is_v4_mapped(be->addr))
		goto no_backend;
	__builtin_memset(fv, 0, sizeof(*fv));
	__builtin_memcpy(fv->to_addr, be->addr, 16);
	fv->to_port = be->port;
	fv->svc_id = svc->svc_id;
	__builtin_memcpy(rv.to_addr, t->daddr, 16);
	rv.to_port = t->dport;
	rv.svc_id = svc->svc_id;
	np6_key(&fk, t->saddr, t->daddr, t->sport, t->dport, t->proto, MESHD_NAT_FWD);

	if (np6_fib_ifindex(skb, t->saddr, be->addr, t->proto, &ifindex) && !bpf_map_lookup_elem(&meshd_np_dev, &ifindex))
		ifindex = skb->ifindex;
	dev = bpf_map_lookup_elem(&meshd_np_dev, &ifindex);
	if (meshd_local_endpoint(6, be->addr) || !dev || np6_is_zero(dev->ipv6)) {
		np6_key(&rk, be->addr, t->saddr, be->port, t->sport, t->proto, MESHD_NAT_REV);
		if (bpf_map_update_elem(&meshd_np_nat6, &rk, &rv, BPF_ANY) < 0)
			return -MESHD_DROP_NAT_FAILED;
	} else {
		rv.flags = MESHD_NP_F_SNAT;
		__builtin_memcpy(rv.snat_addr, t->saddr, 16);
		rv.snat_port = t->sport;
		fv->flags = MESHD_NP_F_SNAT;
		__builtin_memcpy(fv->snat_addr, dev->ipv6, 16);
		fv->snat_port = np6_snat_port(t, be->addr, be->port, dev->ipv6, &rv);
		if (!fv->snat_port) {
			np_stat(MESHD_NP_STAT_SNAT_FAILED);
			return -MESHD_DROP_NAT_FAILED;
		}
		np_stat(MESHD_NP_STAT_SNAT);
	}
	if (bpf_map_update_elem(&meshd_np_nat6, &fk, fv, BPF_ANY) < 0)
		return -MESHD_DROP_NAT_FAILED;
	np_stat(MESHD_NP_STAT_XLATED);
	return 1;
no_backend:
	np_stat(MESHD_NP_STAT_NO_BACKEND);
	return -MESHD_DROP_NO_SERVICE_BACKEND;
}

/* Applies a forward entry to a client's packet and forwards it when SNATed. */
static __always_inline int np6_apply_fwd(struct __sk_buff *skb, const struct meshd_tuple *t,
					 const struct meshd_np_nat6_value *v)
{
	int ret = np6_rewrite(skb, t, true, v->to_addr, v->to_port);

	if (ret == 0 && (v->flags & MESHD_NP_F_SNAT))
		ret = np6_rewrite(skb, t, false, v->snat_addr, v->snat_port);
	if (ret < 0)
		return ret;
	return (v->flags & MESHD_NP_F_SNAT) ? np6_forward(skb, v->snat_addr, v->to_addr, t->proto) : TC_ACT_OK;
}

/* tc ingress, IPv6: a verdict (TC_ACT_*, a redirect) or a negative drop reason. */
static __always_inline int np6_in(struct __sk_buff *skb, const struct meshd_tuple *t)
{
	struct meshd_np_nat6_value *v, nv;
	struct meshd_lb_svc_value *svc;
	struct meshd_lb_svc_key sk = {};
	struct meshd_nat_key k;
	int ret;

	np6_key(&k, t->saddr, t->daddr, t->sport, t->dport, t->proto, MESHD_NAT_FWD);
	v = bpf_map_lookup_elem(&meshd_np_nat6, &k);
	if (v) {
		nv = *v;
		return np6_apply_fwd(skb, t, &nv);
	}
	k.dir = MESHD_NAT_REV;
	v = bpf_map_lookup_elem(&meshd_np_nat6, &k);
	if (v && (v->flags & MESHD_NP_F_SNAT)) {
		nv = *v;
		ret = np6_rewrite(skb, t, false, nv.to_addr, nv.to_port);
		if (ret == 0)
			ret = np6_rewrite(skb, t, true, nv.snat_addr, nv.snat_port);
		if (ret < 0)
			return ret;
		np_stat(MESHD_NP_STAT_REVNAT);
		return np6_forward(skb, nv.to_addr, nv.snat_addr, t->proto);
	}
	__builtin_memcpy(sk.addr, t->daddr, 16);
	sk.port = t->dport;
	sk.proto = t->proto;
	svc = bpf_map_lookup_elem(&meshd_lb_svc, &sk);
	if (!svc || svc->scope == MESHD_LB_SCOPE_CLUSTER_IP)
		return TC_ACT_OK;
	ret = np6_new(skb, t, &sk, svc, &nv);
	if (ret < 0)
		return ret;
	return np6_apply_fwd(skb, t, &nv);
}

/* tc egress, IPv6: a local backend's reply gets the frontend as its source. */
static __always_inline int np6_out(struct __sk_buff *skb, const struct meshd_tuple *t)
{
	struct meshd_np_nat6_value *v;
	struct meshd_nat_key k;
	__u8 to_addr[16];
	__be16 to_port;
	int ret;

	np6_key(&k, t->saddr, t->daddr, t->sport, t->dport, t->proto, MESHD_NAT_REV);
	v = bpf_map_lookup_elem(&meshd_np_nat6, &k);
	if (!v || (v->flags & MESHD_NP_F_SNAT))
		return TC_ACT_OK;
	__builtin_memcpy(to_addr, v->to_addr, 16);
	to_port = v->to_port;
	ret = np6_rewrite(skb, t, false, to_addr, to_port);
	if (ret < 0)
		return ret;
	np_stat(MESHD_NP_STAT_REVNAT);
	return TC_ACT_OK;
}

#endif
