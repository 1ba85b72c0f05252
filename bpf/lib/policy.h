/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Policy lookup: global maps keyed (endpoint, remote identity, direction,
 * protocol, port prefix). Entries for one exact port sit in a hash, port
 * ranges (as aligned prefixes), any-port and any-protocol entries in an LPM
 * trie. At most four lookups whatever the number of rules: for the remote
 * identity, then for any identity (0), the hash and on a miss the trie.
 * Within one identity the longest prefix wins (an exact port, then a
 * covering port-range prefix, then any port, then any protocol); the agent
 * copies a REDIRECT into every ALLOW key it covers and a DENY into every key
 * it covers, so a longer key never hides a stronger shorter one
 * (src/datapath/endpoint/policy-map-state.ts). Across the two lookups DENY beats
 * REDIRECT beats ALLOW. */
#ifndef MESHD_LIB_POLICY_H
#define MESHD_LIB_POLICY_H

#include "datapath.h"

#ifndef MESHD_POLICY_MAX
#define MESHD_POLICY_MAX 262144
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MESHD_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct meshd_policy_key);
	__type(value, struct meshd_policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_policy SEC(".maps");

struct meshd_policy_result {
	__u8 verdict; /* 0: nothing matched */
	__u16 proxy_port;
	__u32 rule_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESHD_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct meshd_policy_key); /* prefixlen always 96 */
	__type(value, struct meshd_policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_pol_exact SEC(".maps");

static __always_inline __u8 meshd_verdict_rank(__u8 v)
{
	return v == MESHD_VERDICT_DENY ? 3 : v == MESHD_VERDICT_REDIRECT ? 2 : v == MESHD_VERDICT_ALLOW ? 1 : 0;
}

static __always_inline void meshd_policy_lookup(__u32 ep_id, __u8 egress, __u32 identity, __u8 proto,
						 __be16 dport, struct meshd_policy_result *res)
{
	struct meshd_policy_key k = {
		.prefixlen = 96,
		.ep_id = ep_id,
		.identity = identity,
		.egress = egress,
		.proto = proto,
		.dport = dport,
	};
	struct meshd_policy_value *a, *b;

	res->verdict = 0;
	res->proxy_port = 0;
	res->rule_id = 0;
	a = bpf_map_lookup_elem(&meshd_pol_exact, &k);
	if (!a)
		a = bpf_map_lookup_elem(&meshd_policy, &k);
	b = 0;
	if (identity) {
		k.identity = 0;
		b = bpf_map_lookup_elem(&meshd_pol_exact, &k);
		if (!b)
			b = bpf_map_lookup_elem(&meshd_policy, &k);
	}
	if (a) {
		res->verdict = a->verdict;
		res->proxy_port = a->proxy_port;
		res->rule_id = a->rule_id;
	}
	if (b && meshd_verdict_rank(b->verdict) > meshd_verdict_rank(res->verdict)) {
		res->verdict = b->verdict;
		res->proxy_port = b->proxy_port;
		res->rule_id = b->rule_id;
	}
}

#endif
