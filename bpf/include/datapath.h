/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Structs and constants shared by the endpoint datapath (bpf/lxc.c,
 * bpf/sockops.c) and the agent. Mirrors: src/datapath/maps.ts (codecs,
 * checked against this object's BTF by test/integration/datapath-codec.test.ts)
 * and src/datapath/constants.ts.
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

/* Reserved identities (numbering as Cilium's). */
#define MESHD_ID_UNKNOWN 0
#define MESHD_ID_HOST 1
#define MESHD_ID_WORLD 2

/* Directions, from the endpoint's point of view. */
#define MESHD_DIR_INGRESS 0 /* entering the pod */
#define MESHD_DIR_EGRESS 1  /* leaving the pod */

/* Policy verdicts stored in policy and conntrack values. */
#define MESHD_VERDICT_ALLOW 1
#define MESHD_VERDICT_DENY 2
#define MESHD_VERDICT_REDIRECT 3

/* meshd_endpoint.flags */
#define MESHD_EP_DEFAULT_DENY_INGRESS (1U << 0)
#define MESHD_EP_DEFAULT_DENY_EGRESS (1U << 1)

/* meshd_config.flags */
#define MESHD_CFG_PER_PACKET_LB (1U << 0) /* socketLB.hostNamespaceOnly=true */
#define MESHD_CFG_SOCKMAP_SHORTCUT (1U << 1)

/* skb->mark layout. Bits 8..11 carry a magic; with MESHD_MARK_MAGIC_IDENTITY
 * the proxy's upstream sockets carry the original source identity (bits
 * 16..31 its low 16 bits, bits 0..7 its bits 16..23) so that the
 * destination's ingress policy sees the client, not the node. */
#define MESHD_MARK_MAGIC_MASK 0x0F00
#define MESHD_MARK_MAGIC_IDENTITY 0x0A00

/* meshd_metrics (per-CPU array) slots: dropped packets by direction and
 * reason, then new connections allowed and redirected to the proxy, by
 * direction. Counted even when the ring buffer is full; established packets
 * are counted per connection in conntrack, not here. */
#define MESHD_METRIC_REASONS 16
#define MESHD_METRIC_DROP(dir, reason) ((dir) * MESHD_METRIC_REASONS + ((reason) & (MESHD_METRIC_REASONS - 1)))
#define MESHD_METRIC_NEW_ALLOWED(dir) (2 * MESHD_METRIC_REASONS + (dir))
#define MESHD_METRIC_NEW_REDIRECTED(dir) (2 * MESHD_METRIC_REASONS + 2 + (dir))
#define MESHD_METRIC_MAX (2 * MESHD_METRIC_REASONS + 4)

/* Ring buffer event types. */
#define MESHD_EVENT_DROP 1
#define MESHD_EVENT_VERDICT 2
#define MESHD_EVENT_REDIRECT 3

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
	__u8 pad[3];
};

struct meshd_config {
	__u32 proxy_mark; /* set on packets assigned to the proxy (policy routing) */
	__u32 proxy_mark_mask;
	__u32 ipcache_gen; /* bumped when the ipcache changes; part of a CT entry's generation */
	__u32 verdict_sample; /* 0: no verdict events; N: one new connection in N */
	__u32 flags;
	__be32 proxy_ipv4; /* where the proxy listens (listener lookup), 127.0.0.1 by default */
};

struct meshd_flow_event {
	__u64 ts_ns;
	__u32 type;
	__u32 reason;
	__u32 ep_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 ifindex;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 dir;
	__u8 verdict;
	__u16 proxy_port;
	__u16 pad;
};

/* Per-packet service translation (socketLB.hostNamespaceOnly=true): the
 * forward entry maps a pod's connection to a VIP (original tuple, dir FWD)
 * to the chosen backend; the reverse entry maps the backend's replies (reply
 * tuple, dir REV) back to the VIP. Addresses as in meshd_ct_key. */
#define MESHD_NAT_FWD 0
#define MESHD_NAT_REV 1

struct meshd_nat_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 dir;
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

/* meshd_sk_stats slots */
#define MESHD_SK_STAT_INSERTED 0
#define MESHD_SK_STAT_REDIRECTED 1
#define MESHD_SK_STAT_PASSED 2
#define MESHD_SK_STAT_MAX 3

#endif
