/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Load balancing for clients outside the node (bpf/nodeport.c): a packet
 * arriving on a native device for a NodePort, external or load-balancer
 * frontend is sent to a backend chosen from the socket LB's maps
 * (bpf/lib/lb.h), the choice recorded both ways in meshd_np_nat, and the
 * backend's replies get the frontend back as their source.
 *
 * A backend on this node keeps the client's address (no SNAT). A backend on
 * another node gets the packet with the node's own address as its source
 * (Cilium's loadBalancer.mode=snat), so its reply comes back through this
 * node, where the ingress hook restores client and frontend. IPv4 only. */
#ifndef MESHD_LIB_NODEPORT_H
#define MESHD_LIB_NODEPORT_H

#include "datapath.h"
#include "lb.h"
#include "endpoint.h"
#include "nat.h"
#include "parse.h"

#ifndef MESHD_NP_NAT_MAX
#define MESHD_NP_NAT_MAX 262144
#endif

/* The source ports SNAT hides clients behind (Linux's default ephemeral range). */
#define MESHD_NP_SNAT_PORT_MIN 32768
#define MESHD_NP_SNAT_PORT_SPAN 28232
#define MESHD_NP_SNAT_TRIES 8

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESHD_NP_NAT_MAX);
	__type(key, struct meshd_nat_key);
	__type(value, struct meshd_np_nat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_np_nat SEC(".maps");

/* The native devices this program runs on, by ifindex, with their SNAT address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct meshd_np_dev);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_np_dev SEC(".maps");

MESHD_PERCPU_COUNTERS(meshd_np_stats, MESHD_NP_STAT_MAX);

static __always_inline void np_stat(__u32 which)
{
	meshd_percpu_inc(&meshd_np_stats, which);
}

static __always_inline void np_key(struct meshd_nat_key *k, __be32 saddr, __be32 daddr, __be16 sport, __be16 dport,
				   __u8 proto, __u8 dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, &saddr, 4);
	__builtin_memcpy(k->daddr, &daddr, 4);
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->family = 4;
	k->dir = dir;
}

static __always_inline __be32 np_saddr(const struct meshd_tuple *t)
{
	__be32 a;

	__builtin_memcpy(&a, t->saddr, 4);
	return a;
}

static __always_inline __be32 np_daddr(const struct meshd_tuple *t)
{
	__be32 a;

	__builtin_memcpy(&a, t->daddr, 4);
	return a;
}

/* Rewrites the destination and/or the source of the packet (0 or a negative drop reason). */
static __always_inline int np_rewrite(struct __sk_buff *skb, const struct meshd_tuple *t, bool dst, __be32 addr,
				      __be16 port)
{
	if (dst)
		return meshd_nat_rewrite(skb, t, MESHD_IP_DADDR_OFF, np_daddr(t), addr, 2, t->dport, port);
	return meshd_nat_rewrite(skb, t, MESHD_IP_SADDR_OFF, np_saddr(t), addr, 0, t->sport, port);
}

#ifndef AF_INET
#define AF_INET 2
#endif

/* Where a translated packet whose source or destination became an address of
 * this node leaves: the stack would drop it on input as a martian (a local
 * source arriving from outside), so it is forwarded here, the FIB choosing
 * the device and bpf_redirect_neigh the next hop's MAC. 0: the ifindex is
 * unknown, *ifindex filled otherwise. */
static __always_inline int np_fib_ifindex(struct __sk_buff *skb, __be32 saddr, __be32 daddr, __u8 proto, __u32 *ifindex)
{
	struct bpf_fib_lookup p = {};
	int ret;

	p.family = AF_INET;
	p.l4_protocol = proto;
	p.tot_len = (__u16)skb->len;
	p.ifindex = skb->ifindex;
	p.ipv4_src = saddr;
	p.ipv4_dst = daddr;
	ret = bpf_fib_lookup(skb, &p, sizeof(p), 0);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return 0;
	*ifindex = p.ifindex;
	return 1;
}

/* Forwards a packet that was rewritten to (saddr -> daddr) out of the device
 * the FIB picks; TC_ACT_OK (the stack decides) when it picks none. */
static __always_inline int np_forward(struct __sk_buff *skb, __be32 saddr, __be32 daddr, __u8 proto)
{
	__u32 ifindex = 0;

	if (!np_fib_ifindex(skb, saddr, daddr, proto, &ifindex))
		return TC_ACT_OK;
	return bpf_redirect_neigh(ifindex, 0, 0, 0);
}

/* The service frontend of an outside client's packet: NULL when the
 * destination is no frontend, or one a client outside the node may not use
 * (a ClusterIP). */
static __always_inline struct meshd_lb_svc_value *np_frontend(const struct meshd_tuple *t, struct meshd_lb_svc_key *sk)
{
	struct meshd_lb_svc_value *svc;

	__builtin_memset(sk, 0, sizeof(*sk));
	/* the socket LB's maps hold IPv4 as IPv4-mapped IPv6 */
	sk->addr[10] = 0xff;
	sk->addr[11] = 0xff;
	__builtin_memcpy(&sk->addr[12], t->daddr, 4);
	sk->port = t->dport;
	sk->proto = t->proto;
	svc = bpf_map_lookup_elem(&meshd_lb_svc, sk);
	if (!svc || svc->scope == MESHD_LB_SCOPE_CLUSTER_IP)
		return 0;
	return svc;
}

/* The backend for a new connection, as the per-packet path of bpf/lxc.c
 * chooses it: Maglev on the client's address and port where the service
 * uses Maglev, else a random slot. NULL: none, or not an IPv4 backend. */
static __always_inline struct meshd_lb_backend *np_backend(const struct meshd_tuple *t, struct meshd_lb_svc_key *sk,
							    const struct meshd_lb_svc_value *svc)
{
	struct meshd_lb_svc_value *slot;
	struct meshd_lb_backend *be;
	__u32 id = 0;

	if (svc->flags & MESHD_LB_F_MAGLEV)
		id = maglev_backend(svc->svc_id, ((__u64)t->sport << 32) | np_saddr(t));
	if (!id) {
		sk->slot = (__u16)(bpf_get_prandom_u32() % svc->count) + 1;
		slot = bpf_map_lookup_elem(&meshd_lb_svc, sk);
		sk->slot = 0;
		if (slot)
			id = slot->backend_id;
	}
	be = id ? bpf_map_lookup_elem(&meshd_lb_be, &id) : 0;
	if (!be || be->addr[10] != 0xff || be->addr[11] != 0xff)
		return 0;
	return be;
}

/* Claims a source port on the node's address for a connection to a remote
 * backend: the reply's key (backend -> node:port) must be free. Tries the
 * client's own port first. 0 when every try found it taken. */
static __always_inline __be16 np_snat_port(const struct meshd_tuple *t, __be32 be_addr, __be16 be_port,
					   __be32 node, const struct meshd_np_nat_value *rv)
{
	struct meshd_nat_key rk;
	__be16 port = t->sport;
	int i;

	for (i = 0; i < MESHD_NP_SNAT_TRIES; i++) {
		np_key(&rk, be_addr, node, be_port, port, t->proto, MESHD_NAT_REV);
		if (bpf_map_update_elem(&meshd_np_nat, &rk, rv, BPF_NOEXIST) == 0)
			return port;
		port = bpf_htons(MESHD_NP_SNAT_PORT_MIN + bpf_get_prandom_u32() % MESHD_NP_SNAT_PORT_SPAN);
	}
	return 0;
}

/* A new connection from outside to frontend svc: picks the backend, records
 * the translation both ways and rewrites the packet. 1: translated; a
 * negative drop reason otherwise. 2: translated with SNAT (the caller
 * forwards it: its source is now this node's). */
static __always_inline int np_new(struct __sk_buff *skb, const struct meshd_tuple *t, struct meshd_lb_svc_key *sk,
				  const struct meshd_lb_svc_value *svc)
{
	struct meshd_np_nat_value fv = {}, rv = {};
	struct meshd_nat_key fk, rk;
	struct meshd_lb_backend *be;
	struct meshd_np_dev *dev;
	__u32 ifindex = skb->ifindex;
	__be32 be_addr;
	int ret;

	if (svc->count == 0) {
		np_stat(MESHD_NP_STAT_NO_BACKEND);
		return -MESHD_DROP_NO_SERVICE_BACKEND;
	}
	be = np_backend(t, sk, svc);
	if (!be) {
		np_stat(MESHD_NP_STAT_NO_BACKEND);
		return -MESHD_DROP_NO_SERVICE_BACKEND;
	}
	__builtin_memcpy(&be_addr, &be->addr[12], 4);
	fv.to_addr = be_addr;
	fv.to_port = be->port;
	fv.svc_id = svc->svc_id;
	rv.to_addr = np_daddr(t);
	rv.to_port = t->dport;
	rv.svc_id = svc->svc_id;
	np_key(&fk, np_saddr(t), np_daddr(t), t->sport, t->dport, t->proto, MESHD_NAT_FWD);

	/* SNAT hides the client behind the address of the device the backend is
	 * reached through (a native device), else of the device it arrived on */
	if (np_fib_ifindex(skb, np_saddr(t), be_addr, t->proto, &ifindex) && !bpf_map_lookup_elem(&meshd_np_dev, &ifindex))
		ifindex = skb->ifindex;
	dev = bpf_map_lookup_elem(&meshd_np_dev, &ifindex);
	if (meshd_local_endpoint(4, &be->addr[12]) || !dev || !dev->ipv4) {
		/* a local backend sees the client's own address */
		np_key(&rk, be_addr, np_saddr(t), be->port, t->sport, t->proto, MESHD_NAT_REV);
		if (bpf_map_update_elem(&meshd_np_nat, &rk, &rv, BPF_ANY) < 0)
			return -MESHD_DROP_NAT_FAILED;
	} else {
		rv.flags = MESHD_NP_F_SNAT;
		rv.snat_addr = np_saddr(t);
		rv.snat_port = t->sport;
		fv.flags = MESHD_NP_F_SNAT;
		fv.snat_addr = dev->ipv4;
		fv.snat_port = np_snat_port(t, be_addr, be->port, dev->ipv4, &rv);
		if (!fv.snat_port) {
			np_stat(MESHD_NP_STAT_SNAT_FAILED);
			return -MESHD_DROP_NAT_FAILED;
		}
		np_stat(MESHD_NP_STAT_SNAT);
	}
	if (bpf_map_update_elem(&meshd_np_nat, &fk, &fv, BPF_ANY) < 0)
		return -MESHD_DROP_NAT_FAILED;
	ret = np_rewrite(skb, t, true, fv.to_addr, fv.to_port);
	if (ret == 0 && (fv.flags & MESHD_NP_F_SNAT))
		ret = np_rewrite(skb, t, false, fv.snat_addr, fv.snat_port);
	if (ret < 0)
		return ret;
	np_stat(MESHD_NP_STAT_XLATED);
	return (fv.flags & MESHD_NP_F_SNAT) ? 2 : 1;
}

#endif
