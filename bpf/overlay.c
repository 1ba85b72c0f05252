// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* overlay: the tunnel device's programs (tunnel mode, docs/routing.md).
 *
 *   meshd_from_overlay  tunnel device ingress: a packet another node
 *                       encapsulated. The VNI is the sender's security
 *                       identity; it travels to the destination pod's hook
 *                       (meshd_to_pod in bpf/lxc.c) in the mark, so that hook
 *                       judges the real client without an ipcache lookup of
 *                       the source. The inner frame still carries the
 *                       sending node's MAC addresses: it is made ours
 *                       (PACKET_HOST) and, to a local pod, redirected
 *                       straight to the pod's host veth (bpf_redirect_neigh);
 *                       anything else is routed by the kernel.
 *                       A new connection the pod's ingress policy sends to
 *                       the L7 proxy (REDIRECT for the VNI's identity) is
 *                       handed to the proxy here, the one hook on its way
 *                       where bpf_sk_assign works (tc ingress).
 *                       A VNI of MESHD_ID_HOST is another node's own
 *                       traffic: the receiver names it by the inner source
 *                       address's ipcache identity (the sender's node
 *                       identity, with its labels), else remote-node, as
 *                       Cilium maps HOST_ID in the VNI to the remote node.
 *   meshd_to_overlay    tunnel device egress: packets the kernel routed here
 *                       (the node's own connections to another node's pods,
 *                       e.g. the proxy's upstream leg, health checks) get
 *                       their tunnel key from meshd_tunnel; the identity is
 *                       the one in the proxy's mark, else host when the
 *                       source is one of this node's addresses, else world
 *                       (traffic the node only forwards). Pod traffic
 *                       arrives with its key already set by meshd_from_pod.
 *   meshd_from_netdev   native mode, ingress of the device that reaches the
 *                       other nodes: the same L7 hand-over for connections
 *                       from another node, the client's identity from the
 *                       ipcache (nothing else is touched).
 *
 * Loaded from its own object with the endpoint datapath's maps shared by pin.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "datapath.h"
#include "drop_reasons.h"
#include "conntrack.h"
#include "drop.h"
#include "endpoint.h"
#include "ipcache.h"
#include "parse.h"
#include "policy.h"
#include "redirect.h"
#include "tunnel.h"

#define MESHD_PACKET_HOST 0

static __always_inline int meshd_overlay_drop(struct __sk_buff *skb, __u8 dir, __u32 src_identity, __u32 reason)
{
	struct meshd_event_ctx c = { .dir = dir, .src_identity = src_identity };
	struct meshd_tuple t = {};

	meshd_parse(skb, &t);
	return meshd_drop(skb, &t, &c, reason);
}

/* L7 ingress for a TCP packet *t from another node to the local endpoint ep:
 * 0 to let the packet go on to the pod, 1 when it was assigned to the proxy,
 * or a negative drop reason. A packet of a connection the pod's own hook has
 * in conntrack was not redirected (one hash lookup); otherwise the
 * destination's ingress policy for the client's identity decides: the one in
 * c->src_identity (from the VNI), or, when that is unset (native mode), the
 * ipcache's, looked up only here, past the conntrack test. The caller parsed
 * the packet and found ep: nothing is read twice. */
static __always_inline int meshd_overlay_to_proxy(struct __sk_buff *skb, const struct meshd_tuple *t,
						  const struct meshd_endpoint *ep, struct meshd_event_ctx *c)
{
	struct meshd_policy_result res = {};
	struct meshd_config *cfg;
	struct meshd_ct_key k;
	int ret;

	cfg = meshd_get_config();
	if (!cfg)
		return 0;
	meshd_ct_key_of(&k, t, ep->ep_id, MESHD_DIR_INGRESS);
	if (bpf_map_lookup_elem(&meshd_ct, &k))
		return 0;
	if (c->src_identity == MESHD_ID_UNKNOWN)
		c->src_identity = meshd_ipcache_identity(t->family, t->saddr);
	meshd_policy_lookup(ep->ep_id, MESHD_DIR_INGRESS, c->src_identity, t->proto, t->dport, &res);
	if (res.verdict != MESHD_VERDICT_REDIRECT)
		return 0;
	c->ep_id = ep->ep_id;
	c->dst_identity = ep->identity;
	ret = meshd_redirect_to_proxy(skb, t, res.proxy_port, cfg);
	if (ret < 0)
		return ret;
	if (t->tcp_flags & MESHD_TCP_SYN)
		meshd_emit(skb, t, c, MESHD_EVENT_REDIRECT, 0, MESHD_VERDICT_REDIRECT, res.proxy_port);
	return 1;
}

/* The local endpoint a parsed TCP packet goes to, or 0 (nothing for the L7
 * hand-over to do). */
static __always_inline struct meshd_endpoint *meshd_overlay_tcp_to_local(struct __sk_buff *skb, struct meshd_tuple *t)
{
	if (meshd_parse(skb, t) != MESHD_PARSE_OK || t->proto != MESHD_IPPROTO_TCP)
		return 0;
	return meshd_local_endpoint(t->family, t->daddr);
}

/* The identity of another node's own traffic (MESHD_ID_HOST in the VNI):
 * the ipcache's for the inner source address when it knows the address (the
 * sending node's identity, carrying its labels, so fromNodes selects it, or
 * kube-apiserver where the API server runs there), else remote-node. Never
 * world or host: the sender vouched that the packet is its node's own. */
static __always_inline __u32 meshd_overlay_node_identity(const struct meshd_tuple *t, int parsed)
{
	__u32 id;

	if (!parsed)
		return MESHD_ID_REMOTE_NODE;
	id = meshd_ipcache_identity(t->family, t->saddr);
	if (id == MESHD_ID_WORLD || id == MESHD_ID_HOST || id == MESHD_ID_UNKNOWN)
		return MESHD_ID_REMOTE_NODE;
	return id;
}

SEC("tc")
int meshd_from_overlay(struct __sk_buff *skb)
{
	struct meshd_event_ctx c = { .dir = MESHD_DIR_INGRESS };
	struct meshd_tuple t = {};
	struct meshd_endpoint *ep;
	int ret;
	struct bpf_tunnel_key key = {};
	__u32 identity, *ifindex;
	int parsed;

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return meshd_overlay_drop(skb, MESHD_DIR_INGRESS, MESHD_ID_UNKNOWN, MESHD_DROP_TUNNEL_FAILED);
	identity = key.tunnel_id & MESHD_TUNNEL_VNI_MASK;
	if (identity == MESHD_ID_UNKNOWN || identity != key.tunnel_id)
		return meshd_overlay_drop(skb, MESHD_DIR_INGRESS, identity, MESHD_DROP_TUNNEL_FAILED);
	parsed = meshd_parse(skb, &t) == MESHD_PARSE_OK;
	if (identity == MESHD_ID_HOST)
		identity = meshd_overlay_node_identity(&t, parsed);
	skb->mark = meshd_tunnel_mark(identity);
	/* the inner destination MAC is the sender's idea of the next hop */
	if (skb->pkt_type != MESHD_PACKET_HOST)
		bpf_skb_change_type(skb, MESHD_PACKET_HOST);
	c.src_identity = identity;
	if (!parsed || t.family != 4)
		return TC_ACT_OK;
	ifindex = meshd_local_ifindex(t.family, t.daddr);
	if (!ifindex)
		return TC_ACT_OK; /* not a local pod's: the stack routes it */
	if (t.proto == MESHD_IPPROTO_TCP && (ep = bpf_map_lookup_elem(&meshd_endpoints, ifindex))) {
		ret = meshd_overlay_to_proxy(skb, &t, ep, &c);
		if (ret < 0)
			return meshd_drop(skb, &t, &c, -ret);
		if (ret)
			return TC_ACT_OK;
	}
	/* Straight to the pod's host veth, whose tc egress (meshd_to_pod) judges
	 * it with the identity in the mark: the node's forwarding path
	 * (ip_forward, netfilter's forward hooks) is skipped; the helper's own
	 * route and neighbour lookup gives the pod's MAC. */
	return bpf_redirect_neigh(*ifindex, 0, 0, 0);
}

SEC("tc")
int meshd_to_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct meshd_tunnel_value *tv;
	__u32 identity = MESHD_ID_WORLD;
	__be32 addrs[2]; /* saddr, daddr: adjacent in struct iphdr */
	int ret;

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) == 0)
		return TC_ACT_OK; /* set by meshd_from_pod */
	if (skb->protocol != bpf_htons(MESHD_ETH_P_IP) ||
	    meshd_load(skb, MESHD_ETH_HLEN + offsetof(struct iphdr, saddr), addrs, 8) < 0)
		return meshd_overlay_drop(skb, MESHD_DIR_EGRESS, identity, MESHD_DROP_TUNNEL_FAILED);
	tv = meshd_tunnel_lookup4(addrs[1]);
	if (!tv)
		return meshd_overlay_drop(skb, MESHD_DIR_EGRESS, identity, MESHD_DROP_TUNNEL_FAILED);
	if ((skb->mark & MESHD_MARK_MAGIC_MASK) == MESHD_MARK_MAGIC_IDENTITY)
		identity = (skb->mark >> MESHD_MARK_IDENTITY_SHIFT) |
			   ((skb->mark & MESHD_MARK_IDENTITY_HIGH_MASK) << MESHD_MARK_IDENTITY_SHIFT);
	else if (meshd_ipcache_identity(4, (const __u8 *)addrs) == MESHD_ID_HOST)
		identity = MESHD_ID_HOST; /* the receiver makes it this node's identity there */
	ret = meshd_tunnel_set_key(skb, tv, identity);
	if (ret < 0)
		return meshd_overlay_drop(skb, MESHD_DIR_EGRESS, identity, -ret);
	return TC_ACT_OK;
}

SEC("tc")
int meshd_from_netdev(struct __sk_buff *skb)
{
	struct meshd_event_ctx c = { .dir = MESHD_DIR_INGRESS };
	struct meshd_tuple t = {};
	struct meshd_endpoint *ep;
	int ret;

	ep = meshd_overlay_tcp_to_local(skb, &t);
	if (!ep)
		return TC_ACT_OK;
	ret = meshd_overlay_to_proxy(skb, &t, ep, &c);
	if (ret < 0)
		return meshd_drop(skb, &t, &c, -ret);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
