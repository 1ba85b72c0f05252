// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* sock: service load balancing at the socket layer (kube-proxy replacement).
 *
 * Attached to a cgroup v2 directory (the root, for a node), these programs
 * run inside the connect(), sendmsg(), recvmsg() and getpeername() system
 * calls of every process below it:
 *   connect4/6     a service VIP:port becomes a backend's address before the
 *                  kernel routes anything, so no packet is ever NATed;
 *   sendmsg4/6     the same for unconnected UDP (sendto a VIP);
 *   recvmsg4/6     a UDP reply's source goes back from the backend to the VIP;
 *   getpeername4/6 a connected socket's peer reads as the VIP;
 *   sock_release   a closing socket's reverse-translation entry is deleted.
 *
 * hostNamespaceOnly (host_ns_only): only sockets whose network namespace is
 * the host's are translated. Cgroup hooks fire by cgroup, not by namespace,
 * so a pod's process in the same cgroup is seen here: comparing the netns
 * cookie is what leaves it alone, so its ClusterIP stays a ClusterIP for
 * Istio's sidecar or ztunnel to intercept.
 *
 * Tunables are read-only globals set by the loader (src/datapath/lb/sock-lb.ts).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "lb.h"
#include "lib/lb.h"

#define SYS_PROCEED 1
#define SYS_REJECT  0

#ifndef AF_INET
#define AF_INET  2
#define AF_INET6 10
#endif

const volatile __u64 host_netns_cookie = 0;
const volatile __u32 host_ns_only = 0;

static __always_inline bool sock_skip_netns(void *ctx)
{
	if (!host_ns_only)
		return false;
	if (bpf_get_netns_cookie(ctx) == host_netns_cookie)
		return false;
	lb_stat(MESHD_LB_STAT_SKIPPED_NS);
	return true;
}

static __always_inline bool sock_proto_ok(__u32 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

/* The ctx's user address in the LB's 16-byte form (IPv4 v4-mapped). `v4` is
 * a constant at every call, so the other family's branch folds away: the
 * verifier refuses a connect4 program that reads user_ip6 and vice versa. */
static __always_inline void sock_addr_get(const struct bpf_sock_addr *ctx, __u32 addr[4], bool v4)
{
	if (v4) {
		lb_addr_v4(addr, ctx->user_ip4);
		return;
	}
	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
}

static __always_inline void sock_addr_set(struct bpf_sock_addr *ctx, const __u32 addr[4], __u16 port, bool v4)
{
	if (v4) {
		ctx->user_ip4 = addr[3];
	} else {
		ctx->user_ip6[0] = addr[0];
		ctx->user_ip6[1] = addr[1];
		ctx->user_ip6[2] = addr[2];
		ctx->user_ip6[3] = addr[3];
	}
	ctx->user_port = (__u32)port;
}

/* connect and sendmsg: a service VIP:port becomes a backend's. An IPv4
 * socket can only be sent to an IPv4 backend. */
static __always_inline int __sock_fwd(struct bpf_sock_addr *ctx, bool v4)
{
	__u32 addr[4];
	__u16 port = (__u16)ctx->user_port;
	/* Read ctx fields once into locals: clang may otherwise reuse a
	 * ctx+offset pointer, which the verifier refuses to dereference. */
	__u32 proto = ctx->protocol;
	int ret;

	if (!sock_proto_ok(proto) || sock_skip_netns(ctx))
		return SYS_PROCEED;
	sock_addr_get(ctx, addr, v4);
	ret = __lb_xlate_fwd(ctx, addr, &port, (__u8)proto, v4);
	if (ret < 0) {
		bpf_set_retval(ret); /* ECONNREFUSED instead of the default EPERM */
		return SYS_REJECT;
	}
	if (ret > 0)
		sock_addr_set(ctx, addr, port, v4);
	return SYS_PROCEED;
}

/* recvmsg and getpeername: a backend's address reads as the VIP again (an
 * IPv4 socket only if the VIP is IPv4 too). */
static __always_inline void __sock_rev(struct bpf_sock_addr *ctx, bool v4)
{
	__u32 addr[4];
	__u16 port = (__u16)ctx->user_port;

	if (sock_skip_netns(ctx))
		return;
	sock_addr_get(ctx, addr, v4);
	if (__lb_xlate_rev(ctx, addr, &port) && (!v4 || lb_addr_is_v4(addr)))
		sock_addr_set(ctx, addr, port, v4);
}

SEC("cgroup/connect4")
int meshd_connect4(struct bpf_sock_addr *ctx)
{
	return __sock_fwd(ctx, true);
}

SEC("cgroup/sendmsg4")
int meshd_sendmsg4(struct bpf_sock_addr *ctx)
{
	return __sock_fwd(ctx, true);
}

SEC("cgroup/recvmsg4")
int meshd_recvmsg4(struct bpf_sock_addr *ctx)
{
	__sock_rev(ctx, true);
	return SYS_PROCEED; /* recvmsg hooks must return 1 */
}

SEC("cgroup/getpeername4")
int meshd_getpeer4(struct bpf_sock_addr *ctx)
{
	__sock_rev(ctx, true);
	return SYS_PROCEED;
}

SEC("cgroup/connect6")
int meshd_connect6(struct bpf_sock_addr *ctx)
{
	return __sock_fwd(ctx, false);
}

SEC("cgroup/sendmsg6")
int meshd_sendmsg6(struct bpf_sock_addr *ctx)
{
	return __sock_fwd(ctx, false);
}

SEC("cgroup/recvmsg6")
int meshd_recvmsg6(struct bpf_sock_addr *ctx)
{
	__sock_rev(ctx, false);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername6")
int meshd_getpeer6(struct bpf_sock_addr *ctx)
{
	__sock_rev(ctx, false);
	return SYS_PROCEED;
}

SEC("cgroup/sock_release")
int meshd_sock_rel(struct bpf_sock *sk)
{
	/* Every ctx field is read up front, unconditionally: loads under the
	 * family branches were merged by clang into one ctx+offset pointer, which
	 * the verifier refuses to dereference. */
	__u32 family = sk->family, proto = sk->protocol;
	__u16 port = (__u16)sk->dst_port;
	__u32 v4 = sk->dst_ip4;
	__u32 peer[4] = { sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3] };

	if (!sock_proto_ok(proto) || port == 0)
		return SYS_PROCEED;
	if (family == AF_INET)
		lb_addr_v4(peer, v4);
	else if (family != AF_INET6)
		return SYS_PROCEED;
	__lb_revnat_forget(sk, peer, port);
	return SYS_PROCEED;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
