/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Counters in per-CPU arrays of __u64 (meshd_metrics, meshd_lb_stats,
 * meshd_sk_stats); the agent sums a slot over the possible CPUs. */
#ifndef MESHD_LIB_COUNTER_H
#define MESHD_LIB_COUNTER_H

#include <bpf/bpf_helpers.h>

/* Declares `name`, a per-CPU array of `slots` __u64 counters indexed by
 * __u32, pinned by name so that counts survive an agent restart. */
#define MESHD_PERCPU_COUNTERS(name, slots)                         \
	struct {                                                   \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);           \
		__uint(max_entries, slots);                        \
		__type(key, __u32);                                \
		__type(value, __u64);                              \
		__uint(pinning, LIBBPF_PIN_BY_NAME);               \
	} name SEC(".maps")

/* Adds one to `slot` of the per-CPU array `map`; a slot outside the array is
 * ignored. Each CPU owns its copy of the value: no atomic needed. */
static __always_inline void meshd_percpu_inc(void *map, __u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(map, &slot);

	if (v)
		*v += 1;
}

#endif
