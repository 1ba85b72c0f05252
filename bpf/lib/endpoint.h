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
