/**
 * From the policy engine's EndpointPolicy to the exact set of entries of the
 * endpoint's slice of the policy map (bpf/lib/policy.h), and from two such
 * sets to the ordered list of writes that turns one into the other.
 *
 *   const next = policyMapState(policy, { proxyPort: (kind, dir) => 15001 });
 *   const ops = diffPolicyMapState(current, next); // apply in order
 *
 * Keys are LPM prefixes over (identity, direction, protocol, port): a port
 * range becomes the minimal set of aligned port prefixes, so every lookup
 * stays a fixed number of lookups whatever the rules. The contract's
 * semantics (src/policy/types.ts) are "any matching DENY wins, else any
 * matching REDIRECT, else any matching ALLOW", independent of specificity;
 * the datapath picks the longest prefix within one identity. So a REDIRECT is
 * copied onto every ALLOW key it covers, and a DENY onto every key it covers:
 * the most specific key then always carries the strongest matching verdict.
 */
import type { Direction, EndpointPolicy, L7Kind, PolicyEntry, Verdict } from '../../policy/types.js';
import { MeshdError } from '../../util/errors.js';
import { Dir, VerdictCode } from '../maps.js';

/** Protocols an "any protocol" entry with a port stands for (as Cilium's ANY). */
const PORT_PROTOCOLS = [6, 17, 132] as const;

export interface PolicyMapKey {
  identity: number;
  egress: 0 | 1;
  /** 0 with anyProto */
  proto: number;
  /** first port of the prefix (host order) */
  port: number;
  /** how many leading port bits are significant: 16 exact, 0 any port */
  portBits: number;
  anyProto: boolean;
}

export interface PolicyMapValue {
  verdict: Verdict;
  proxyPort: number;
}

export interface PolicyMapEntry {
  key: PolicyMapKey;
  value: PolicyMapValue;
}

/** Keyed by policyKeyId(key). */
export type PolicyMapState = Map<string, PolicyMapEntry>;

export function policyKeyPrefixlen(k: PolicyMapKey): number {
  return k.anyProto ? 72 : 80 + k.portBits;
}

export function policyKeyId(k: PolicyMapKey): string {
  return `${k.egress}/${k.identity}/${k.anyProto ? '*' : k.proto}/${k.port}/${k.portBits}`;
}

/** The minimal set of aligned prefixes covering [lo, hi] (inclusive). */
export function portPrefixes(lo: number, hi: number): Array<{ port: number; bits: number }> {
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > 65535 || lo > hi) {
    throw new PolicyMapStateError('MESHD_POLICY_BAD_ENTRY', `port range ${lo}-${hi} is not within 0-65535`);
  }
  const out: Array<{ port: number; bits: number }> = [];
  let p = lo;
  while (p <= hi) {
    let size = 1;
    let bits = 16;
    while (bits > 0 && p % (size * 2) === 0 && p + size * 2 - 1 <= hi) {
      size *= 2;
      bits -= 1;
    }
    out.push({ port: p, bits });
    p += size;
  }
  return out;
}

const rank: Record<Verdict, number> = { ALLOW: 1, REDIRECT: 2, DENY: 3 };

function keysOf(e: PolicyEntry, egress: 0 | 1): PolicyMapKey[] {
  const anyPort = e.port === 0 && e.endPort === 0;
  if (e.protocol === 0 && anyPort) {
    return [{ identity: e.remoteIdentity, egress, proto: 0, port: 0, portBits: 0, anyProto: true }];
  }
  const protos = e.protocol === 0 ? PORT_PROTOCOLS : [e.protocol];
  const ranges = anyPort ? [{ port: 0, bits: 0 }] : portPrefixes(e.port, Math.max(e.port, e.endPort));
  const keys: PolicyMapKey[] = [];
  for (const proto of protos) {
    for (const r of ranges) keys.push({ identity: e.remoteIdentity, egress, proto, port: r.port, portBits: r.bits, anyProto: false });
  }
  return keys;
}

/** Whether every packet `inner` matches is also matched by `outer` (same direction). */
export function keyCovers(outer: PolicyMapKey, inner: PolicyMapKey): boolean {
  if (outer.egress !== inner.egress) return false;
  if (outer.identity !== 0 && outer.identity !== inner.identity) return false;
  if (outer.anyProto) return true;
  if (inner.anyProto || outer.proto !== inner.proto) return false;
  if (outer.portBits > inner.portBits) return false;
  const shift = 16 - outer.portBits;
  return outer.portBits === 0 || outer.port >>> shift === inner.port >>> shift;
}

export interface PolicyMapOptions {
  /** The node proxy's port for an L7 kind and direction (REDIRECT rows). */
  proxyPort: (kind: L7Kind, direction: Direction) => number;
}

/** A policy entry the maps cannot express; `where` is its path in the EndpointPolicy (`<endpoint>.<direction>.entries[i]`). */
export class PolicyMapStateError extends MeshdError {
  declare readonly code: 'MESHD_POLICY_NO_PROXY_PORT' | 'MESHD_POLICY_BAD_ENTRY';

  constructor(
    code: 'MESHD_POLICY_NO_PROXY_PORT' | 'MESHD_POLICY_BAD_ENTRY',
    message: string,
    readonly where?: string,
    cause?: unknown,
  ) {
    super(code, message, { kind: 'invalid', cause });
  }
}

/** The complete desired state of one endpoint's policy entries. */
export function policyMapState(policy: EndpointPolicy, opts: PolicyMapOptions): PolicyMapState {
  const state: PolicyMapState = new Map();
  const denies: PolicyMapKey[] = [];
  const redirects: PolicyMapEntry[] = [];
  for (const direction of ['ingress', 'egress'] as const) {
    const egress = direction === 'egress' ? Dir.EGRESS : Dir.INGRESS;
    policy[direction].entries.forEach((e, i) => {
      const where = `${policy.endpointId}.${direction}.entries[${i}]`;
      let proxyPort = 0;
      if (e.verdict === 'REDIRECT') {
        if (!e.l7) throw new PolicyMapStateError('MESHD_POLICY_BAD_ENTRY', `${where}: REDIRECT without l7 rules`, where);
        proxyPort = opts.proxyPort(e.l7.kind, direction);
        if (!Number.isInteger(proxyPort) || proxyPort <= 0 || proxyPort > 65535) {
          throw new PolicyMapStateError('MESHD_POLICY_NO_PROXY_PORT', `${where}: no proxy port for ${e.l7.kind}/${direction}`, where);
        }
      }
      let keys: PolicyMapKey[];
      try {
        keys = keysOf(e, egress);
      } catch (err) {
        throw new PolicyMapStateError('MESHD_POLICY_BAD_ENTRY', `${where}: ${err instanceof Error ? err.message : String(err)}`, where, err);
      }
      for (const key of keys) {
        const id = policyKeyId(key);
        const prev = state.get(id);
        if (prev && rank[prev.value.verdict] >= rank[e.verdict]) continue;
        state.set(id, { key, value: { verdict: e.verdict, proxyPort } });
        if (e.verdict === 'DENY') denies.push(key);
        if (e.verdict === 'REDIRECT') redirects.push({ key, value: { verdict: e.verdict, proxyPort } });
      }
    });
  }
  // Longest prefix wins inside one lookup: a broader REDIRECT, then a broader
  // DENY, must be written into the narrower keys it covers. Of several
  // covering redirects the most specific one gives the proxy port.
  if (redirects.length > 0) {
    const bySpecificity = [...redirects].sort((a, b) => policyKeyPrefixlen(b.key) - policyKeyPrefixlen(a.key) || b.key.identity - a.key.identity);
    for (const entry of state.values()) {
      if (entry.value.verdict !== 'ALLOW') continue;
      const r = bySpecificity.find((x) => keyCovers(x.key, entry.key));
      if (r) entry.value = { verdict: 'REDIRECT', proxyPort: r.value.proxyPort };
    }
  }
  if (denies.length > 0) {
    for (const entry of state.values()) {
      if (entry.value.verdict === 'DENY') continue;
      if (denies.some((d) => keyCovers(d, entry.key))) entry.value = { verdict: 'DENY', proxyPort: 0 };
    }
  }
  return state;
}

export type PolicyMapOp = { op: 'put'; entry: PolicyMapEntry } | { op: 'delete'; key: PolicyMapKey };

function sameValue(a: PolicyMapValue, b: PolicyMapValue): boolean {
  return a.verdict === b.verdict && a.proxyPort === b.proxyPort;
}

/**
 * The writes from `prev` to `next`, ordered so that no intermediate state
 * allows what neither end allows and nothing both ends allow is denied on
 * the way: new and changed DENY entries first, then new and changed allow
 * entries, then removal of allow entries, and last the removal of deny
 * entries. Unchanged entries are not touched.
 */
export function diffPolicyMapState(prev: PolicyMapState, next: PolicyMapState): PolicyMapOp[] {
  const putDeny: PolicyMapOp[] = [];
  const delAllow: PolicyMapOp[] = [];
  const putAllow: PolicyMapOp[] = [];
  const delDeny: PolicyMapOp[] = [];
  for (const [id, n] of next) {
    const p = prev.get(id);
    if (p && sameValue(p.value, n.value)) continue;
    (n.value.verdict === 'DENY' ? putDeny : putAllow).push({ op: 'put', entry: n });
  }
  for (const [id, p] of prev) {
    if (next.has(id)) continue;
    (p.value.verdict === 'DENY' ? delDeny : delAllow).push({ op: 'delete', key: p.key });
  }
  return [...putDeny, ...putAllow, ...delAllow, ...delDeny];
}

export function verdictCode(v: Verdict): number {
  return VerdictCode[v];
}

export function verdictFromCode(n: number): Verdict | undefined {
  return n === VerdictCode.ALLOW ? 'ALLOW' : n === VerdictCode.DENY ? 'DENY' : n === VerdictCode.REDIRECT ? 'REDIRECT' : undefined;
}
