/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* policyAuditMode (MESHD_CFG_POLICY_AUDIT in meshd_config): a packet the
 * policy would drop is reported as a MESHD_EVENT_AUDIT event carrying the drop
 * reason, and passes as allowed (its connection is tracked, so it is reported
 * once). Leaving audit mode bumps the ipcache generation (the agent's config
 * writer), so established connections are judged again and the denied ones
 * cut. Shared by bpf/lxc.c and bpf/host.c. */
#ifndef MESHD_LIB_AUDIT_H
#define MESHD_LIB_AUDIT_H

#include "datapath.h"
#include "events.h"
#include "parse.h"

/* MESHD_VERDICT_ALLOW when audit mode let the packet through (reported),
 * 0 when it must be dropped. */
static __always_inline __u8 meshd_audited(struct __sk_buff *skb, const struct meshd_tuple *t,
					  const struct meshd_event_ctx *c, __u32 reason, const struct meshd_config *cfg)
{
	if (!(cfg->flags & MESHD_CFG_POLICY_AUDIT))
		return 0;
	meshd_emit(skb, t, c, MESHD_EVENT_AUDIT, reason, MESHD_VERDICT_DENY, 0);
	return MESHD_VERDICT_ALLOW;
}

#endif
