// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A program the verifier must reject (packet read without a bounds check
 * against data_end), so tests can see the verifier log travel into a JS
 * exception. (A missing NULL check on an array lookup with a constant key is
 * no longer an error on recent kernels, so it cannot serve here.) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int meshd_reject(struct __sk_buff *skb)
{
	__u32 *p = (__u32 *)(long)skb->data;

	return *p == 0; /* no check against skb->data_end */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
