/* Shared between bpf/probe.c and src/datapath/probe.ts (checked by a BTF test). */
#ifndef MESHD_PROBE_H
#define MESHD_PROBE_H

#define MESHD_PROBE_MAGIC 0x6d657368 /* "mesh" */

#ifndef TC_ACT_OK
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#endif

struct meshd_probe_stats {
	__u64 runs;
	__u32 last_len;
	__u32 magic;
};

#endif
