// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* probe_heavy: a program the verifier needs a long time for (it walks every
 * iteration of the bounded loop). Used only to prove that loading an object
 * through the addon does not block Node's event loop.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define HEAVY_ITERS 60000

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} meshd_heavy_acc SEC(".maps");

SEC("tc")
int meshd_probe_heavy(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u64 acc = skb->len;

	for (int i = 0; i < HEAVY_ITERS; i++)
		acc = acc * 31 + (acc >> 7) + i;

	__u64 *v = bpf_map_lookup_elem(&meshd_heavy_acc, &zero);
	if (v)
		*v = acc;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
