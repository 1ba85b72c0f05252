/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Drop reasons of the endpoint datapath (bpf/lxc.c).
 *
 * One family, UPPER_SNAKE, values stable across releases: they travel in ring
 * buffer events and in metrics. Mirror: src/datapath/abi.ts (DropReason);
 * test/integration/bpf-abi.test.ts compares it with the enum in the compiled
 * object's BTF, so a reason added here without its mirror fails the tests.
 */
#ifndef MESHD_DROP_REASONS_H
#define MESHD_DROP_REASONS_H

enum meshd_drop_reason {
	MESHD_DROP_UNSPEC = 0,
	/* a policy entry with verdict DENY matched (deny beats allow) */
	MESHD_DROP_POLICY_DENY = 1,
	/* no entry matched and the direction is default-deny */
	MESHD_DROP_POLICY_DEFAULT_DENY = 2,
	/* an established connection whose re-evaluation after a policy change denies it */
	MESHD_DROP_POLICY_REVOKED = 3,
	/* L7-policied flow and no proxy listener on the proxy port: fail closed */
	MESHD_DROP_PROXY_UNAVAILABLE = 4,
	/* bpf_sk_assign refused the proxy socket */
	MESHD_DROP_PROXY_ASSIGN_FAILED = 5,
	/* REDIRECT verdict at a hook that cannot deliver to the proxy (traffic
	 * entering a pod from outside the node): fail closed */
	MESHD_DROP_PROXY_UNREACHABLE_HOOK = 6,
	/* headers could not be read */
	MESHD_DROP_INVALID_PACKET = 7,
	/* per-packet service translation: the service has no backend */
	MESHD_DROP_NO_SERVICE_BACKEND = 8,
	/* per-packet service translation: rewriting the packet failed */
	MESHD_DROP_NAT_FAILED = 9,
	/* tunnel mode: the packet could not be encapsulated, or arrived from the
	 * tunnel without a usable key (no identity in the VNI) */
	MESHD_DROP_TUNNEL_FAILED = 10,
	MESHD_DROP_MAX = 11,
};

/* Keeps the enum in the object's BTF (see meshd_datapath_abi); never read. */
const volatile enum meshd_drop_reason meshd_drop_reason_abi = MESHD_DROP_UNSPEC;

#endif
