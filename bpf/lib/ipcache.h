/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ipcache: IP prefix -> security identity (pods, nodes, CIDR identities,
 * FQDN-learned addresses), both families. Whole addresses (/32, /128: pods,
 * nodes, FQDN-learned IPs, the bulk of the entries) sit in a hash, shorter
 * prefixes in an LPM trie; a hit in the hash is by definition the longest
 * prefix, so the trie is consulted only on a miss and stays small. An address
 * with no entry is `world`. */
#ifndef MESHD_LIB_IPCACHE_H
#define MESHD_LIB_IPCACHE_H

#include "datapath.h"

#ifndef MESHD_IPCACHE_MAX
#define MESHD_IPCACHE_MAX 262144
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MESHD_IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct meshd_ipcache_key);
	__type(value, struct meshd_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESHD_IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct meshd_ipcache_key); /* prefixlen always 64 or 160 */
	__type(value, struct meshd_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_ipc_host SEC(".maps");

static __always_inline __u32 meshd_ipcache_identity(__u8 family, const __u8 *addr)
{
	struct meshd_ipcache_key k = {};
	struct meshd_ipcache_value *v;

	k.family = family;
	if (family == 4) {
		k.prefixlen = 32 + 32;
		__builtin_memcpy(k.addr, addr, 4);
	} else {
		k.prefixlen = 32 + 128;
		__builtin_memcpy(k.addr, addr, 16);
	}
	v = bpf_map_lookup_elem(&meshd_ipc_host, &k);
	if (!v)
		v = bpf_map_lookup_elem(&meshd_ipcache, &k);
	return v ? v->identity : MESHD_ID_WORLD;
}

#endif
