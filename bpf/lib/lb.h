/* Socket-level service load balancing: the maps and the translation, shared
 * by the v4 and v6 hooks of bpf/sock.c. Addresses travel as four __u32 words
 * in network order (IPv4 as IPv4-mapped IPv6), matching bpf/include/lb.h.
 *
 * Every map here is pinned by name, so a restarted agent finds services,
 * backends, affinity and per-socket reverse translations where it left them.
 */
#ifndef MESHD_LIB_LB_H
#define MESHD_LIB_LB_H

#include <bpf/bpf_endian.h>

#include "../include/lb.h"
#include "counter.h"
#include "maglev.h"

#ifndef ECONNREFUSED
#define ECONNREFUSED 111
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct meshd_lb_svc_key);
	__type(value, struct meshd_lb_svc_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_lb_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* backend id, never 0 */
	__type(value, struct meshd_lb_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_lb_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct meshd_lb_revnat_key);
	__type(value, struct meshd_lb_revnat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_lb_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct meshd_lb_affinity_key);
	__type(value, struct meshd_lb_affinity_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_lb_affin SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct meshd_lb_affmatch_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_lb_affm SEC(".maps");

MESHD_PERCPU_COUNTERS(meshd_lb_stats, MESHD_LB_STAT_MAX);

static __always_inline void lb_stat(__u32 which)
{
	meshd_percpu_inc(&meshd_lb_stats, which);
}

static __always_inline void lb_addr_v4(__u32 a[4], __u32 ip4)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = bpf_htonl(0x0000ffff);
	a[3] = ip4;
}

static __always_inline bool lb_addr_is_v4(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/* Picks a backend id for the service entry `svc` (count > 0) found under
 * `key` (slot 0). Order: a still-valid affinity choice, then Maglev on the
 * socket cookie, then a random slot. */
static __always_inline __u32 lb_pick(void *ctx, struct meshd_lb_svc_key *key, const struct meshd_lb_svc_value *svc)
{
	struct meshd_lb_affinity_key ak = {};
	struct meshd_lb_affinity_value *av;
	struct meshd_lb_svc_value *slot;
	__u32 id = 0;
	__u64 now = 0;

	if (svc->flags & MESHD_LB_F_AFFINITY) {
		ak.client = bpf_get_netns_cookie(ctx);
		ak.svc_id = svc->svc_id;
		now = bpf_ktime_get_ns();
		av = bpf_map_lookup_elem(&meshd_lb_affin, &ak);
		if (av && now - av->last_used_ns <= (__u64)svc->affinity_timeout * 1000000000ULL) {
			struct meshd_lb_affmatch_key mk = { .svc_id = svc->svc_id, .backend_id = av->backend_id };

			if (bpf_map_lookup_elem(&meshd_lb_affm, &mk)) {
				id = av->backend_id;
				lb_stat(MESHD_LB_STAT_AFFINITY);
			}
		}
	}
	if (!id && (svc->flags & MESHD_LB_F_MAGLEV))
		id = maglev_backend(svc->svc_id, bpf_get_socket_cookie(ctx));
	if (!id) {
		key->slot = (__u16)(bpf_get_prandom_u32() % svc->count) + 1;
		slot = bpf_map_lookup_elem(&meshd_lb_svc, key);
		key->slot = 0;
		if (slot)
			id = slot->backend_id;
	}
	if (id && (svc->flags & MESHD_LB_F_AFFINITY)) {
		struct meshd_lb_affinity_value nv = { .last_used_ns = now, .backend_id = id };

		bpf_map_update_elem(&meshd_lb_affin, &ak, &nv, BPF_ANY);
	}
	return id;
}

/* The forward translation for connect() and unconnected sendmsg(): if
 * addr:port/proto is a service, rewrites addr/port to a backend's, records
 * the VIP for this socket and returns 1; returns 0 for anything that is not a
 * service (left alone) and -ECONNREFUSED for a service without backends.
 * `v4_only`: the socket is AF_INET and can only be sent to an IPv4 backend. */
static __always_inline int __lb_xlate_fwd(void *ctx, __u32 addr[4], __u16 *port, __u8 proto, bool v4_only)
{
	struct meshd_lb_svc_key key = {};
	struct meshd_lb_svc_value *svc;
	struct meshd_lb_backend *be;
	struct meshd_lb_revnat_key rk = {};
	struct meshd_lb_revnat_value rv = {};
	__u32 id;

	__builtin_memcpy(key.addr, addr, 16);
	key.port = *port;
	key.proto = proto;
	svc = bpf_map_lookup_elem(&meshd_lb_svc, &key);
	if (!svc)
		return 0;
	if (svc->count == 0) {
		lb_stat(MESHD_LB_STAT_REFUSED);
		return -ECONNREFUSED;
	}
	id = lb_pick(ctx, &key, svc);
	be = id ? bpf_map_lookup_elem(&meshd_lb_be, &id) : NULL;
	if (!be) {
		/* A slot pointing nowhere means the agent broke its write order. */
		lb_stat(MESHD_LB_STAT_REFUSED);
		return -ECONNREFUSED;
	}
	if (v4_only && !lb_addr_is_v4((const __u32 *)be->addr))
		return 0;

	rk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rk.addr, be->addr, 16);
	rk.port = be->port;
	__builtin_memcpy(rv.addr, addr, 16);
	rv.port = *port;
	rv.svc_id = svc->svc_id;
	bpf_map_update_elem(&meshd_lb_revnat, &rk, &rv, BPF_ANY);

	__builtin_memcpy(addr, be->addr, 16);
	*port = be->port;
	lb_stat(MESHD_LB_STAT_XLATED);
	return 1;
}

/* The reverse translation for getpeername() and recvmsg(): if this socket
 * was sent from a VIP to addr:port, rewrites addr:port back to the VIP. */
static __always_inline bool __lb_xlate_rev(void *ctx, __u32 addr[4], __u16 *port)
{
	struct meshd_lb_revnat_key rk = {};
	struct meshd_lb_revnat_value *rv;

	rk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rk.addr, addr, 16);
	rk.port = *port;
	rv = bpf_map_lookup_elem(&meshd_lb_revnat, &rk);
	if (!rv)
		return false;
	__builtin_memcpy(addr, rv->addr, 16);
	*port = rv->port;
	lb_stat(MESHD_LB_STAT_REVNAT);
	return true;
}

/* A socket going away: forget its reverse translation (the LRU would only
 * evict it under pressure). Known only for connected sockets, whose peer is
 * the backend; unconnected UDP entries age out of the LRU. */
static __always_inline void __lb_revnat_forget(void *ctx, const __u32 peer[4], __u16 port)
{
	struct meshd_lb_revnat_key rk = {};

	rk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rk.addr, peer, 16);
	rk.port = port;
	bpf_map_delete_elem(&meshd_lb_revnat, &rk);
}

#endif
