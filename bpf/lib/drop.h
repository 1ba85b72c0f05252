/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The one exit for dropped packets: every drop emits an event with its reason. */
#ifndef MESHD_LIB_DROP_H
#define MESHD_LIB_DROP_H

#include "drop_reasons.h"
#include "events.h"

static __always_inline int meshd_drop(struct __sk_buff *skb, const struct meshd_tuple *t,
				       const struct meshd_event_ctx *c, __u32 reason)
{
	meshd_emit(skb, t, c, MESHD_EVENT_DROP, reason, MESHD_VERDICT_DENY, 0);
	return TC_ACT_SHOT;
}

#endif
