// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* addon_kit: one small program per addon feature, for the addon's tests
 * (test/integration/addon-*.test.ts). Nothing in the datapath loads it.
 *  - kit_tc: counts packets in a pinned hash map and emits one ring-buffer
 *    event per packet carrying the .rodata tunable kit_tag.
 *  - kit_connect4: counts connect() calls per destination port;
 *    kit_connect4_alt counts them all under key 1.
 *  - kit_sockops / kit_skmsg: exist to be attached (sock_ops on a cgroup,
 *    sk_msg on a sockhash).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_OK 0

struct kit_event {
	__u64 tag;
	__u32 len;
	__u32 seq;
};

const volatile __u64 kit_tag = 0;
const volatile __u32 kit_mult = 1;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} kit_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} kit_array SEC(".maps");

struct kit_lpm_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__type(key, struct kit_lpm_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kit_lpm SEC(".maps");

/* A map type without batch operations (the addon falls back to a loop). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} kit_devmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} kit_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} kit_sockhash SEC(".maps");

static __always_inline void count(__u32 key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&kit_hash, &key);

	if (v)
		__sync_fetch_and_add(v, kit_mult);
	else
		bpf_map_update_elem(&kit_hash, &key, &one, BPF_NOEXIST);
}

SEC("tc")
int kit_tc(struct __sk_buff *skb)
{
	struct kit_event *e;
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&kit_array, &zero);

	count(0);
	e = bpf_ringbuf_reserve(&kit_events, sizeof(*e), 0);
	if (!e)
		return TC_ACT_OK;
	e->tag = kit_tag;
	e->len = skb->len;
	e->seq = seq ? (__u32)__sync_fetch_and_add(seq, 1) : 0;
	bpf_ringbuf_submit(e, 0);
	return TC_ACT_OK;
}

SEC("cgroup/connect4")
int kit_connect4(struct bpf_sock_addr *ctx)
{
	count(bpf_ntohs((__u16)ctx->user_port));
	return 1;
}

/* The same hook counting under key 1: a replacement for bpf_link_update. */
SEC("cgroup/connect4")
int kit_connect4_alt(struct bpf_sock_addr *ctx)
{
	count(1);
	return 1;
}

SEC("sockops")
int kit_sockops(struct bpf_sock_ops *skops)
{
	return 1;
}

SEC("sk_msg")
int kit_skmsg(struct sk_msg_md *msg)
{
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
