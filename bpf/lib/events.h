/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Flow events to a BPF ring buffer: drops, sampled verdicts of new
 * connections, redirects to the proxy. Decoded by src/datapath/endpoint/flow-events.ts.
 * A full ring buffer loses the event, never the packet; the loss is counted
 * (MESHD_METRIC_EVENTS_LOST) and the agent reports it as Hubble's lost
 * events from PERF_EVENT_RING_BUFFER. */
#ifndef MESHD_LIB_EVENTS_H
#define MESHD_LIB_EVENTS_H

#include "counter.h"
#include "datapath.h"
#include "parse.h"

/* The datapath's counters (slots: enum meshd_metric); declared here because
 * a lost event is counted here, and drop.h counts drops in it too. */
MESHD_PERCPU_COUNTERS(meshd_metrics, MESHD_METRIC_MAX);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meshd_events SEC(".maps");

/* The event struct travels only through the ring buffer; this read-only
 * anchor puts it in the object's BTF so the codec test can check it. */
const volatile struct meshd_flow_event meshd_flow_event_layout = {};

struct meshd_event_ctx {
	__u32 ep_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u8 dir;
};

static __always_inline void meshd_emit(struct __sk_buff *skb, const struct meshd_tuple *t,
					const struct meshd_event_ctx *c, __u32 type, __u32 reason, __u8 verdict,
					__u16 proxy_port)
{
	struct meshd_flow_event *ev = bpf_ringbuf_reserve(&meshd_events, sizeof(*ev), 0);

	if (!ev) {
		meshd_percpu_inc(&meshd_metrics, MESHD_METRIC_EVENTS_LOST);
		return;
	}
	ev->ts_ns = bpf_ktime_get_ns();
	ev->type = type;
	ev->reason = reason;
	ev->ep_id = c->ep_id;
	ev->src_identity = c->src_identity;
	ev->dst_identity = c->dst_identity;
	ev->ifindex = skb->ifindex;
	__builtin_memcpy(ev->saddr, t->saddr, 16);
	__builtin_memcpy(ev->daddr, t->daddr, 16);
	ev->sport = t->sport;
	ev->dport = t->dport;
	ev->proto = t->proto;
	ev->family = t->family;
	ev->dir = c->dir;
	ev->verdict = verdict;
	ev->proxy_port = proxy_port;
	ev->tcp_flags = t->proto == MESHD_IPPROTO_TCP ? t->tcp_flags : 0;
	ev->icmp_type = t->icmp_type;
	bpf_ringbuf_submit(ev, 0);
}

#endif
