/**
 * The policy repository: the translated rules of every policy object,
 * indexed for incremental recomputation. It owns the rules' selector-cache
 * references (subject and peers) and the CIDR identities their prefixes need,
 * and answers the two questions the engine asks on a change:
 * which rules select an identity, and which identities' policies depend on a
 * selector.
 *
 *   const repo = new PolicyRepository(cache, allocator);
 *   const allocated = await repo.allocate(rules);   // may reject: nothing is held then
 *   const affected = repo.replace('CiliumNetworkPolicy/default/web', allocated);
 *
 * Allocation is split from replacement so that a policy change is atomic:
 * the CIDR identities (asynchronous, may fail) are taken first, and the
 * synchronous replace() installs the rules only once all of them exist.
 *
 * Replacing a policy acquires the new rules' selectors before releasing the
 * old ones, so selectors they share are never dropped and re-evaluated.
 */
import type { IdentityAllocator } from '../identity/allocator.js';
import { cidrIdentityLabels } from '../identity/cidr.js';
import { LabelSet } from '../identity/labels.js';
import type { Rule } from './rule.js';
import type { SelectorCache, SelectorEntry } from './selector-cache.js';
import { isWildcard } from './selector.js';
import type { Selector } from './selector.js';

export interface RuleState {
  readonly rule: Rule;
  readonly subject: SelectorEntry;
  readonly peers: readonly SelectorEntry[];
  readonly prefixIdentities: readonly number[];
  /** Has egress ports named by the destination's port names (depends on peers' endpoints). */
  readonly egressNamed: boolean;
}

/** A rule with the CIDR identities of its prefixes, allocated and not yet installed. */
export interface AllocatedRule {
  readonly rule: Rule;
  readonly prefixIdentities: readonly number[];
}

export class PolicyRepository {
  private readonly policies = new Map<string, RuleState[]>();
  private readonly bySubject = new Map<string, Set<RuleState>>();
  private readonly byPeer = new Map<string, Set<RuleState>>();
  private readonly egressNamed = new Set<RuleState>();

  constructor(
    private readonly cache: SelectorCache,
    private readonly allocator: IdentityAllocator,
  ) {}

  /**
   * Takes one reference on the CIDR identity of every prefix the rules use; all or none. The result must
   * go to replace() (which owns it from then on) or to discard().
   */
  async allocate(rules: readonly Rule[]): Promise<AllocatedRule[]> {
    const out: AllocatedRule[] = [];
    const taken: number[] = [];
    try {
      for (const rule of rules) {
        const prefixIdentities: number[] = [];
        for (const p of rule.prefixes) {
          const id = (await this.allocator.allocate(LabelSet.from(cidrIdentityLabels(p)))).id;
          taken.push(id);
          prefixIdentities.push(id);
        }
        out.push({ rule, prefixIdentities });
      }
    } catch (e) {
      for (const id of taken) this.allocator.release(id);
      throw e;
    }
    return out;
  }

  /** Gives back what allocate() took, for rules that will not be installed. */
  discard(rules: readonly AllocatedRule[]): void {
    for (const r of rules) for (const id of r.prefixIdentities) this.allocator.release(id);
  }

  /** Installs (or replaces, or with `rules` empty removes) a policy's rules; returns the identities whose policy may change. */
  replace(policyKey: string, rules: readonly AllocatedRule[]): Set<number> {
    const affected = new Set<number>();
    const states = rules.map((r) => this.add(r, affected));
    const prev = this.policies.get(policyKey);
    if (states.length > 0) this.policies.set(policyKey, states);
    else this.policies.delete(policyKey);
    for (const s of prev ?? []) this.remove(s, affected);
    return affected;
  }

  has(policyKey: string): boolean {
    return this.policies.has(policyKey);
  }

  keys(): string[] {
    return [...this.policies.keys()];
  }

  /** Rules whose subject selects the identity, in a stable order. */
  rulesSelecting(identity: number): Rule[] {
    const out: Rule[] = [];
    for (const set of this.bySubject.values()) {
      const first = set.values().next().value;
      if (!first || !first.subject.ids.has(identity)) continue;
      for (const r of set) out.push(r.rule);
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Identities whose policy uses one of these selectors as a peer (the wildcard never counts: it is identity 0). */
  dependentsOf(changed: readonly SelectorEntry[], into: Set<number>): void {
    for (const e of changed) {
      if (isWildcard(e.selector)) continue;
      for (const r of this.byPeer.get(e.selector.key) ?? []) for (const id of r.subject.ids) into.add(id);
    }
  }

  /** Identities whose egress named ports may resolve differently after a peer identity's ports changed. */
  namedPortDependents(identities: readonly number[], into: Set<number>): void {
    for (const r of this.egressNamed) {
      const hit = r.peers.some((p) => isWildcard(p.selector) || identities.some((id) => p.ids.has(id)));
      if (hit) for (const id of r.subject.ids) into.add(id);
    }
  }

  private add({ rule, prefixIdentities }: AllocatedRule, affected: Set<number>): RuleState {
    const subject = this.cache.acquire(rule.subject);
    const peerSels = new Map<string, Selector>();
    for (const list of [rule.ingress, rule.ingressDeny, rule.egress, rule.egressDeny]) {
      for (const pr of list) for (const s of pr.selectors) peerSels.set(s.key, s);
    }
    // Requirement selectors narrow peers: their changes affect this rule's subjects like a peer's do.
    if (rule.requires) for (const list of Object.values(rule.requires)) for (const s of list) peerSels.set(s.key, s);
    const peers = [...peerSels.values()].map((s) => this.cache.acquire(s));
    const egressNamed = [...rule.egress, ...rule.egressDeny].some((pr) => (pr.ports ?? []).some((p) => p.name !== undefined));
    const state: RuleState = { rule, subject, peers, prefixIdentities, egressNamed };
    addTo(this.bySubject, rule.subject.key, state);
    for (const p of peers) addTo(this.byPeer, p.selector.key, state);
    if (egressNamed) this.egressNamed.add(state);
    for (const id of subject.ids) affected.add(id);
    return state;
  }

  private remove(state: RuleState, affected: Set<number>): void {
    for (const id of state.subject.ids) affected.add(id);
    removeFrom(this.bySubject, state.rule.subject.key, state);
    for (const p of state.peers) removeFrom(this.byPeer, p.selector.key, state);
    this.egressNamed.delete(state);
    this.cache.release(state.rule.subject);
    for (const p of state.peers) this.cache.release(p.selector);
    for (const id of state.prefixIdentities) this.allocator.release(id);
  }
}

export function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s) s.add(v);
  else m.set(k, new Set([v]));
}

export function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}
