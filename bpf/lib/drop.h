/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The one exit for dropped packets: every drop emits an event with its reason. */
#ifndef MESHD_LIB_DROP_H
#define MESHD_LIB_DROP_H

#include "counter.h"
#include "drop_reasons.h"
#include "events.h"

_Static_assert(MESHD_DROP_MAX <= MESHD_METRIC_REASONS, "meshd_metrics has a slot per drop reason");

static __always_inline void meshd_count(__u32 slot)
{
	meshd_percpu_inc(&meshd_metrics, slot);
}

static __always_inline int meshd_drop(struct __sk_buff *skb, const struct meshd_tuple *t,
				       const struct meshd_event_ctx *c, __u32 reason)
{
	meshd_count(MESHD_METRIC_DROP(c->dir, reason));
	meshd_emit(skb, t, c, MESHD_EVENT_DROP, reason, MESHD_VERDICT_DENY, 0);
	return TC_ACT_SHOT;
}

#endif
