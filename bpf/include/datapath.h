/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Structs and constants shared by the endpoint datapath (bpf/lxc.c,
 * bpf/sockops.c) and the agent. Mirrors: src/datapath/maps.ts (struct codecs)
 * and src/datapath/abi.ts (enums); test/integration/bpf-abi.test.ts checks
 * both against the BTF of the compiled objects.
 *
 * Byte order: fields typed __be16/__be32 and addresses are network order; all
 * other integers are host order.
 */
#ifndef MESHD_DATAPATH_H
#define MESHD_DATAPATH_H

#ifndef TC_ACT_OK
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#endif

/* Constants shared with the agent are enums, never #defines: enums land in
 * the object's BTF (anchored by meshd_datapath_abi below), where
 * test/integration/bpf-abi.test.ts compares every one with its mirror in
 * src/datapath/abi.ts. */

/* Reserved identities (numbering as Cilium's). */
enum meshd_identity_reserved {
	MESHD_ID_UNKNOWN = 0,
	MESHD_ID_HOST = 1,
	MESHD_ID_WORLD = 2,
	/* a node's own traffic as another node sees it (the VNI of the
	 * node's traffic is MESHD_ID_HOST; bpf/overlay.c maps it to this,
	 * or to the sender's node identity in the ipcache) */
	MESHD_ID_REMOTE_NODE = 6,
};

/* Directions, from the endpoint's point of view. */
enum meshd_dir {
	MESHD_DIR_INGRESS = 0, /* entering the pod */
	MESHD_DIR_EGRESS = 1,  /* leaving the pod */
};

/* Policy verdicts stored in policy and conntrack values. */
enum meshd_verdict {
	MESHD_VERDICT_ALLOW = 1,
	MESHD_VERDICT_DENY = 2,
	MESHD_VERDICT_REDIRECT = 3,
};

/* meshd_endpoint.flags */
enum meshd_ep_flag {
	MESHD_EP_DEFAULT_DENY_INGRESS = 1 << 0,
	MESHD_EP_DEFAULT_DENY_EGRESS = 1 << 1,
};

/* meshd_config.flags */
enum meshd_cfg_flag {
	MESHD_CFG_PER_PACKET_LB = 1 << 0, /* socketLB.hostNamespaceOnly=true */
	MESHD_CFG_SOCKMAP_SHORTCUT = 1 << 1,
	/* policyAuditMode: a packet the policy would drop is reported
	 * (MESHD_EVENT_AUDIT) and passes; pods and the host firewall */
	MESHD_CFG_POLICY_AUDIT = 1 << 2,
	/* routingMode=tunnel: pod traffic to another node's pod CIDR is
	 * encapsulated by meshd_from_pod (lib/tunnel.h); off, the tunnel is
	 * not looked at (native mode pays nothing for it) */
	MESHD_CFG_TUNNEL = 1 << 3,
	/* hostFirewall.enabled: the pods' veths judge traffic between the host
	 * and its local pods by the host endpoint's policy (lib/host_policy.h);
	 * off, that step is not looked at (a pod's packet pays nothing for it) */
	MESHD_CFG_HOST_FIREWALL = 1 << 4,
};

/* meshd_ct_entry.flags */
enum meshd_ct_flag {
	/* remote_identity is not the ipcache's for the remote address: it came
	 * from the proxy's mark, or the connection kept a service VIP for the
	 * proxy */
	MESHD_CT_F_STORED_IDENTITY = 1 << 0,
	/* opened from another node through the tunnel (identity from the
	 * VNI): never the DNS proxy's upstream leg, whose replies are looked
	 * for only among the other stored-identity connections */
	MESHD_CT_F_FROM_TUNNEL = 1 << 1,
};

/* skb->mark layout, shared with the node proxy (SO_MARK on its upstream
 * sockets) and the policy routing rule. Bits 8..11 carry a magic. With
 * MESHD_MARK_MAGIC_IDENTITY the mark carries the original source identity,
 * its low 16 bits in bits 16..31 and its bits 16..23 in bits 0..7, so that
 * the destination's ingress policy sees the client, not the node.
 * MESHD_MARK_MAGIC_PROXY is the default of meshd_config.proxy_mark: packets
 * assigned to the proxy (the agent may configure another magic). */
enum meshd_mark {
	MESHD_MARK_MAGIC_MASK = 0x0F00,
	MESHD_MARK_MAGIC_IDENTITY = 0x0A00,
	MESHD_MARK_MAGIC_PROXY = 0x0B00,
	/* set by the overlay's ingress (bpf/overlay.c): the identity bits are the
	 * source identity the sending node put in the tunnel key's VNI */
	MESHD_MARK_MAGIC_TUNNEL = 0x0C00,
	/* identity bits 0..15 <-> mark bits 16..31; identity bits 16..23 <->
	 * mark bits 0..7: one shift by 16 each way */
	MESHD_MARK_IDENTITY_SHIFT = 16,
	MESHD_MARK_IDENTITY_HIGH_MASK = 0xFF, /* mark bits 0..7 */
};

/* meshd_metrics (per-CPU array) slots: dropped packets by direction and
 * reason, then new connections allowed and redirected to the proxy, by
 * direction, then flow events lost because the ring buffer was full.
 * Counted even when the ring buffer is full; established packets are
 * counted per connection in conntrack, not here. */
enum meshd_metric {
	MESHD_METRIC_REASONS = 16, /* drop slots per direction; a power of two */
	MESHD_METRIC_NEW_ALLOWED_BASE = 2 * MESHD_METRIC_REASONS,
	MESHD_METRIC_NEW_REDIRECTED_BASE = 2 * MESHD_METRIC_REASONS + 2,
	MESHD_METRIC_EVENTS_LOST = 2 * MESHD_METRIC_REASONS + 4,
	MESHD_METRIC_MAX = 2 * MESHD_METRIC_REASONS + 5,
};
#define MESHD_METRIC_DROP(dir, reason) ((dir) * MESHD_METRIC_REASONS + ((reason) & (MESHD_METRIC_REASONS - 1)))
#define MESHD_METRIC_NEW_ALLOWED(dir) (MESHD_METRIC_NEW_ALLOWED_BASE + (dir))
#define MESHD_METRIC_NEW_REDIRECTED(dir) (MESHD_METRIC_NEW_REDIRECTED_BASE + (dir))

/* Ring buffer event types (meshd_flow_event.type). */
enum meshd_event_type {
	MESHD_EVENT_DROP = 1,
	MESHD_EVENT_VERDICT = 2,
	MESHD_EVENT_REDIRECT = 3,
	/* policyAuditMode: the policy would have dropped this packet (reason
	 * says why); it passed */
	MESHD_EVENT_AUDIT = 4,
};

/* LPM key for the ipcache: prefixlen counts family + pad (32 bits) + address bits. */
struct meshd_ipcache_key {
	__u32 prefixlen;
	__u8 family; /* 4 or 6 */
	__u8 pad[3];
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
};

struct meshd_ipcache_value {
	__u32 identity;
	__u32 flags;
};

/* meshd_tunnel (LPM trie, keys as meshd_ipcache_key): another node's pod
 * CIDR -> where its packets go in tunnel mode. Written by the agent from the
 * nodes' objects (src/datapath/routing/tunnel-map.ts); empty in native mode. */
struct meshd_tunnel_value {
	__be32 endpoint; /* the node's address, the outer destination */
	__u32 ifindex;	 /* the collect-metadata tunnel device */
};

/* Keyed by the host-side veth's ifindex. */
struct meshd_endpoint {
	__u32 ep_id;
	__u32 identity;
	__u32 flags;
	/* bumped by the agent on every policy change of this endpoint; conntrack
	 * entries created under an older generation are re-evaluated once */
	__u32 policy_gen;
};

/* LPM key for the global policy map. Data bits in order: ep_id (32),
 * identity (32), egress (8), proto (8), dport (16, network order). An entry for
 * a port range is a set of port prefixes; "any port" stops after proto (80
 * bits), "any protocol" after egress (72 bits). */
struct meshd_policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u32 identity;
	__u8 egress;
	__u8 proto;
	__be16 dport;
};

struct meshd_policy_value {
	__u8 verdict;
	__u8 pad;
	__u16 proxy_port; /* host order; REDIRECT only */
	__u32 rule_id;    /* agent-side handle, reported in events */
};

/* Conntrack key: the connection as seen from the endpoint, the same for
 * both directions (one lookup per packet): the endpoint's address and port,
 * the peer's address and port. Who opened it is in the entry. */
struct meshd_ct_key {
	__u8 local[16];
	__u8 remote[16];
	__be16 local_port;
	__be16 remote_port;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
	__u32 ep_id;
};

struct meshd_ct_entry {
	__u64 created_ns;
	__u64 last_seen_ns;
	__u64 packets;
	__u64 bytes;
	__u32 gen;
	__u32 remote_identity;
	__u16 proxy_port;
	__u8 verdict;
	__u8 flags;
	__u8 dir; /* who opened it: MESHD_DIR_EGRESS the endpoint, MESHD_DIR_INGRESS the peer */
	__u8 icmp_type; /* ICMP/ICMPv6: the type that opened it, which the policy judges (its ports are echo ids) */
	__u8 pad[2];
};

struct meshd_config {
	__u32 proxy_mark; /* set on packets assigned to the proxy (policy routing) */
	__u32 proxy_mark_mask;
	__u32 ipcache_gen; /* bumped when the ipcache changes; part of a CT entry's generation */
	__u32 verdict_sample; /* 0: no verdict events; N: one new connection in N */
	__u32 flags;
	__be32 proxy_ipv4; /* where the proxy listens (listener lookup), 127.0.0.1 by default */
};

/* The packet tuple that flow events and NAT keys share, field for field
 * (src/datapath/maps.ts spreads the same list, `tupleFields`). Addresses are
 * 16 bytes for both families (IPv4 in the first 4), ports network order. */
#define MESHD_TUPLE_FIELDS \
	__u8 saddr[16];    \
	__u8 daddr[16];    \
	__be16 sport;      \
	__be16 dport;      \
	__u8 proto;        \
	__u8 family;       \
	__u8 dir

struct meshd_flow_event {
	__u64 ts_ns;
	__u32 type;
	__u32 reason;
	__u32 ep_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 ifindex;
	MESHD_TUPLE_FIELDS;
	__u8 verdict;
	__u16 proxy_port;
	__u8 tcp_flags; /* the packet's TCP flags byte (FIN 0x01 … CWR 0x80), 0 for other protocols */
	__u8 icmp_type; /* the ICMP/ICMPv6 type, 0 for other protocols */
};

/* Per-packet service translation (socketLB.hostNamespaceOnly=true): the
 * forward entry maps a pod's connection to a VIP (original tuple, dir FWD)
 * to the chosen backend; the reverse entry maps the backend's replies (reply
 * tuple, dir REV) back to the VIP. Addresses as in meshd_ct_key. */
enum meshd_nat_dir {
	MESHD_NAT_FWD = 0,
	MESHD_NAT_REV = 1,
};

struct meshd_nat_key {
	MESHD_TUPLE_FIELDS;
	__u8 pad;
};

struct meshd_nat_value {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
	__u32 svc_id;
};

/* sockops/sk_msg short-circuit (bpf/sockops.c): the SOCKHASH key of an
 * established TCP socket, from its own point of view. Ports host order. */
struct meshd_sock_key {
	__u8 local[16];
	__u8 remote[16];
	__u32 local_port;
	__u32 remote_port;
	__u32 family;
};

/* meshd_sk_stats (per-CPU array) slots */
enum meshd_sk_stat {
	MESHD_SK_STAT_INSERTED = 0,
	MESHD_SK_STAT_REDIRECTED = 1,
	MESHD_SK_STAT_PASSED = 2,
	MESHD_SK_STAT_MAX = 3,
};

/* The host firewall (bpf/host.c): the host endpoint is a row of
 * meshd_endpoints keyed by the loopback interface's ifindex (1 in every
 * network namespace), which never carries the pod programs. */
enum meshd_host {
	MESHD_HOST_EP_KEY = 1,
};

/* Agent-switched steering of new connections to the node proxy
 * (bpf/lib/steer.h, bpf/steer.c, src/proxy/steering.ts). The agent puts the
 * listening sockets of the live proxies into meshd_steer_socks under one
 * generation per (proxy port, family), then switches the port to that
 * generation in meshd_steer_ports with one map update. */
struct meshd_steer_key {
	__u16 port;   /* proxy port, host order */
	__u8 family;  /* 4 or 6 */
	__u8 gen;     /* 0 or 1 */
	__u32 slot;   /* 0 .. count-1 */
};

/* meshd_steer_ports, keyed by the proxy port (__u32, host order). */
struct meshd_steer_port {
	__u8 gen;
	__u8 count4; /* slots of family 4 in generation gen */
	__u8 count6;
	__u8 pad;
};

/* meshd_steer_stats (per-CPU array) slots: how new connections found a
 * proxy listener, and the limit of slots per port and family. */
enum meshd_steer_stat {
	MESHD_STEER_TC_MAP = 0,      /* tc: a socket from meshd_steer_socks */
	MESHD_STEER_TC_LOOKUP = 1,   /* tc: no entry, the listener lookup */
	MESHD_STEER_SELECTED = 2,    /* reuseport group: the agent's choice */
	MESHD_STEER_UNSTEERED = 3,   /* reuseport group: no entry, the kernel's hash */
	MESHD_STEER_STATS = 4,
	MESHD_STEER_MAX_SLOTS = 32,
};

/* BTF keeps an enum only if something typed with it is emitted: this
 * read-only global, never read by a program, puts every enum above in the
 * BTF of each object that includes this header. */
struct meshd_datapath_abi {
	enum meshd_identity_reserved identity;
	enum meshd_dir dir;
	enum meshd_verdict verdict;
	enum meshd_ep_flag ep_flag;
	enum meshd_cfg_flag cfg_flag;
	enum meshd_ct_flag ct_flag;
	enum meshd_mark mark;
	enum meshd_metric metric;
	enum meshd_event_type event_type;
	enum meshd_nat_dir nat_dir;
	enum meshd_sk_stat sk_stat;
	enum meshd_host host;
	enum meshd_steer_stat steer_stat;
};
const volatile struct meshd_datapath_abi meshd_datapath_abi = {};

#endif
