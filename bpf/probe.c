// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* probe: the smallest program that proves the chain C -> object -> addon ->
 * TypeScript on this kernel. `meshd doctor` and the foundation test run it
 * with BPF_PROG_TEST_RUN on a synthetic packet; it counts runs and records
 * the length of the last packet in an array map that userspace then reads.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "probe.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct meshd_probe_stats);
} meshd_probe_stats SEC(".maps");

SEC("tc")
int meshd_probe(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct meshd_probe_stats *st = bpf_map_lookup_elem(&meshd_probe_stats, &zero);

	if (!st)
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&st->runs, 1);
	st->last_len = skb->len;
	st->magic = MESHD_PROBE_MAGIC;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
