/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing into the tuple every other helper works on.
 * Headers are read directly from the linear area when they are there (the
 * common case, and several helper calls cheaper per packet), and with
 * bpf_skb_load_bytes otherwise (headers in paged data after GRO).
 * IPv6 extension headers are not walked: such a packet is classified with
 * its first next-header value and port 0 (so only an any-protocol/any-port
 * entry can allow it). */
#ifndef MESHD_LIB_PARSE_H
#define MESHD_LIB_PARSE_H

#include "drop_reasons.h"

#define MESHD_ETH_HLEN 14
#define MESHD_ETH_P_IP 0x0800
#define MESHD_ETH_P_IPV6 0x86DD
#define MESHD_IPPROTO_ICMP 1
#define MESHD_IPPROTO_TCP 6
#define MESHD_IPPROTO_UDP 17
#define MESHD_IPPROTO_ICMPV6 58
#define MESHD_IPPROTO_SCTP 132
#define MESHD_TCP_FIN 0x01
#define MESHD_TCP_SYN 0x02
#define MESHD_TCP_RST 0x04
#define MESHD_TCP_ACK 0x10

struct meshd_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u32 l3_off;
	__u32 l4_off;
};

/* Reads len bytes at off: direct packet access when linear, the helper otherwise. */
static __always_inline int meshd_load(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	void *p;

	if (off > 128)
		return bpf_skb_load_bytes(skb, off, to, len);
	p = data + off;
	if (p + len > data_end)
		return bpf_skb_load_bytes(skb, off, to, len);
	__builtin_memcpy(to, p, len);
	return 0;
}

enum {
	MESHD_PARSE_OK = 0,
	MESHD_PARSE_NOT_IP = 1, /* ARP and friends: not ours to judge */
};

static __always_inline int meshd_parse_l4(struct __sk_buff *skb, struct meshd_tuple *t)
{
	__u8 b[4];

	switch (t->proto) {
	case MESHD_IPPROTO_TCP:
	case MESHD_IPPROTO_UDP:
	case MESHD_IPPROTO_SCTP:
		if (meshd_load(skb, t->l4_off, &t->sport, 4) < 0)
			return -MESHD_DROP_INVALID_PACKET;
		if (t->proto == MESHD_IPPROTO_TCP &&
		    meshd_load(skb, t->l4_off + 13, &t->tcp_flags, 1) < 0)
			return -MESHD_DROP_INVALID_PACKET;
		return MESHD_PARSE_OK;
	case MESHD_IPPROTO_ICMP:
	case MESHD_IPPROTO_ICMPV6:
		/* type, code, checksum, then the echo identifier: a request's id
		 * is its "source port", a reply's id its "destination port", so
		 * the reply finds the request's conntrack entry reversed. */
		if (meshd_load(skb, t->l4_off, b, 1) < 0)
			return -MESHD_DROP_INVALID_PACKET;
		t->icmp_type = b[0];
		if (meshd_load(skb, t->l4_off + 4, b, 2) < 0)
			return -MESHD_DROP_INVALID_PACKET;
		{
			__be16 id;
			__u8 type = t->icmp_type;
			int v4 = t->proto == MESHD_IPPROTO_ICMP;

			__builtin_memcpy(&id, b, 2);
			if (type == (v4 ? 8 : 128))
				t->sport = id;
			else if (type == (v4 ? 0 : 129))
				t->dport = id;
			else
				t->dport = bpf_htons(type); /* one conntrack entry per type and peer */
		}
		return MESHD_PARSE_OK;
	default:
		return MESHD_PARSE_OK;
	}
}

static __always_inline int meshd_parse(struct __sk_buff *skb, struct meshd_tuple *t)
{
	__be16 proto;

	if (meshd_load(skb, 12, &proto, 2) < 0)
		return MESHD_PARSE_NOT_IP;
	t->l3_off = MESHD_ETH_HLEN;
	if (proto == bpf_htons(MESHD_ETH_P_IP)) {
		struct iphdr ip;

		if (meshd_load(skb, t->l3_off, &ip, sizeof(ip)) < 0)
			return -MESHD_DROP_INVALID_PACKET;
		if (ip.ihl < 5)
			return -MESHD_DROP_INVALID_PACKET;
		t->family = 4;
		__builtin_memcpy(t->saddr, &ip.saddr, 4);
		__builtin_memcpy(t->daddr, &ip.daddr, 4);
		t->proto = ip.protocol;
		t->l4_off = t->l3_off + ip.ihl * 4;
		/* a non-first fragment has no L4 header: port 0 */
		if (ip.frag_off & bpf_htons(0x1FFF))
			return MESHD_PARSE_OK;
		return meshd_parse_l4(skb, t);
	}
	if (proto == bpf_htons(MESHD_ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (meshd_load(skb, t->l3_off, &ip6, sizeof(ip6)) < 0)
			return -MESHD_DROP_INVALID_PACKET;
		t->family = 6;
		__builtin_memcpy(t->saddr, &ip6.saddr, 16);
		__builtin_memcpy(t->daddr, &ip6.daddr, 16);
		t->proto = ip6.nexthdr;
		t->l4_off = t->l3_off + sizeof(ip6);
		return meshd_parse_l4(skb, t);
	}
	return MESHD_PARSE_NOT_IP;
}

/* The port a policy lookup uses: ICMP rules are keyed by type (as Cilium's
 * are), while the tuple's ports of an echo carry its identifier. */
static __always_inline __be16 meshd_policy_port(const struct meshd_tuple *t)
{
	if (t->proto == MESHD_IPPROTO_ICMP || t->proto == MESHD_IPPROTO_ICMPV6)
		return bpf_htons(t->icmp_type);
	return t->dport;
}

/* Neighbour discovery and link-local multicast (MLD reports travel behind a
 * hop-by-hop header to ff02::/16) must flow whatever the policy, or IPv6
 * stops working; neither leaves the link. */
static __always_inline int meshd_is_ndp(const struct meshd_tuple *t)
{
	if (t->family != 6)
		return 0;
	if (t->daddr[0] == 0xff && t->daddr[1] == 0x02)
		return 1;
	return t->proto == MESHD_IPPROTO_ICMPV6 && t->icmp_type >= 133 && t->icmp_type <= 137;
}

#endif
