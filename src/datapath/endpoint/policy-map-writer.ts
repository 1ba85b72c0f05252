/**
 * The one writer of the endpoint policy maps: meshd_pol_exact (hash, exact
 * ports) and meshd_policy (LPM trie: port ranges, any port, any protocol),
 * both keyed by ep_id first (bpf/lib/policy.h). It turns one endpoint's map
 * state into another with the ordered diff of policy-map-state.ts, checks the
 * peak entry count per map before the first write, and writes through a
 * MapTransaction, so a refusal leaves the kernel exactly as it was.
 *
 *   const w = new PolicyMapWriter(fds, capacity);
 *   const pinned = w.readBack();                       // once, at start: ep_id → entries
 *   const ops = w.plan(who, current, next);            // MESHD_POLICY_MAP_FULL, nothing written
 *   w.apply(who, epId, current, ops);                  // MESHD_POLICY_MAP_FULL / MESHD_MAP_WRITE_FAILED, rolled back
 *
 * Blocking. The entry counts it keeps are those of every endpoint together,
 * so it must be the only writer of these maps.
 */
import { native } from '../../../native/index.js';
import { PolicyKey, PolicyValue } from '../maps.js';
import { DatapathError } from './errors.js';
import { isMapFull, MapTransaction } from './map-transaction.js';
import {
  diffPolicyMapState,
  type PolicyMapEntry,
  type PolicyMapKey,
  type PolicyMapOp,
  type PolicyMapState,
  policyKeyId,
  policyKeyPrefixlen,
  verdictCode,
  verdictFromCode,
} from './policy-map-state.js';

export type PolicyMapName = 'policy' | 'policyExact';
const MAPS: readonly PolicyMapName[] = ['policy', 'policyExact'];
const KERNEL_NAME: Readonly<Record<PolicyMapName, string>> = { policy: 'meshd_policy', policyExact: 'meshd_pol_exact' };

/** Which policy a write is for, in errors. */
export interface PolicyRef {
  endpointId: string;
  revision: number;
}

/** Exact-port keys live in the hash, everything else in the trie (bpf/lib/policy.h). */
function policyMapOf(k: PolicyMapKey): PolicyMapName {
  return !k.anyProto && k.portBits === 16 ? 'policyExact' : 'policy';
}

function encodePolicyKey(epId: number, k: PolicyMapKey): Buffer {
  return PolicyKey.encode({ prefixlen: policyKeyPrefixlen(k), ep_id: epId, identity: k.identity, egress: k.egress, proto: k.proto, dport: k.port });
}

function decodePolicyEntry(key: Buffer, value: Buffer): { epId: number; entry: PolicyMapEntry } | undefined {
  const k = PolicyKey.decode(key);
  const v = PolicyValue.decode(value);
  const verdict = verdictFromCode(v.verdict);
  if (!verdict || (k.egress !== 0 && k.egress !== 1)) return undefined;
  const anyProto = k.prefixlen === 72;
  const mk: PolicyMapKey = { identity: k.identity, egress: k.egress, proto: k.proto, port: k.dport, portBits: anyProto ? 0 : k.prefixlen - 80, anyProto };
  return { epId: k.ep_id, entry: { key: mk, value: { verdict, proxyPort: v.proxy_port } } };
}

export class PolicyMapWriter {
  private readonly count: Record<PolicyMapName, number> = { policy: 0, policyExact: 0 };

  constructor(
    private readonly fds: Readonly<Record<PolicyMapName, number>>,
    private readonly capacity: Readonly<Record<PolicyMapName, number>>,
  ) {}

  /** Every entry the pinned maps hold, per ep_id (entries this build cannot decode are skipped). Call once, before any write. */
  readBack(): Map<number, PolicyMapState> {
    const out = new Map<number, PolicyMapState>();
    for (const map of MAPS) {
      for (const [key, value] of native.mapDump(this.fds[map])) {
        const d = decodePolicyEntry(key, value);
        if (!d) continue;
        let st = out.get(d.epId);
        if (!st) out.set(d.epId, (st = new Map()));
        st.set(policyKeyId(d.entry.key), d.entry);
        this.count[map] += 1;
      }
    }
    return out;
  }

  /** The ordered writes from `current` to `next`; MESHD_POLICY_MAP_FULL if their peak does not fit (nothing is written). */
  plan(ref: PolicyRef, current: PolicyMapState, next: PolicyMapState): PolicyMapOp[] {
    const ops = diffPolicyMapState(current, next);
    // Puts come before deletes, so what must fit is the peak along the sequence, per map.
    for (const map of MAPS) {
      const peak = this.peakCount(ops, current, map);
      if (peak > this.capacity[map]) {
        throw new DatapathError(
          'MESHD_POLICY_MAP_FULL',
          `policy of ${ref.endpointId} (revision ${ref.revision}) needs ${peak} entries in ${KERNEL_NAME[map]}, capacity ${this.capacity[map]}; previous policy kept`,
          { endpointId: ref.endpointId, revision: ref.revision, map, needed: peak, capacity: this.capacity[map] },
        );
      }
    }
    return ops;
  }

  /** Writes `ops` (from plan) all-or-nothing; on a kernel refusal the maps are rolled back and the error is thrown. */
  apply(ref: PolicyRef, epId: number, current: PolicyMapState, ops: readonly PolicyMapOp[]): void {
    const tx = new MapTransaction();
    try {
      for (const op of ops) {
        if (op.op === 'put') {
          const v = op.entry.value;
          tx.put(this.fds[policyMapOf(op.entry.key)], encodePolicyKey(epId, op.entry.key), PolicyValue.encode({ verdict: verdictCode(v.verdict), pad: 0, proxy_port: v.proxyPort, rule_id: 0 }));
        } else {
          tx.delete(this.fds[policyMapOf(op.key)], encodePolicyKey(epId, op.key), PolicyValue.size);
        }
      }
    } catch (e) {
      tx.rollback();
      throw new DatapathError(
        isMapFull(e) ? 'MESHD_POLICY_MAP_FULL' : 'MESHD_MAP_WRITE_FAILED',
        `policy of ${ref.endpointId} (revision ${ref.revision}) refused by the kernel (${e instanceof Error ? e.message : String(e)}); previous policy restored`,
        { endpointId: ref.endpointId, revision: ref.revision },
        e,
      );
    }
    for (const op of ops) {
      const key = op.op === 'put' ? op.entry.key : op.key;
      const known = current.has(policyKeyId(key));
      if (op.op === 'put' && !known) this.count[policyMapOf(key)] += 1;
      if (op.op === 'delete' && known) this.count[policyMapOf(key)] -= 1;
    }
  }

  /** Deletes an endpoint's entries (removal, GC); returns how many were still in the kernel. */
  remove(epId: number, entries: Iterable<PolicyMapEntry>): number {
    let n = 0;
    for (const e of entries) {
      const map = policyMapOf(e.key);
      if (native.mapDelete(this.fds[map], encodePolicyKey(epId, e.key))) n += 1;
      this.count[map] -= 1;
    }
    return n;
  }

  private peakCount(ops: readonly PolicyMapOp[], entries: PolicyMapState, map: PolicyMapName): number {
    let n = this.count[map];
    let peak = n;
    for (const op of ops) {
      if (op.op === 'put') {
        if (policyMapOf(op.entry.key) === map && !entries.has(policyKeyId(op.entry.key))) n += 1;
      } else if (policyMapOf(op.key) === map) {
        n -= 1;
      }
      peak = Math.max(peak, n);
    }
    return peak;
  }
}
