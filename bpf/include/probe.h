/* Shared between bpf/probe.c and src/datapath/probe.ts (struct codec) and
 * src/datapath/abi.ts (enum), checked against probe.o's BTF by
 * test/integration/bpf-abi.test.ts. */
#ifndef MESHD_PROBE_H
#define MESHD_PROBE_H

enum meshd_probe {
	MESHD_PROBE_MAGIC = 0x6d657368, /* "mesh" */
};

/* Keeps the enum in the object's BTF (see meshd_datapath_abi); never read. */
const volatile enum meshd_probe meshd_probe_abi = MESHD_PROBE_MAGIC;

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
