/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-packet service translation for pod sockets when socketLB is limited to
 * the host namespace (socketLB.hostNamespaceOnly=true, config flag
 * MESHD_CFG_PER_PACKET_LB): the first packet of a pod's connection to a
 * service VIP picks a backend from the socket LB's maps (bpf/lib/lb.h),
 * records the choice both ways in meshd_nat, and every packet is rewritten
 * (DNAT leaving the pod, reverse SNAT of the replies entering it). Policy and
 * conntrack see the translated tuple, i.e. the backend and its identity;
 * a connection the policy sends to the proxy keeps the VIP (the proxy sees
 * the service as the original destination). IPv4 only for now. */
#ifndef MESHD_LIB_NAT_H
#define MESHD_LIB_NAT_H

#include "datapath.h"
#include "drop_reasons.h"
#include "lb.h"
#include "parse.h"

#ifndef MESHD_NAT_MAX
#define MESHD_NAT_MAX 262144
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESHD_NAT_MAX);
	__type(key, struct meshd_nat_key);
	__type(value, struct meshd_nat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_nat SEC(".maps");

#define MESHD_IP_CSUM_OFF 10
#define MESHD_IP_SADDR_OFF 12
#define MESHD_IP_DADDR_OFF 16

static __always_inline int meshd_nat_applies(const struct meshd_config *cfg, const struct meshd_tuple *t)
{
	return (cfg->flags & MESHD_CFG_PER_PACKET_LB) && t->family == 4 &&
	       (t->proto == MESHD_IPPROTO_TCP || t->proto == MESHD_IPPROTO_UDP);
}

static __always_inline __u32 meshd_l4_csum_off(const struct meshd_tuple *t)
{
	return t->l4_off + (t->proto == MESHD_IPPROTO_TCP ? 16 : 6);
}

/* Rewrites the IPv4 address at addr_off and the L4 port at port_off, fixing
 * both checksums (the L4 one covers the pseudo header). */
static __always_inline int meshd_nat_rewrite(struct __sk_buff *skb, const struct meshd_tuple *t, __u32 addr_off,
					     __be32 old_addr, __be32 new_addr, __u32 port_off, __be16 old_port,
					     __be16 new_port)
{
	__u32 csum_off = meshd_l4_csum_off(t);
	__u64 l4flags = BPF_F_PSEUDO_HDR | (t->proto == MESHD_IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0);

	if (old_addr != new_addr) {
		if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, l4flags | 4) < 0 ||
		    bpf_l3_csum_replace(skb, t->l3_off + MESHD_IP_CSUM_OFF, old_addr, new_addr, 4) < 0 ||
		    bpf_skb_store_bytes(skb, t->l3_off + addr_off, &new_addr, 4, 0) < 0)
			return -MESHD_DROP_NAT_FAILED;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port,
					(t->proto == MESHD_IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0) | 2) < 0 ||
		    bpf_skb_store_bytes(skb, t->l4_off + port_off, &new_port, 2, 0) < 0)
			return -MESHD_DROP_NAT_FAILED;
	}
	return 0;
}

static __always_inline void meshd_nat_fwd_key(struct meshd_nat_key *k, const struct meshd_tuple *t)
{
	__builtin_memcpy(k->saddr, t->saddr, 16);
	__builtin_memcpy(k->daddr, t->daddr, 16);
	k->sport = t->sport;
	k->dport = t->dport;
	k->proto = t->proto;
	k->family = 4;
	k->dir = MESHD_NAT_FWD;
	k->pad = 0;
}

/* Rewrites the packet's destination to nv and updates *t. */
static __always_inline int meshd_nat_apply(struct __sk_buff *skb, struct meshd_tuple *t, const struct meshd_nat_value *nv)
{
	__be32 old_addr, new_addr;

	__builtin_memcpy(&old_addr, t->daddr, 4);
	__builtin_memcpy(&new_addr, nv->addr, 4);
	if (meshd_nat_rewrite(skb, t, MESHD_IP_DADDR_OFF, old_addr, new_addr, 2, t->dport, nv->port) < 0)
		return -MESHD_DROP_NAT_FAILED;
	__builtin_memcpy(t->daddr, &new_addr, 4);
	t->dport = nv->port;
	return 0;
}

/* Traffic leaving a pod, a connection already translated: 1 (rewritten,
 * *t updated), 0 (no translation recorded) or a negative drop reason. */
static __always_inline int meshd_nat_fwd_known(struct __sk_buff *skb, const struct meshd_config *cfg, struct meshd_tuple *t)
{
	struct meshd_nat_key k = {};
	struct meshd_nat_value *v;
	struct meshd_nat_value nv;

	if (!meshd_nat_applies(cfg, t))
		return 0;
	meshd_nat_fwd_key(&k, t);
	v = bpf_map_lookup_elem(&meshd_nat, &k);
	if (!v)
		return 0;
	nv = *v;
	return meshd_nat_apply(skb, t, &nv) < 0 ? -MESHD_DROP_NAT_FAILED : 1;
}

/* A new connection: if its destination is a service, picks a backend into
 * *nv and returns 1 (nothing written yet: the caller judges the backend
 * first); 0 when it is not a service; a negative drop reason when the
 * service has no usable backend. */
static __always_inline int meshd_nat_pick(const struct meshd_config *cfg, const struct meshd_tuple *t, struct meshd_nat_value *nv)
{
	struct meshd_lb_svc_key sk = {};
	struct meshd_lb_svc_value *svc, *slot;
	struct meshd_lb_backend *be;
	__u32 id = 0;

	if (!meshd_nat_applies(cfg, t))
		return 0;
	/* the socket LB's maps hold IPv4 as IPv4-mapped IPv6 */
	sk.addr[10] = 0xff;
	sk.addr[11] = 0xff;
	__builtin_memcpy(&sk.addr[12], t->daddr, 4);
	sk.port = t->dport;
	sk.proto = t->proto;
	svc = bpf_map_lookup_elem(&meshd_lb_svc, &sk);
	if (!svc)
		return 0;
	if (svc->count == 0)
		return -MESHD_DROP_NO_SERVICE_BACKEND;
	if (svc->flags & MESHD_LB_F_MAGLEV)
		id = maglev_backend(svc->svc_id, ((__u64)t->sport << 32) | *(__u32 *)t->saddr);
	if (!id) {
		sk.slot = (__u16)(bpf_get_prandom_u32() % svc->count) + 1;
		slot = bpf_map_lookup_elem(&meshd_lb_svc, &sk);
		if (slot)
			id = slot->backend_id;
	}
	be = id ? bpf_map_lookup_elem(&meshd_lb_be, &id) : 0;
	if (!be || be->addr[10] != 0xff || be->addr[11] != 0xff)
		return -MESHD_DROP_NO_SERVICE_BACKEND; /* none, or an IPv6 backend for an IPv4 packet */
	__builtin_memset(nv, 0, sizeof(*nv));
	__builtin_memcpy(nv->addr, &be->addr[12], 4);
	nv->port = be->port;
	nv->svc_id = svc->svc_id;
	return 1;
}

/* Records the translation to the picked backend both ways and rewrites the
 * packet (*t becomes the backend tuple). */
static __always_inline int meshd_nat_commit(struct __sk_buff *skb, struct meshd_tuple *t, const struct meshd_nat_value *nv)
{
	struct meshd_nat_key k = {}, rk = {};
	struct meshd_nat_value rv = {};

	meshd_nat_fwd_key(&k, t);
	if (bpf_map_update_elem(&meshd_nat, &k, nv, BPF_ANY) < 0)
		return -MESHD_DROP_NAT_FAILED;
	__builtin_memcpy(rk.saddr, nv->addr, 16);
	__builtin_memcpy(rk.daddr, t->saddr, 16);
	rk.sport = nv->port;
	rk.dport = t->sport;
	rk.proto = t->proto;
	rk.family = 4;
	rk.dir = MESHD_NAT_REV;
	__builtin_memcpy(rv.addr, t->daddr, 16);
	rv.port = t->dport;
	rv.svc_id = nv->svc_id;
	if (bpf_map_update_elem(&meshd_nat, &rk, &rv, BPF_ANY) < 0)
		return -MESHD_DROP_NAT_FAILED;
	return meshd_nat_apply(skb, t, nv);
}

/* Records that this connection keeps its VIP (it goes to the proxy, which
 * balances it itself): a forward entry that maps the VIP to itself. */
static __always_inline int meshd_nat_keep(const struct meshd_tuple *t, __u32 svc_id)
{
	struct meshd_nat_key k = {};
	struct meshd_nat_value nv = {};

	meshd_nat_fwd_key(&k, t);
	__builtin_memcpy(nv.addr, t->daddr, 16);
	nv.port = t->dport;
	nv.svc_id = svc_id;
	return bpf_map_update_elem(&meshd_nat, &k, &nv, BPF_ANY) < 0 ? -MESHD_DROP_NAT_FAILED : 0;
}

/* Traffic entering a pod: a reply from a backend gets the VIP back as its source. */
static __always_inline int meshd_nat_rev(struct __sk_buff *skb, const struct meshd_config *cfg, const struct meshd_tuple *t)
{
	struct meshd_nat_key k = {};
	struct meshd_nat_value *v;
	__be32 old_addr, new_addr;

	if (!meshd_nat_applies(cfg, t))
		return 0;
	__builtin_memcpy(k.saddr, t->saddr, 16);
	__builtin_memcpy(k.daddr, t->daddr, 16);
	k.sport = t->sport;
	k.dport = t->dport;
	k.proto = t->proto;
	k.family = 4;
	k.dir = MESHD_NAT_REV;
	v = bpf_map_lookup_elem(&meshd_nat, &k);
	if (!v)
		return 0;
	__builtin_memcpy(&old_addr, t->saddr, 4);
	__builtin_memcpy(&new_addr, v->addr, 4);
	return meshd_nat_rewrite(skb, t, MESHD_IP_SADDR_OFF, old_addr, new_addr, 0, t->sport, v->port);
}

#endif
