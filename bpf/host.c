// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* host: the host firewall, attached to the node's native devices (Cilium's
 * `hostFirewall.enabled` and `devices`).
 *
 *   meshd_host_in   tc ingress: traffic to the host's own addresses (and to
 *                   multicast or broadcast groups the host receives), judged
 *                   by the host endpoint's ingress policy
 *   meshd_host_out  tc egress: traffic from the host's own addresses, judged
 *                   by its egress policy
 *
 * The host endpoint's policy is bpf/lib/host_policy.h's, shared with the
 * pods' veths (bpf/lxc.c), where traffic between the host and its local pods
 * is judged. Traffic forwarded through the device to or from pods is not the
 * host's and passes untouched: the pods' own hooks judge it. Non-IP frames
 * (ARP) and IPv6 neighbour discovery always pass.
 *
 * policyAuditMode (MESHD_CFG_POLICY_AUDIT, bpf/lib/audit.h): a packet the
 * policy would drop is reported as a MESHD_EVENT_AUDIT event with the drop
 * reason and passes, its connection tracked as allowed. Errors are negative drop
 * reasons that end in meshd_drop(), the one exit that reports them. A packet
 * that passes goes on to the device's next program (HOST_NEXT).
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "host_policy.h"

/* TCX_NEXT: the packet passes to the next program on the device (tcx runs
 * a device's programs in order until one returns anything else), so that
 * bpf/nodeport.c, attached after this program, still sees it. */
#define HOST_NEXT (-1)

SEC("tc")
int meshd_host_in(struct __sk_buff *skb)
{
	int ret = meshd_host_policy(skb, MESHD_DIR_INGRESS);

	return ret == TC_ACT_OK ? HOST_NEXT : ret;
}

SEC("tc")
int meshd_host_out(struct __sk_buff *skb)
{
	int ret = meshd_host_policy(skb, MESHD_DIR_EGRESS);

	return ret == TC_ACT_OK ? HOST_NEXT : ret;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
