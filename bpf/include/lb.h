/* Service load balancing at the socket layer: the maps' keys and values.
 *
 * Shared between bpf/sock.c (and bpf/lib/lb.h) and src/datapath/lb/lb-maps.ts
 * (struct codecs) and src/datapath/abi.ts (enums), which
 * test/integration/bpf-abi.test.ts compares with sock.o's BTF.
 *
 * Addresses are 16 bytes in every struct: IPv6 as is, IPv4 as IPv4-mapped
 * IPv6 (::ffff:a.b.c.d), so one set of maps serves both families and a v6
 * socket connecting to a v4-mapped VIP finds the v4 service.
 *
 * The service map holds two kinds of entries under one key type:
 *   slot 0      the service entry: its id, backend count, flags;
 *   slot 1..n   one entry per backend slot: the backend's id.
 * Writers fill backends and slots first and flip the service entry (its
 * count) last, so a reader never sees a count larger than the slots behind it.
 */
#ifndef MESHD_LB_H
#define MESHD_LB_H

/* Constants shared with the agent are enums (see bpf/include/datapath.h):
 * mirrored in src/datapath/abi.ts and checked against sock.o's BTF. */
enum meshd_lb_limit {
	/* Maglev lookup-table size: a prime, ~ 100x the backends a Maglev
	 * service is expected to have for an even spread (Maglev paper, 3.4). */
	MESHD_LB_MAGLEV_M = 1021,
	/* Backend slots a single service may have (slots are __u16; the agent caps). */
	MESHD_LB_MAX_SLOTS = 4096,
};

/* struct meshd_lb_svc_value.flags */
enum meshd_lb_flag {
	MESHD_LB_F_AFFINITY = 0x1, /* ClientIP session affinity */
	MESHD_LB_F_MAGLEV = 0x2,   /* Maglev table instead of random choice */
};

/* struct meshd_lb_svc_value.scope: what kind of frontend this is (for
 * observability; the lookup is the same). */
enum meshd_lb_scope {
	MESHD_LB_SCOPE_CLUSTER_IP = 0,
	MESHD_LB_SCOPE_NODE_PORT = 1,
	MESHD_LB_SCOPE_EXTERNAL_IP = 2,
	MESHD_LB_SCOPE_LB_INGRESS = 3,
};

struct meshd_lb_svc_key {
	__u8 addr[16];  /* VIP, IPv4-mapped for IPv4 */
	__be16 port;    /* network order */
	__u8 proto;     /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad0;
	__u16 slot;     /* 0: service entry; 1..count: backend slot */
	__u16 pad;
};

struct meshd_lb_svc_value {
	__u32 backend_id;       /* slot entries: the backend */
	__u32 svc_id;           /* the service's id (affinity, Maglev, reverse NAT) */
	__u16 count;            /* service entry: number of backend slots (0 refuses) */
	__u8 flags;             /* MESHD_LB_F_* */
	__u8 scope;             /* MESHD_LB_SCOPE_* */
	__u32 affinity_timeout; /* seconds, with MESHD_LB_F_AFFINITY */
};

struct meshd_lb_backend {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 pad;
};

/* Per-socket memory of the translation: which VIP a socket (cookie) meant
 * when it was sent to a backend, for getpeername() and for the source of
 * UDP replies (recvmsg). */
struct meshd_lb_revnat_key {
	__u64 cookie;    /* bpf_get_socket_cookie() */
	__u8 addr[16];   /* backend address */
	__be16 port;     /* backend port */
	__u16 pad;
	__u32 pad2;
};

struct meshd_lb_revnat_value {
	__u8 addr[16];   /* VIP */
	__be16 port;
	__u16 pad;
	__u32 svc_id;
};

/* ClientIP affinity. At connect() the client's source address may not be
 * chosen yet; the network namespace cookie identifies the client instead (one
 * pod = one namespace), as with Kubernetes' per-client-IP semantics. */
struct meshd_lb_affinity_key {
	__u64 client;   /* bpf_get_netns_cookie() */
	__u32 svc_id;
	__u32 pad;
};

struct meshd_lb_affinity_value {
	__u64 last_used_ns; /* bpf_ktime_get_ns() */
	__u32 backend_id;
	__u32 pad;
};

/* (service, backend) pairs of affinity services: lets the program check that
 * a remembered backend still belongs to the service before reusing it. */
struct meshd_lb_affmatch_key {
	__u32 svc_id;
	__u32 backend_id;
};

/* A Maglev service's lookup table, one map value per service (replaced as a
 * whole, so a reader never sees half of an old table and half of a new one). */
struct meshd_lb_maglev {
	__u32 backend_ids[MESHD_LB_MAGLEV_M];
};

/* Counters in meshd_lb_stats (a per-CPU array indexed by these). */
enum meshd_lb_stat {
	MESHD_LB_STAT_XLATED = 0,     /* connect/sendmsg sent to a backend */
	MESHD_LB_STAT_REFUSED = 1,    /* service without backends: ECONNREFUSED */
	MESHD_LB_STAT_SKIPPED_NS = 2, /* hostNamespaceOnly: non-host socket left alone */
	MESHD_LB_STAT_AFFINITY = 3,   /* backend chosen by session affinity */
	MESHD_LB_STAT_REVNAT = 4,     /* getpeername/recvmsg rewritten to the VIP */
	MESHD_LB_STAT_MAX = 8,
};

/* Per-packet load balancing for clients outside the node (bpf/nodeport.c,
 * tc on the node's native devices): counters in meshd_np_stats (a per-CPU
 * array indexed by these). */
enum meshd_np_stat {
	MESHD_NP_STAT_XLATED = 0,     /* a new connection sent to a backend */
	MESHD_NP_STAT_REVNAT = 1,     /* a reply given the frontend back as its source */
	MESHD_NP_STAT_NO_BACKEND = 2, /* a frontend without a backend for this node: dropped */
	MESHD_NP_STAT_SNAT = 3,       /* a new connection to a backend on another node: SNATed */
	MESHD_NP_STAT_SNAT_FAILED = 4, /* no free SNAT port: dropped */
	MESHD_NP_STAT_MAX = 8,
};

/* The SNAT source of a native device (meshd_np_dev, keyed by ifindex): its
 * addresses, through which a remote backend's reply comes back (0 / :: when
 * it has none of the family). */
struct meshd_np_dev {
	__be32 ipv4;
	__u32 flags; /* unused, 0 */
	__u8 ipv6[16];
};

/* meshd_np_nat_value.flags */
enum meshd_np_flag {
	MESHD_NP_F_SNAT = 0x1, /* the backend is on another node: the source is rewritten too */
};

/* meshd_np_nat (LRU hash, key struct meshd_nat_key of bpf/include/datapath.h,
 * dir MESHD_NAT_FWD for the client's packets, MESHD_NAT_REV for the
 * backend's replies). IPv4 only.
 *   FWD: to = the backend; with SNAT, snat = the node address and port the
 *        client is hidden behind.
 *   REV: to = the frontend (the reply's new source); with SNAT, snat = the
 *        client (the reply's new destination). */
struct meshd_np_nat_value {
	__be32 to_addr;
	__be16 to_port;
	__u8 flags; /* MESHD_NP_F_* */
	__u8 pad;
	__be32 snat_addr;
	__be16 snat_port;
	__u16 pad2;
	__u32 svc_id;
};

/* meshd_np_nat6: the same for IPv6 (key family 6, whole addresses). */
struct meshd_np_nat6_value {
	__u8 to_addr[16];
	__u8 snat_addr[16];
	__be16 to_port;
	__be16 snat_port;
	__u8 flags; /* MESHD_NP_F_* */
	__u8 pad[3];
	__u32 svc_id;
};

/* Keeps the enums in the object's BTF (see meshd_datapath_abi); never read. */
struct meshd_lb_abi {
	enum meshd_lb_limit limit;
	enum meshd_lb_flag flag;
	enum meshd_lb_scope scope;
	enum meshd_lb_stat stat;
	enum meshd_np_stat np_stat;
	enum meshd_np_flag np_flag;
};
const volatile struct meshd_lb_abi meshd_lb_abi = {};

#endif
