/**
 * Garbage collection of endpoint state in the pinned maps. After a restart
 * the pins still hold what the previous agent wrote for endpoints that may
 * not come back (the pod went away while no agent ran); once every live
 * endpoint has been added again, whatever is left unclaimed is removed:
 * table rows and their links, pod addresses, policy entries, conntrack.
 *
 *   pruneUnclaimed({ pinDir, table, policy, ctFd, claimed, orphans });
 *
 * Blocking; a full conntrack walk is one syscall per entry. Only for the
 * single agent that owns the pins.
 */
import { native } from '../../../native/index.js';
import { CtKey } from '../maps.js';
import { detachEndpointPrograms } from './attach.js';
import type { EndpointTable } from './endpoint-table.js';
import type { PolicyMapState } from './policy-map-state.js';
import type { PolicyMapWriter } from './policy-map-writer.js';

/** Deletes the conntrack entries of the given ep_ids; returns how many. */
export function purgeConntrack(ctFd: number, epIds: ReadonlySet<number>): number {
  let n = 0;
  if (epIds.size === 0) return n;
  for (const [key] of native.mapDump(ctFd)) {
    if (epIds.has(CtKey.decode(key).ep_id) && native.mapDelete(ctFd, key)) n += 1;
  }
  return n;
}

export interface PruneInput {
  pinDir: string;
  table: EndpointTable;
  policy: PolicyMapWriter;
  ctFd: number;
  /** Interfaces of the endpoints added since start. */
  claimed: ReadonlySet<number>;
  /** Policy entries read back whose endpoint was not added again (emptied by the call). */
  orphans: Map<number, PolicyMapState>;
}

export function pruneUnclaimed(input: PruneInput): { endpoints: number; policyEntries: number } {
  let endpoints = 0;
  for (const ifindex of input.table.ifindexes()) {
    if (input.claimed.has(ifindex)) continue;
    detachEndpointPrograms(input.pinDir, ifindex);
    input.table.delete(ifindex);
    endpoints += 1;
  }
  input.table.pruneAddresses(input.claimed);
  let policyEntries = 0;
  for (const [epId, st] of input.orphans) policyEntries += input.policy.remove(epId, st.values());
  const orphans = new Set(input.orphans.keys());
  input.orphans.clear();
  purgeConntrack(input.ctFd, orphans);
  return { endpoints, policyEntries };
}
