/* Maglev backend choice in the datapath. The lookup table itself is built in
 * userspace (src/datapath/lb/maglev.ts) and stored per service; the program only
 * hashes a flow key into it. */
#ifndef MESHD_LIB_MAGLEV_H
#define MESHD_LIB_MAGLEV_H

#include "../include/lb.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* svc_id */
	__type(value, struct meshd_lb_maglev);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* 4 KiB values: allocate only what services use */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_lb_maglev SEC(".maps");

/* 64-bit mix (splitmix64 finaliser): spreads socket cookies, which are
 * sequential, over the table. */
static __always_inline __u64 maglev_mix(__u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* The backend id at hash(flow) in the service's table, 0 if it has none. */
static __always_inline __u32 maglev_backend(__u32 svc_id, __u64 flow)
{
	struct meshd_lb_maglev *t = bpf_map_lookup_elem(&meshd_lb_maglev, &svc_id);
	__u32 idx;

	if (!t)
		return 0;
	idx = (__u32)maglev_mix(flow) % MESHD_LB_MAGLEV_M;
	/* The verifier does not derive bounds from a modulo, and clang drops
	 * a check it can prove redundant: hide idx from clang, keep the check. */
	barrier_var(idx);
	if (idx >= MESHD_LB_MAGLEV_M)
		return 0;
	return t->backend_ids[idx];
}

#endif
