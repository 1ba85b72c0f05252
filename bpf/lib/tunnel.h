/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Tunnel mode: encapsulation through a collect-metadata tunnel device, the
 * sender's security identity carried in the VNI (as Cilium carries it).
 *
 * meshd_tunnel maps another node's pod CIDR to that node's address and the
 * local tunnel device; a destination with no entry is not tunnelled (native
 * mode keeps the map empty). The receiving side (bpf/overlay.c) reads the
 * identity back from the key, so the destination node judges the real client
 * without looking the source up in its own ipcache. */
#ifndef MESHD_LIB_TUNNEL_H
#define MESHD_LIB_TUNNEL_H

#include "datapath.h"

#ifndef MESHD_TUNNEL_MAX
#define MESHD_TUNNEL_MAX 4096
#endif

/* The VNI is 24 bits wide: identities above do not fit (nor do they in the mark). */
#define MESHD_TUNNEL_VNI_MASK 0xFFFFFF

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MESHD_TUNNEL_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct meshd_ipcache_key);
	__type(value, struct meshd_tunnel_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_tunnel SEC(".maps");

/* The tunnel entry of an IPv4 address (network order), or 0. */
static __always_inline struct meshd_tunnel_value *meshd_tunnel_lookup4(__be32 daddr)
{
	struct meshd_ipcache_key k = {};

	k.family = 4;
	k.prefixlen = 32 + 32;
	__builtin_memcpy(k.addr, &daddr, 4);
	return bpf_map_lookup_elem(&meshd_tunnel, &k);
}

/* Puts the tunnel key (outer destination, identity as VNI) on the packet;
 * the caller redirects it to tv->ifindex or lets the device send it.
 * Negative drop reason on failure. */
static __always_inline int meshd_tunnel_set_key(struct __sk_buff *skb, const struct meshd_tunnel_value *tv,
						__u32 identity)
{
	struct bpf_tunnel_key key = {};

	if (identity > MESHD_TUNNEL_VNI_MASK)
		return -MESHD_DROP_TUNNEL_FAILED;
	key.remote_ipv4 = bpf_ntohl(tv->endpoint); /* the helper takes host order */
	key.tunnel_id = identity;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return -MESHD_DROP_TUNNEL_FAILED;
	return 0;
}

/* The identity as the skb mark that carries it to the pod's hook (layout of
 * enum meshd_mark; the inverse is meshd_identity_from_mark in bpf/lxc.c). */
static __always_inline __u32 meshd_tunnel_mark(__u32 identity)
{
	return ((identity & 0xFFFF) << MESHD_MARK_IDENTITY_SHIFT) | MESHD_MARK_MAGIC_TUNNEL |
	       ((identity >> MESHD_MARK_IDENTITY_SHIFT) & MESHD_MARK_IDENTITY_HIGH_MASK);
}

#endif
