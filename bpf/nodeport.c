// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* nodeport: Service load balancing for clients outside the node, attached
 * to the node's native devices (Cilium's `devices`).
 *
 * IPv4 and IPv6 (bpf/lib/nodeport6.h), TCP and UDP.
 *
 *   meshd_np_in   tc ingress: a client's packet for a NodePort (on a node
 *                 address), external-IP or load-balancer frontend goes to a
 *                 backend; a remote backend's reply to a SNATed connection
 *                 gets client and frontend back
 *   meshd_np_out  tc egress: a local backend's reply leaves with the
 *                 frontend as its source
 *
 * The backend comes from the socket LB's maps (bpf/lib/lb.h), chosen as the
 * per-packet path of bpf/lxc.c chooses it; the policy of a local backend is
 * enforced by bpf/lxc.c on its veth as for any other client. Errors are
 * negative drop reasons that end in meshd_drop(), which reports them on the
 * datapath's ring buffer. See bpf/lib/nodeport.h and docs/socket-lb.md.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "datapath.h"
#include "drop_reasons.h"
#include "drop.h"
#include "events.h"
#include "nodeport.h"
#include "nodeport6.h"
#include "parse.h"

static __always_inline int np_applies(const struct meshd_tuple *t)
{
	return t->proto == MESHD_IPPROTO_TCP || t->proto == MESHD_IPPROTO_UDP;
}

SEC("tc")
int meshd_np_in(struct __sk_buff *skb)
{
	struct meshd_event_ctx c = { .dir = MESHD_DIR_INGRESS, .src_identity = MESHD_ID_WORLD };
	struct meshd_np_nat_value *v, nv;
	struct meshd_lb_svc_value *svc;
	struct meshd_lb_svc_key sk;
	struct meshd_tuple t = {};
	struct meshd_nat_key k;
	int ret;

	ret = meshd_parse(skb, &t);
	if (ret == MESHD_PARSE_NOT_IP || !np_applies(&t))
		return TC_ACT_OK;
	if (ret < 0)
		return TC_ACT_OK; /* not ours to judge: the stack decides */
	if (t.family == 6) {
		ret = np6_in(skb, &t);
		return ret < 0 ? meshd_drop(skb, &t, &c, -ret) : ret;
	}

	/* a client's packet of a connection already translated */
	np_key(&k, np_saddr(&t), np_daddr(&t), t.sport, t.dport, t.proto, MESHD_NAT_FWD);
	v = bpf_map_lookup_elem(&meshd_np_nat, &k);
	if (v) {
		nv = *v;
		ret = np_rewrite(skb, &t, true, nv.to_addr, nv.to_port);
		if (ret == 0 && (nv.flags & MESHD_NP_F_SNAT))
			ret = np_rewrite(skb, &t, false, nv.snat_addr, nv.snat_port);
		if (ret < 0)
			return meshd_drop(skb, &t, &c, -ret);
		return (nv.flags & MESHD_NP_F_SNAT) ? np_forward(skb, nv.snat_addr, nv.to_addr, t.proto) : TC_ACT_OK;
	}
	/* a remote backend's reply to a SNATed connection */
	k.dir = MESHD_NAT_REV;
	v = bpf_map_lookup_elem(&meshd_np_nat, &k);
	if (v && (v->flags & MESHD_NP_F_SNAT)) {
		nv = *v;
		ret = np_rewrite(skb, &t, false, nv.to_addr, nv.to_port);
		if (ret == 0)
			ret = np_rewrite(skb, &t, true, nv.snat_addr, nv.snat_port);
		if (ret < 0)
			return meshd_drop(skb, &t, &c, -ret);
		np_stat(MESHD_NP_STAT_REVNAT);
		/* its source is now the frontend, often an address of this node */
		return np_forward(skb, nv.to_addr, nv.snat_addr, t.proto);
	}
	svc = np_frontend(&t, &sk);
	if (!svc)
		return TC_ACT_OK;
	ret = np_new(skb, &t, &sk, svc);
	if (ret < 0)
		return meshd_drop(skb, &t, &c, -ret);
	if (ret == 2) {
		/* the new tuple, as the FWD entry holds it */
		np_key(&k, np_saddr(&t), np_daddr(&t), t.sport, t.dport, t.proto, MESHD_NAT_FWD);
		v = bpf_map_lookup_elem(&meshd_np_nat, &k);
		if (v)
			return np_forward(skb, v->snat_addr, v->to_addr, t.proto);
	}
	return TC_ACT_OK;
}

SEC("tc")
int meshd_np_out(struct __sk_buff *skb)
{
	struct meshd_event_ctx c = { .dir = MESHD_DIR_EGRESS, .dst_identity = MESHD_ID_WORLD };
	struct meshd_np_nat_value *v;
	struct meshd_tuple t = {};
	struct meshd_nat_key k;
	__be32 to_addr;
	__be16 to_port;
	int ret;

	ret = meshd_parse(skb, &t);
	if (ret != MESHD_PARSE_OK || !np_applies(&t))
		return TC_ACT_OK;
	if (t.family == 6) {
		ret = np6_out(skb, &t);
		return ret < 0 ? meshd_drop(skb, &t, &c, -ret) : ret;
	}
	np_key(&k, np_saddr(&t), np_daddr(&t), t.sport, t.dport, t.proto, MESHD_NAT_REV);
	v = bpf_map_lookup_elem(&meshd_np_nat, &k);
	if (!v || (v->flags & MESHD_NP_F_SNAT))
		return TC_ACT_OK;
	to_addr = v->to_addr;
	to_port = v->to_port;
	ret = np_rewrite(skb, &t, false, to_addr, to_port);
	if (ret < 0)
		return meshd_drop(skb, &t, &c, -ret);
	np_stat(MESHD_NP_STAT_REVNAT);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
