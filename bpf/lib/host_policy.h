/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The host endpoint's policy (Cilium's host policies), judged wherever the
 * host's own traffic shows: on the native devices (bpf/host.c) and on the
 * pods' veths (bpf/lxc.c), for traffic between the host and its local pods,
 * which never crosses a native device.
 *
 * The host endpoint is judged as a pod is, with the same maps and helpers:
 * its row in meshd_endpoints (key MESHD_HOST_EP_KEY) gives its ep_id,
 * default-deny flags and policy generation; conntrack entries and policy keys
 * carry that ep_id. The local side is reserved:host, the peer's identity the
 * ipcache's (world when unknown), or on a pod's veth the pod's. A packet whose
 * destination (ingress) or source (egress) is not a host address is not the
 * host's and passes. On the veths the step runs only with
 * MESHD_CFG_HOST_FIREWALL (hostFirewall.enabled), on what the pod's own step
 * read (bpf/lxc.c).
 */
#ifndef MESHD_LIB_HOST_POLICY_H
#define MESHD_LIB_HOST_POLICY_H

#include "datapath.h"
#include "drop_reasons.h"
#include "audit.h"
#include "conntrack.h"
#include "drop.h"
#include "endpoint.h"
#include "events.h"
#include "ipcache.h"
#include "parse.h"
#include "policy.h"

/* Multicast and limited broadcast reach the host's own stack (VRRP, IGMP,
 * routing protocols): on ingress they are the host's traffic. */
static __always_inline int host_group_addr(const struct meshd_tuple *t)
{
	if (t->family == 4)
		return (t->daddr[0] & 0xF0) == 0xE0 ||
		       (t->daddr[0] == 0xFF && t->daddr[1] == 0xFF && t->daddr[2] == 0xFF && t->daddr[3] == 0xFF);
	return t->daddr[0] == 0xFF;
}

/* Whether the packet is the host's own traffic in this direction. */
static __always_inline int host_owns(const struct meshd_tuple *t, __u8 dir)
{
	if (dir == MESHD_DIR_EGRESS)
		return meshd_ipcache_identity(t->family, t->saddr) == MESHD_ID_HOST;
	return host_group_addr(t) || meshd_ipcache_identity(t->family, t->daddr) == MESHD_ID_HOST;
}

/* The host policy's answer, default deny applied. L7 rules cannot be served
 * on a native device (no socket assignment at tc egress, and the host's own
 * sockets are not the proxy's): a REDIRECT fails closed. */
static __always_inline __u8 host_judge(const struct meshd_endpoint *ep, __u8 dir, __u32 remote, __u8 proto,
					__be16 port, __u32 *reason)
{
	__u32 deny_flag = dir == MESHD_DIR_EGRESS ? MESHD_EP_DEFAULT_DENY_EGRESS : MESHD_EP_DEFAULT_DENY_INGRESS;
	struct meshd_policy_result res;

	meshd_policy_lookup(ep->ep_id, dir, remote, proto, port, &res);
	if (res.verdict == MESHD_VERDICT_DENY) {
		*reason = MESHD_DROP_POLICY_DENY;
		return MESHD_VERDICT_DENY;
	}
	if (res.verdict == MESHD_VERDICT_REDIRECT) {
		*reason = MESHD_DROP_PROXY_UNREACHABLE_HOOK;
		return MESHD_VERDICT_DENY;
	}
	if (res.verdict)
		return res.verdict;
	if (ep->flags & deny_flag) {
		*reason = MESHD_DROP_POLICY_DEFAULT_DENY;
		return MESHD_VERDICT_DENY;
	}
	return MESHD_VERDICT_ALLOW;
}

/* The identity of the host's peer: the caller's when it knows it, else the
 * ipcache's, read only where a verdict or an event needs it. */
static __always_inline __u32 host_peer(const struct meshd_tuple *t, __u8 dir, __u32 known)
{
	if (known != MESHD_ID_UNKNOWN)
		return known;
	return meshd_ipcache_identity(t->family, dir == MESHD_DIR_EGRESS ? t->daddr : t->saddr);
}

static __always_inline void host_event_identities(struct meshd_event_ctx *c, __u8 dir, __u32 remote)
{
	c->src_identity = dir == MESHD_DIR_EGRESS ? MESHD_ID_HOST : remote;
	c->dst_identity = dir == MESHD_DIR_EGRESS ? remote : MESHD_ID_HOST;
}

/* The host endpoint's verdict on t, a packet of the host's own traffic in
 * direction dir (of the host) whose other end has identity remote
 * (MESHD_ID_UNKNOWN: not read yet): TC_ACT_OK when it passes (no host
 * endpoint, known connection, admitted, or audited), else the result of
 * meshd_drop(). The caller has parsed the packet and decided it is the
 * host's: on a native device from the ipcache (meshd_host_policy), on a pod's
 * veth from what the pod's own step read (bpf/lxc.c). */
static __always_inline int meshd_host_judge(struct __sk_buff *skb, const struct meshd_config *cfg,
					    const struct meshd_tuple *t, __u8 dir, __u32 remote)
{
	struct meshd_event_ctx c = { .dir = dir };
	struct meshd_endpoint *ep;
	struct meshd_ct_entry *e;
	struct meshd_ct_key k;
	__u32 key = MESHD_HOST_EP_KEY, gen, reason = 0;
	__u8 verdict;

	ep = bpf_map_lookup_elem(&meshd_endpoints, &key);
	if (!ep)
		return TC_ACT_OK; /* no host endpoint registered: nothing to enforce */
	c.ep_id = ep->ep_id;
	gen = ep->policy_gen + cfg->ipcache_gen;

	/* a packet of a known connection, either direction */
	meshd_ct_key_of(&k, t, ep->ep_id, dir);
	e = bpf_map_lookup_elem(&meshd_ct, &k);
	if (e) {
		if (e->gen != gen) {
			remote = host_peer(t, dir, remote);
			host_event_identities(&c, dir, remote);
			if (host_judge(ep, e->dir, remote, k.proto, meshd_ct_dport(&k, e), &reason) == MESHD_VERDICT_DENY &&
			    !meshd_audited(skb, t, &c, MESHD_DROP_POLICY_REVOKED, cfg)) {
				bpf_map_delete_elem(&meshd_ct, &k);
				return meshd_drop(skb, t, &c, MESHD_DROP_POLICY_REVOKED);
			}
			e->gen = gen;
			e->remote_identity = remote;
		}
		meshd_ct_touch(e, skb);
		/* a reset ends the connection: its entry goes, the reset itself passes */
		if (t->proto == MESHD_IPPROTO_TCP && (t->tcp_flags & MESHD_TCP_RST))
			bpf_map_delete_elem(&meshd_ct, &k);
		return TC_ACT_OK;
	}

	/* new connection */
	remote = host_peer(t, dir, remote);
	host_event_identities(&c, dir, remote);
	verdict = host_judge(ep, dir, remote, t->proto, meshd_policy_port(t), &reason);
	if (verdict == MESHD_VERDICT_DENY) {
		verdict = meshd_audited(skb, t, &c, reason, cfg); /* tracked as allowed, reported once */
		if (!verdict)
			return meshd_drop(skb, t, &c, reason);
	} else {
		meshd_count(MESHD_METRIC_NEW_ALLOWED(dir));
		if (cfg->verdict_sample == 1 ||
		    (cfg->verdict_sample > 1 && bpf_get_prandom_u32() % cfg->verdict_sample == 0))
			meshd_emit(skb, t, &c, MESHD_EVENT_VERDICT, 0, verdict, 0);
	}
	meshd_ct_create(&k, dir, verdict, 0, remote, gen, 0, t->icmp_type, skb);
	return TC_ACT_OK;
}

/* On a native device (bpf/host.c): the host endpoint's verdict on a packet in
 * direction dir (of the host); a packet that is not the host's own passes. */
static __always_inline int meshd_host_policy(struct __sk_buff *skb, __u8 dir)
{
	struct meshd_config *cfg;
	struct meshd_tuple t = {};

	cfg = meshd_get_config();
	if (!cfg)
		return TC_ACT_OK;
	if (meshd_parse(skb, &t) != MESHD_PARSE_OK)
		return TC_ACT_OK; /* ARP, or headers the stack will refuse itself */
	if (meshd_is_ndp(&t) || !host_owns(&t, dir))
		return TC_ACT_OK;
	return meshd_host_judge(skb, cfg, &t, dir, MESHD_ID_UNKNOWN);
}

/* On a pod's veth: the node proxy's and the tunnel's packets carry another
 * identity in the mark (their source is not the host's own socket) or are on
 * their way to the proxy: the host policy is not theirs, as in Cilium (proxy
 * traffic skips the host firewall). */
static __always_inline int meshd_host_policy_skip(const struct __sk_buff *skb, const struct meshd_config *cfg)
{
	__u32 magic = skb->mark & MESHD_MARK_MAGIC_MASK;

	if (magic == MESHD_MARK_MAGIC_IDENTITY || magic == MESHD_MARK_MAGIC_TUNNEL)
		return 1;
	return cfg->proxy_mark_mask && (skb->mark & cfg->proxy_mark_mask) == cfg->proxy_mark;
}

#endif
