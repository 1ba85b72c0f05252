/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Local endpoints (keyed by the host-side veth's ifindex, so one loaded
 * program serves every pod) and the datapath's global configuration. */
#ifndef MESHD_LIB_ENDPOINT_H
#define MESHD_LIB_ENDPOINT_H

#include "datapath.h"

#ifndef MESHD_ENDPOINTS_MAX
#define MESHD_ENDPOINTS_MAX 4096
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESHD_ENDPOINTS_MAX);
	__type(key, __u32);
	__type(value, struct meshd_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_endpoints SEC(".maps");

/* A local endpoint's addresses -> its host veth ifindex (the key of
 * meshd_endpoints): lets traffic between two local pods meet the
 * destination's ingress L7 policy at the source's tc ingress, the one hook
 * where bpf_sk_assign can hand it to the proxy. Keys as ipcache keys of a
 * whole address (prefixlen 64 or 160). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESHD_ENDPOINTS_MAX * 2);
	__type(key, struct meshd_ipcache_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_ep_ips SEC(".maps");

/* The host veth's ifindex of the local endpoint with address addr, or 0. */
static __always_inline __u32 *meshd_local_ifindex(__u8 family, const __u8 *addr)
{
	struct meshd_ipcache_key k = {};

	k.family = family;
	if (family == 4) {
		k.prefixlen = 64;
		__builtin_memcpy(k.addr, addr, 4);
	} else {
		k.prefixlen = 160;
		__builtin_memcpy(k.addr, addr, 16);
	}
	return bpf_map_lookup_elem(&meshd_ep_ips, &k);
}

static __always_inline struct meshd_endpoint *meshd_local_endpoint(__u8 family, const __u8 *addr)
{
	__u32 *ifindex = meshd_local_ifindex(family, addr);

	return ifindex ? bpf_map_lookup_elem(&meshd_endpoints, ifindex) : 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct meshd_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_config SEC(".maps");

static __always_inline struct meshd_config *meshd_get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&meshd_config, &zero);
}

#endif
