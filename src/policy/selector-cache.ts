/**
 * The selector cache: every distinct selector (by canonical key) is evaluated
 * once against the identities and its result shared by every rule that uses
 * it. Identity additions/removals and DNS changes update the results in place
 * and report which selectors changed, so the repository recomputes only the
 * rules (and endpoints) that depend on them.
 *
 * Ownership: the cache owns the identity sets; callers must not mutate them.
 * Reference counted: acquire() per use, release() per use.
 */
import type { Identity } from '../identity/allocator.js';
import { matchesLabels } from './selector.js';
import type { FqdnSelector, Selector } from './selector.js';

export interface SelectorEntry {
  readonly selector: Selector;
  /** Identities currently selected. */
  readonly ids: Set<number>;
  refs: number;
}

export interface SelectorCacheDeps {
  identities(): Iterable<Identity>;
  /** Whether an identity is one of the IPs the DNS cache has for names this selector matches. */
  fqdnMatches(sel: FqdnSelector, identity: Identity): boolean;
}

export class SelectorCache {
  private readonly entries = new Map<string, SelectorEntry>();
  /** Number of (selector, identity) evaluations, for tests and benchmarks. */
  evaluations = 0;
  /** Bumped whenever an FQDN selector enters or leaves the cache (the engine re-selects names then). */
  fqdnGeneration = 0;

  constructor(private readonly deps: SelectorCacheDeps) {}

  private matches(sel: Selector, identity: Identity): boolean {
    this.evaluations++;
    return sel.kind === 'labels' ? matchesLabels(sel, identity) : this.deps.fqdnMatches(sel, identity);
  }

  acquire(sel: Selector): SelectorEntry {
    const have = this.entries.get(sel.key);
    if (have) {
      have.refs++;
      return have;
    }
    const ids = new Set<number>();
    for (const ident of this.deps.identities()) if (this.matches(sel, ident)) ids.add(ident.id);
    const entry: SelectorEntry = { selector: sel, ids, refs: 1 };
    this.entries.set(sel.key, entry);
    if (sel.kind === 'fqdn') this.fqdnGeneration++;
    return entry;
  }

  release(sel: Selector): void {
    const e = this.entries.get(sel.key);
    if (!e) return;
    if (--e.refs > 0) return;
    this.entries.delete(sel.key);
    if (sel.kind === 'fqdn') this.fqdnGeneration++;
  }

  /** Every FQDN selector some rule in force uses. */
  *fqdnSelectors(): Iterable<FqdnSelector> {
    for (const e of this.entries.values()) if (e.selector.kind === 'fqdn') yield e.selector;
  }

  get(key: string): SelectorEntry | undefined {
    return this.entries.get(key);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Evaluates every selector against a new identity; returns the entries that now select it. */
  identityAdded(identity: Identity): SelectorEntry[] {
    const changed: SelectorEntry[] = [];
    for (const e of this.entries.values()) {
      if (this.matches(e.selector, identity)) {
        e.ids.add(identity.id);
        changed.push(e);
      }
    }
    return changed;
  }

  identityRemoved(identity: Identity): SelectorEntry[] {
    const changed: SelectorEntry[] = [];
    for (const e of this.entries.values()) if (e.ids.delete(identity.id)) changed.push(e);
    return changed;
  }

  /** Re-evaluates the FQDN selectors accepted by `affects` (e.g. those matching a changed name). */
  refreshFqdn(affects: (sel: FqdnSelector) => boolean): SelectorEntry[] {
    const changed: SelectorEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.selector.kind !== 'fqdn' || !affects(e.selector)) continue;
      const next = new Set<number>();
      for (const ident of this.deps.identities()) if (this.matches(e.selector, ident)) next.add(ident.id);
      const same = next.size === e.ids.size && [...next].every((id) => e.ids.has(id));
      if (same) continue;
      e.ids.clear();
      for (const id of next) e.ids.add(id);
      changed.push(e);
    }
    return changed;
  }
}
