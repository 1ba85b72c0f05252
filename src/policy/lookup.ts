/**
 * The reference lookup over an endpoint's entries (see the semantics in
 * types.ts): what the datapath must decide for a packet, and what
 * `meshd policy trace` reports.
 */
import type { DirectionPolicy, L7Rules, PolicyEntry } from './types.js';

export interface LookupResult {
  verdict: 'ALLOW' | 'DENY' | 'REDIRECT';
  /** Why: a matching entry, default deny, or no enforcement in this direction. */
  reason: 'entry' | 'default-deny' | 'not-enforced';
  /** Union of the L7 rules (REDIRECT only). */
  l7?: L7Rules;
  /** Policies behind the decision (entries' derivedFrom, or the policies that enabled default deny). */
  policies: string[];
  matched: PolicyEntry[];
  /** `log.value`s of the rules behind the decision (the matched entries' `log`), sorted; absent when none. */
  log?: string[];
}

export function entryMatches(e: PolicyEntry, remote: number, protocol: number, port: number): boolean {
  if (e.remoteIdentity !== 0 && e.remoteIdentity !== remote) return false;
  if (e.protocol !== 0 && e.protocol !== protocol) return false;
  if (e.port !== 0 && (port < e.port || port > e.endPort)) return false;
  return true;
}

export function lookupEntries(dir: DirectionPolicy, remote: number, protocol: number, port: number): LookupResult {
  const r = decide(dir, remote, protocol, port);
  const log = [...new Set(r.matched.flatMap((e) => e.log ?? []))].sort();
  if (log.length > 0) r.log = log;
  return r;
}

function decide(dir: DirectionPolicy, remote: number, protocol: number, port: number): LookupResult {
  const matched = dir.entries.filter((e) => entryMatches(e, remote, protocol, port));
  const names = (list: PolicyEntry[]): string[] => [...new Set(list.flatMap((e) => e.derivedFrom))].sort();
  const deny = matched.filter((e) => e.verdict === 'DENY');
  if (deny.length > 0) return { verdict: 'DENY', reason: 'entry', policies: names(deny), matched: deny };
  const redirect = matched.filter((e) => e.verdict === 'REDIRECT');
  const allow = matched.filter((e) => e.verdict === 'ALLOW');
  if (redirect.length > 0) {
    const first = redirect[0]?.l7;
    let l7: L7Rules | undefined;
    if (first) {
      const same = redirect.map((e) => e.l7).filter((x): x is L7Rules => x !== undefined && x.kind === first.kind);
      l7 = unionOf(first.kind, same, allow.length > 0);
    }
    const res: LookupResult = { verdict: 'REDIRECT', reason: 'entry', policies: names([...redirect, ...allow]), matched: [...redirect, ...allow] };
    if (l7) res.l7 = l7;
    return res;
  }
  if (allow.length > 0) return { verdict: 'ALLOW', reason: 'entry', policies: names(allow), matched: allow };
  if (dir.defaultDeny) return { verdict: 'DENY', reason: 'default-deny', policies: [...(dir.enforcedBy ?? [])], matched: [] };
  return { verdict: 'ALLOW', reason: 'not-enforced', policies: [], matched: [] };
}

function unionOf(kind: L7Rules['kind'], list: L7Rules[], allowAll: boolean): L7Rules {
  const dedupe = <R>(rules: R[]): R[] => [...new Map(rules.map((r) => [JSON.stringify(r), r])).values()];
  switch (kind) {
    case 'http': {
      const rules = list.flatMap((x) => (x.kind === 'http' ? x.rules : []));
      return { kind, rules: dedupe(allowAll ? [...rules, {}] : rules) };
    }
    case 'kafka': {
      const rules = list.flatMap((x) => (x.kind === 'kafka' ? x.rules : []));
      return { kind, rules: dedupe(allowAll ? [...rules, {}] : rules) };
    }
    case 'dns': {
      const rules = list.flatMap((x) => (x.kind === 'dns' ? x.rules : []));
      return { kind, rules: dedupe(allowAll ? [...rules, { matchPattern: '*' }] : rules) };
    }
    case 'tls': {
      const rules = list.flatMap((x) => (x.kind === 'tls' ? x.rules : []));
      return { kind, rules: dedupe(allowAll ? [...rules, {}] : rules) };
    }
  }
}

/**
 * The lookup a datapath can implement with exact-match/LPM maps: in each of
 * the four groups (remote identity or 0) × (protocol or 0) take the most
 * specific entry (a port range containing the port, else the group's
 * any-port entry), then combine those as lookupEntries does. Equivalent to
 * lookupEntries because EntryBuilder keeps ranges disjoint within a group
 * and folds the any-port entry into each range.
 */
export function lookupByGroups(dir: DirectionPolicy, remote: number, protocol: number, port: number): LookupResult {
  const picked: PolicyEntry[] = [];
  const identities = remote === 0 ? [0] : [remote, 0];
  const protocols = protocol === 0 ? [0] : [protocol, 0];
  for (const id of identities) {
    for (const proto of protocols) {
      let best: PolicyEntry | undefined;
      for (const e of dir.entries) {
        if (e.remoteIdentity !== id || e.protocol !== proto) continue;
        if (e.port !== 0 && port >= e.port && port <= e.endPort) {
          best = e;
          break;
        }
        if (e.port === 0 && !best) best = e;
      }
      if (best) picked.push(best);
    }
  }
  return lookupEntries({ defaultDeny: dir.defaultDeny, entries: picked, enforcedBy: dir.enforcedBy ?? [] }, remote, protocol, port);
}
