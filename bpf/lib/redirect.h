/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Hand a connection to the node proxy's transparent listener with
 * bpf_sk_assign (tc ingress only). The original destination stays in the
 * packet, so the proxy's accepted socket reports it from getsockname().
 *
 * Order matters: first the socket for the packet's own tuple (an already
 * accepted or half-open connection of the proxy: every packet after the SYN
 * needs it), then the listener on (proxy address, proxy port). Delivery
 * needs the proxy mark plus policy routing (`ip rule fwmark <mark>/<mask>
 * lookup T`, `local 0.0.0.0/0 dev lo table T`); the listener needs
 * IP_TRANSPARENT. No listener means the flow cannot be inspected, so it is
 * dropped (fail closed), never passed.
 *
 * The listener of a new TCP connection comes from the agent's steering map
 * (steer.h: the live proxies' sockets for the port) and, only when the map
 * has no open socket there, from the listener lookup on (proxy address,
 * proxy port); meshd_steer_stats counts which one was used. */
#ifndef MESHD_LIB_REDIRECT_H
#define MESHD_LIB_REDIRECT_H

#include "datapath.h"
#include "drop_reasons.h"
#include "parse.h"
#include "steer.h"

#define MESHD_BPF_TCP_LISTEN 10

static __always_inline int meshd_fill_sock_tuple(const struct meshd_tuple *t, struct bpf_sock_tuple *st)
{
	if (t->family == 4) {
		__builtin_memcpy(&st->ipv4.saddr, t->saddr, 4);
		__builtin_memcpy(&st->ipv4.daddr, t->daddr, 4);
		st->ipv4.sport = t->sport;
		st->ipv4.dport = t->dport;
		return sizeof(st->ipv4);
	}
	__builtin_memcpy(st->ipv6.saddr, t->saddr, 16);
	__builtin_memcpy(st->ipv6.daddr, t->daddr, 16);
	st->ipv6.sport = t->sport;
	st->ipv6.dport = t->dport;
	return sizeof(st->ipv6);
}

/* Returns 0 when assigned, or a negative drop reason. */
static __always_inline int meshd_redirect_to_proxy(struct __sk_buff *skb, const struct meshd_tuple *t,
						    __u16 proxy_port, const struct meshd_config *cfg)
{
	struct bpf_sock_tuple st = {};
	struct bpf_sock *sk = 0;
	int len, err;

	if (t->proto != MESHD_IPPROTO_TCP && t->proto != MESHD_IPPROTO_UDP)
		return -MESHD_DROP_PROXY_UNAVAILABLE;
	len = meshd_fill_sock_tuple(t, &st);
	if (t->proto == MESHD_IPPROTO_TCP) {
		sk = bpf_skc_lookup_tcp(skb, &st, len, BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			if (sk->state != MESHD_BPF_TCP_LISTEN)
				goto assign;
			bpf_sk_release(sk);
		}
	}
	if (t->family == 4) {
		st.ipv4.daddr = cfg->proxy_ipv4;
		st.ipv4.dport = bpf_htons(proxy_port);
	} else {
		/* ::1 */
		__builtin_memset(st.ipv6.daddr, 0, 16);
		st.ipv6.daddr[3] = bpf_htonl(1);
		st.ipv6.dport = bpf_htons(proxy_port);
	}
	if (t->proto == MESHD_IPPROTO_TCP) {
		struct meshd_steer_key k = {};

		if (meshd_steer_key(proxy_port, t->family, bpf_get_prandom_u32(), &k)) {
			sk = bpf_map_lookup_elem(&meshd_steer_socks, &k);
			if (sk) {
				meshd_percpu_inc(&meshd_steer_stats, MESHD_STEER_TC_MAP);
				goto assign;
			}
		}
		meshd_percpu_inc(&meshd_steer_stats, MESHD_STEER_TC_LOOKUP);
		sk = bpf_skc_lookup_tcp(skb, &st, len, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return -MESHD_DROP_PROXY_UNAVAILABLE;
		if (sk->state != MESHD_BPF_TCP_LISTEN) {
			bpf_sk_release(sk);
			return -MESHD_DROP_PROXY_UNAVAILABLE;
		}
	} else {
		sk = bpf_sk_lookup_udp(skb, &st, len, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return -MESHD_DROP_PROXY_UNAVAILABLE;
	}
assign:
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return -MESHD_DROP_PROXY_ASSIGN_FAILED;
	skb->mark = (skb->mark & ~cfg->proxy_mark_mask) | cfg->proxy_mark;
	return 0;
}

/* A reply to the node proxy's transparent upstream leg: the DNS proxy asked
 * the pod's resolver from the client pod's own address (and port), so the
 * resolver answers that pod's address. The socket that asked is in the host
 * namespace, bound to the pod's address with IP_TRANSPARENT and marked with
 * the pod's identity (MESHD_MARK_MAGIC_IDENTITY); hand it the reply instead of
 * forwarding it to the pod, the same way a redirect is delivered (proxy mark,
 * policy routing). Only a socket bound to exactly the packet's destination
 * address and port and carrying the identity magic is taken: a host socket on
 * a wildcard address (or anything else) is never handed a pod's traffic.
 * Returns 1 when assigned, 0 when no such socket waits (the packet goes on as
 * before), or a negative drop reason. */
static __always_inline int meshd_steer_to_upstream_socket(struct __sk_buff *skb, const struct meshd_tuple *t,
							   const struct meshd_config *cfg)
{
	struct bpf_sock_tuple st = {};
	struct bpf_sock *sk;
	int len, err, ours;

	len = meshd_fill_sock_tuple(t, &st);
	if (t->proto == MESHD_IPPROTO_UDP)
		sk = bpf_sk_lookup_udp(skb, &st, len, BPF_F_CURRENT_NETNS, 0);
	else if (t->proto == MESHD_IPPROTO_TCP)
		sk = bpf_sk_lookup_tcp(skb, &st, len, BPF_F_CURRENT_NETNS, 0);
	else
		return 0;
	if (!sk)
		return 0;
	ours = (sk->mark & MESHD_MARK_MAGIC_MASK) == MESHD_MARK_MAGIC_IDENTITY && sk->src_port == bpf_ntohs(t->dport);
	if (t->family == 4) {
		__be32 d;

		__builtin_memcpy(&d, t->daddr, 4);
		ours = ours && sk->src_ip4 == d;
	} else {
		__u32 d[4];

		__builtin_memcpy(d, t->daddr, 16);
		ours = ours && sk->src_ip6[0] == d[0] && sk->src_ip6[1] == d[1] && sk->src_ip6[2] == d[2] &&
		       sk->src_ip6[3] == d[3];
	}
	if (!ours || (t->proto == MESHD_IPPROTO_TCP && sk->state == MESHD_BPF_TCP_LISTEN)) {
		bpf_sk_release(sk);
		return 0;
	}
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return -MESHD_DROP_PROXY_ASSIGN_FAILED;
	skb->mark = (skb->mark & ~cfg->proxy_mark_mask) | cfg->proxy_mark;
	return 1;
}

#endif
