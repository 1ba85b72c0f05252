// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* lxc: the endpoint datapath, attached to the host side of every pod's veth.
 *
 *   meshd_from_pod  host veth ingress: traffic leaving the pod (egress policy);
 *                   in tunnel mode, to a pod on another node, encapsulated
 *                   with the pod's identity in the VNI (lib/tunnel.h)
 *   meshd_to_pod    host veth egress:  traffic entering the pod (ingress policy);
 *                   from the tunnel, judged on the identity the VNI carried
 *
 * One loaded copy serves every pod: the endpoint is found by the skb's
 * ifindex (the host veth) in meshd_endpoints. Per packet: parse, identity of
 * the peer from the ipcache (or, for the node proxy's upstream connections,
 * from the mark), conntrack (forward, then reply), and for a new connection
 * two policy lookups. Errors are negative drop reasons that end in
 * meshd_drop(), the one exit that reports them.
 *
 * Traffic between a pod and the host never crosses a native device: with the
 * host firewall on (MESHD_CFG_HOST_FIREWALL) the host policy
 * (lib/host_policy.h) judges it here, after the pod's egress policy (pod to
 * host: host ingress) and before the pod's ingress policy (host to pod: host
 * egress), as Cilium's host firewall does.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "datapath.h"
#include "drop_reasons.h"
#include "audit.h"
#include "conntrack.h"
#include "drop.h"
#include "endpoint.h"
#include "events.h"
#include "host_policy.h"
#include "ipcache.h"
#include "nat.h"
#include "parse.h"
#include "policy.h"
#include "redirect.h"
#include "tunnel.h"

/* Traffic the overlay let in (bpf/overlay.c): the source identity is the one
 * the sending node put in the VNI, carried here in the mark. */
static __always_inline int meshd_from_tunnel(const struct __sk_buff *skb, __u8 dir)
{
	return dir == MESHD_DIR_INGRESS && (skb->mark & MESHD_MARK_MAGIC_MASK) == MESHD_MARK_MAGIC_TUNNEL;
}

static __always_inline __u32 meshd_identity_from_mark(__u32 mark)
{
	return (mark >> MESHD_MARK_IDENTITY_SHIFT) | ((mark & MESHD_MARK_IDENTITY_HIGH_MASK) << MESHD_MARK_IDENTITY_SHIFT);
}

/* The policy's answer for a connection, default deny applied. */
static __always_inline __u8 meshd_judge(const struct meshd_endpoint *ep, __u8 dir, __u32 remote, __u8 proto,
					 __be16 dport, struct meshd_policy_result *res, __u32 *reason)
{
	__u32 deny_flag = dir == MESHD_DIR_EGRESS ? MESHD_EP_DEFAULT_DENY_EGRESS : MESHD_EP_DEFAULT_DENY_INGRESS;

	meshd_policy_lookup(ep->ep_id, dir, remote, proto, dport, res);
	if (res->verdict == MESHD_VERDICT_DENY) {
		*reason = MESHD_DROP_POLICY_DENY;
		return MESHD_VERDICT_DENY;
	}
	if (res->verdict)
		return res->verdict;
	if (ep->flags & deny_flag) {
		*reason = MESHD_DROP_POLICY_DEFAULT_DENY;
		return MESHD_VERDICT_DENY;
	}
	return MESHD_VERDICT_ALLOW;
}

/* An entry judged under an older generation is judged again, once. Keeps the
 * verdict unless the new policy denies the connection. */
static __always_inline int meshd_ct_revalidate(const struct meshd_endpoint *ep, const struct meshd_ct_key *k,
					       struct meshd_ct_entry *e, __u32 gen)
{
	struct meshd_policy_result res;
	__u32 reason = 0, remote;

	if (e->gen == gen)
		return 0;
	if (e->flags & MESHD_CT_F_STORED_IDENTITY)
		remote = e->remote_identity;
	else
		remote = meshd_ipcache_identity(k->family, k->remote);
	if (meshd_judge(ep, e->dir, remote, k->proto, meshd_ct_dport(k, e), &res, &reason) == MESHD_VERDICT_DENY) {
		bpf_map_delete_elem(&meshd_ct, k);
		return -MESHD_DROP_POLICY_REVOKED;
	}
	e->gen = gen;
	e->remote_identity = remote;
	return 0;
}

/* The peer's identity (from the mark for the proxy's upstream leg, else the
 * ipcache), also filled into the event context. */
static __always_inline __u32 meshd_event_identities(struct __sk_buff *skb, const struct meshd_endpoint *ep,
						   const struct meshd_tuple *t, __u8 dir, __u8 from_proxy,
						   struct meshd_event_ctx *c)
{
	__u32 remote;

	if (dir == MESHD_DIR_EGRESS) {
		remote = meshd_ipcache_identity(t->family, t->daddr);
		c->src_identity = ep->identity;
		c->dst_identity = remote;
	} else {
		remote = from_proxy || meshd_from_tunnel(skb, dir) ? meshd_identity_from_mark(skb->mark)
							    : meshd_ipcache_identity(t->family, t->saddr);
		c->src_identity = remote;
		c->dst_identity = ep->identity;
	}
	return remote;
}

/* A new connection's verdict for tuple *t: the endpoint's policy (default
 * deny applied); the proxy's upstream leg counts as inspected (ALLOW); a
 * connection to a local pod also meets that pod's ingress L7 policy here,
 * the only hook where it can be handed to the proxy (its ingress deny is
 * left to its own hook). Fills the peer identity and the event context. */
static __always_inline __u8 meshd_new_verdict(struct __sk_buff *skb, const struct meshd_endpoint *ep,
					      const struct meshd_tuple *t, __u8 dir, __u8 from_proxy,
					      struct meshd_policy_result *res, __u32 *reason, __u32 *remote,
					      struct meshd_event_ctx *c)
{
	__u8 verdict;

	*remote = meshd_event_identities(skb, ep, t, dir, from_proxy, c);
	verdict = meshd_judge(ep, dir, *remote, t->proto, meshd_policy_port(t), res, reason);
	if (verdict == MESHD_VERDICT_REDIRECT && from_proxy)
		verdict = MESHD_VERDICT_ALLOW;
	if (verdict == MESHD_VERDICT_ALLOW && dir == MESHD_DIR_EGRESS) {
		struct meshd_endpoint *dst = meshd_local_endpoint(t->family, t->daddr);
		struct meshd_policy_result dres;
		__u32 dreason = 0;

		if (dst && meshd_judge(dst, MESHD_DIR_INGRESS, ep->identity, t->proto, meshd_policy_port(t), &dres, &dreason) ==
				   MESHD_VERDICT_REDIRECT) {
			verdict = MESHD_VERDICT_REDIRECT;
			res->proxy_port = dres.proxy_port;
		}
	}
	return verdict;
}

static __always_inline int meshd_sampled(const struct meshd_config *cfg)
{
	if (cfg->verdict_sample == 0)
		return 0;
	if (cfg->verdict_sample == 1)
		return 1;
	return bpf_get_prandom_u32() % cfg->verdict_sample == 0;
}

/* What every packet on a pod's veth starts from: the endpoint's row (by the
 * veth's ifindex), the config row and the packet's tuple, read once for every
 * step after (pod policy, host policy, reverse translation, tunnel). 1 when
 * the packet is to be judged; else 0 with *ret the program's verdict (not an
 * endpoint of ours, not IP, neighbour discovery, or a malformed header). */
static __always_inline int meshd_begin(struct __sk_buff *skb, __u8 dir, struct meshd_tuple *t,
				       struct meshd_config **cfgp, struct meshd_endpoint **epp, int *ret)
{
	struct meshd_event_ctx c = { .dir = dir };
	__u32 ifindex = skb->ifindex;
	int parsed;

	*ret = TC_ACT_OK;
	*epp = bpf_map_lookup_elem(&meshd_endpoints, &ifindex);
	*cfgp = meshd_get_config();
	if (!*epp || !*cfgp)
		return 0; /* not an endpoint of ours */
	c.ep_id = (*epp)->ep_id;
	parsed = meshd_parse(skb, t);
	if (parsed == MESHD_PARSE_NOT_IP)
		return 0;
	if (parsed < 0) {
		*ret = meshd_drop(skb, t, &c, -parsed);
		return 0;
	}
	return !meshd_is_ndp(t);
}

/* The endpoint's policy for one packet (tuple *t, rows from meshd_begin):
 * TC_ACT_OK to let it go on, else the verdict of its drop. Leaves in *t the
 * packet's tuple as it goes on (the backend's for a translated service
 * connection) and, when it passes, in *remotep the identity of the peer the
 * policy judged (the conntrack entry's for a known connection), so the host
 * step reads neither again. */
static __always_inline int meshd_handle(struct __sk_buff *skb, __u8 dir, struct meshd_tuple *t,
					const struct meshd_config *cfg, const struct meshd_endpoint *ep, __u32 *remotep)
{
	struct meshd_event_ctx c = { .dir = dir, .ep_id = ep->ep_id };
	struct meshd_policy_result res = {};
	struct meshd_ct_entry *e;
	struct meshd_ct_key k;
	__u32 remote, gen, reason = 0;
	__u8 from_proxy = 0, verdict = 0, ct_flags = 0;
	struct meshd_nat_value be;
	int ret, nat = 0;

	if (dir == MESHD_DIR_EGRESS) {
		/* a connection to a service translated before: conntrack knows it by its backend */
		nat = meshd_nat_fwd_known(skb, cfg, t);
		if (nat < 0)
			return meshd_drop(skb, t, &c, -nat);
	}

	gen = ep->policy_gen + cfg->ipcache_gen;
	/* Established packets of an unchanged policy never need the peer's
	 * identity: the ipcache is consulted only for new connections, stale
	 * conntrack entries and events, so their cost does not grow with it. */
	if (dir == MESHD_DIR_INGRESS && (skb->mark & MESHD_MARK_MAGIC_MASK) == MESHD_MARK_MAGIC_IDENTITY)
		from_proxy = 1; /* the node proxy's upstream leg: judge the original client */

	/* a packet of a known connection, either direction */
	meshd_ct_key_of(&k, t, ep->ep_id, dir);
	e = bpf_map_lookup_elem(&meshd_ct, &k);
	if (e) {
		ret = meshd_ct_revalidate(ep, &k, e, gen);
		if (ret < 0) {
			meshd_event_identities(skb, ep, t, dir, from_proxy, &c);
			return meshd_drop(skb, t, &c, -ret);
		}
		*remotep = e->remote_identity;
		meshd_ct_touch(e, skb);
		/* a reset ends the connection: its entry goes, the reset itself passes */
		if (t->proto == MESHD_IPPROTO_TCP && (t->tcp_flags & MESHD_TCP_RST) && e->verdict != MESHD_VERDICT_REDIRECT) {
			bpf_map_delete_elem(&meshd_ct, &k);
			return TC_ACT_OK;
		}
		/* a resolver's answer to the DNS proxy's transparent upstream leg
		 * (sent from a local pod's address): to the proxy's socket, not the pod */
		if (dir == MESHD_DIR_EGRESS && e->dir == MESHD_DIR_INGRESS &&
		    (e->flags & (MESHD_CT_F_STORED_IDENTITY | MESHD_CT_F_FROM_TUNNEL)) == MESHD_CT_F_STORED_IDENTITY &&
		    meshd_local_endpoint(t->family, t->daddr)) {
			ret = meshd_steer_to_upstream_socket(skb, t, cfg);
			if (ret < 0) {
				meshd_event_identities(skb, ep, t, dir, from_proxy, &c);
				return meshd_drop(skb, t, &c, -ret);
			}
			if (ret)
				return TC_ACT_OK;
		}
		/* later packets of a connection handed to the proxy follow it there */
		if (e->verdict == MESHD_VERDICT_REDIRECT && dir == MESHD_DIR_EGRESS && e->dir == MESHD_DIR_EGRESS) {
			ret = meshd_redirect_to_proxy(skb, t, e->proxy_port, cfg);
			if (ret < 0) {
				meshd_event_identities(skb, ep, t, dir, from_proxy, &c);
				return meshd_drop(skb, t, &c, -ret);
			}
		}
		return TC_ACT_OK;
	}

	/* new connection */
	if (dir == MESHD_DIR_EGRESS && nat == 0) {
		/* to a service? judge the backend it would go to, before writing anything */
		nat = meshd_nat_pick(cfg, t, &be);
		if (nat < 0)
			return meshd_drop(skb, t, &c, -nat);
		if (nat == 1) {
			struct meshd_tuple tb = *t;

			__builtin_memcpy(tb.daddr, be.addr, 4);
			tb.dport = be.port;
			verdict = meshd_new_verdict(skb, ep, &tb, dir, from_proxy, &res, &reason, &remote, &c);
			if (verdict == MESHD_VERDICT_REDIRECT) {
				/* the proxy gets the VIP; conntrack keeps the backend's identity */
				ret = meshd_nat_keep(t, be.svc_id);
				ct_flags = MESHD_CT_F_STORED_IDENTITY;
			} else {
				ret = meshd_nat_commit(skb, t, &be);
			}
			if (ret < 0)
				return meshd_drop(skb, t, &c, -ret);
			meshd_ct_key_of(&k, t, ep->ep_id, dir);
		}
	}
	if (!verdict)
		verdict = meshd_new_verdict(skb, ep, t, dir, from_proxy, &res, &reason, &remote, &c);
	if (verdict == MESHD_VERDICT_DENY && !(verdict = meshd_audited(skb, t, &c, reason, cfg)))
		return meshd_drop(skb, t, &c, reason);
	*remotep = remote;
	if (verdict == MESHD_VERDICT_REDIRECT && dir == MESHD_DIR_INGRESS)
		return meshd_drop(skb, t, &c, MESHD_DROP_PROXY_UNREACHABLE_HOOK);
	if (verdict == MESHD_VERDICT_REDIRECT) {
		ret = meshd_redirect_to_proxy(skb, t, res.proxy_port, cfg);
		if (ret < 0)
			return meshd_drop(skb, t, &c, -ret);
		meshd_ct_create(&k, dir, verdict, res.proxy_port, remote, gen, ct_flags, t->icmp_type, skb);
		meshd_count(MESHD_METRIC_NEW_REDIRECTED(dir));
		meshd_emit(skb, t, &c, MESHD_EVENT_REDIRECT, 0, verdict, res.proxy_port);
		return TC_ACT_OK;
	}
	if (from_proxy)
		ct_flags = MESHD_CT_F_STORED_IDENTITY;
	else if (meshd_from_tunnel(skb, dir))
		ct_flags = MESHD_CT_F_STORED_IDENTITY | MESHD_CT_F_FROM_TUNNEL;
	else
		ct_flags = 0;
	meshd_ct_create(&k, dir, verdict, 0, remote, gen, ct_flags, t->icmp_type, skb);
	meshd_count(MESHD_METRIC_NEW_ALLOWED(dir));
	if (meshd_sampled(cfg))
		meshd_emit(skb, t, &c, MESHD_EVENT_VERDICT, 0, verdict, 0);
	return TC_ACT_OK;
}

/* Tunnel mode (MESHD_CFG_TUNNEL): a packet the policy let out, to a pod CIDR
 * of another node, leaves through the tunnel device with this pod's identity
 * as the VNI. Packets handed to the local proxy (proxy mark) stay on this
 * node. Works on what meshd_handle already read (config row, endpoint, the
 * tuple after any service translation): in native mode it costs one test of
 * a flag, and in tunnel mode one LPM lookup. */
static __always_inline int meshd_tunnel_out(struct __sk_buff *skb, const struct meshd_config *cfg,
					    const struct meshd_endpoint *ep, const struct meshd_tuple *t)
{
	struct meshd_tunnel_value *tv;
	__be32 daddr;
	int ret;

	if (!(cfg->flags & MESHD_CFG_TUNNEL) || t->family != 4)
		return TC_ACT_OK;
	if (cfg->proxy_mark_mask && (skb->mark & cfg->proxy_mark_mask) == cfg->proxy_mark)
		return TC_ACT_OK;
	__builtin_memcpy(&daddr, t->daddr, 4);
	tv = meshd_tunnel_lookup4(daddr);
	if (!tv)
		return TC_ACT_OK;
	ret = meshd_tunnel_set_key(skb, tv, ep->identity);
	if (ret < 0) {
		struct meshd_event_ctx c = { .dir = MESHD_DIR_EGRESS, .ep_id = ep->ep_id, .src_identity = ep->identity };

		return meshd_drop(skb, t, &c, -ret);
	}
	return bpf_redirect(tv->ifindex, 0);
}

/* The host firewall's step on a pod's veth (MESHD_CFG_HOST_FIREWALL): a
 * packet between a local pod and the host meets the host endpoint's policy
 * (lib/host_policy.h). Whether the packet is the host's comes from what the
 * pod's step read: the host's peer is the pod itself. */
static __always_inline int meshd_host_step(struct __sk_buff *skb, const struct meshd_config *cfg, const struct meshd_tuple *t,
				      __u8 dir, __u32 pod_identity)
{
	if (meshd_host_policy_skip(skb, cfg))
		return TC_ACT_OK;
	return meshd_host_judge(skb, cfg, t, dir, pod_identity);
}

SEC("tc")
int meshd_from_pod(struct __sk_buff *skb)
{
	struct meshd_endpoint *ep;
	struct meshd_config *cfg;
	struct meshd_tuple t = {};
	__u32 remote = MESHD_ID_UNKNOWN;
	int ret;

	if (!meshd_begin(skb, MESHD_DIR_EGRESS, &t, &cfg, &ep, &ret))
		return ret;
	ret = meshd_handle(skb, MESHD_DIR_EGRESS, &t, cfg, ep, &remote);
	if (ret != TC_ACT_OK)
		return ret;
	/* pod to host: host ingress, after the pod's egress policy */
	if ((cfg->flags & MESHD_CFG_HOST_FIREWALL) && (remote == MESHD_ID_HOST || host_group_addr(&t))) {
		ret = meshd_host_step(skb, cfg, &t, MESHD_DIR_INGRESS, ep->identity);
		if (ret != TC_ACT_OK)
			return ret;
	}
	return meshd_tunnel_out(skb, cfg, ep, &t);
}

SEC("tc")
int meshd_to_pod(struct __sk_buff *skb)
{
	struct meshd_endpoint *ep;
	struct meshd_config *cfg;
	struct meshd_tuple t = {};
	__u32 remote = MESHD_ID_UNKNOWN;
	int ret;

	if (!meshd_begin(skb, MESHD_DIR_INGRESS, &t, &cfg, &ep, &ret))
		return ret;
	/* host to pod: host egress, before the pod's ingress policy. Only
	 * here does the host step read the ipcache (the source's identity),
	 * and only with the host firewall on. */
	if ((cfg->flags & MESHD_CFG_HOST_FIREWALL) &&
	    meshd_ipcache_identity(t.family, t.saddr) == MESHD_ID_HOST) {
		ret = meshd_host_step(skb, cfg, &t, MESHD_DIR_EGRESS, ep->identity);
		if (ret != TC_ACT_OK)
			return ret;
	}
	ret = meshd_handle(skb, MESHD_DIR_INGRESS, &t, cfg, ep, &remote);
	if (ret == TC_ACT_OK && meshd_nat_rev(skb, cfg, &t) < 0) {
		struct meshd_event_ctx c = { .dir = MESHD_DIR_INGRESS };

		return meshd_drop(skb, &t, &c, MESHD_DROP_NAT_FAILED);
	}
	return ret;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
