/**
 * An endpoint's policy in one direction → Envoy RBAC filter config
 * (envoy.filters.http.rbac), following the reference lookup (src/policy/lookup.ts).
 *
 * Who is talking is decided by the filter chain (ingress: a chain per source
 * identity; see translate.ts) or, for egress, by the destination address.
 * Each "subject" is one remote identity with its own rows and the condition
 * that says a request concerns it (`null`: the filter chain already did).
 *
 * Policies (action ALLOW; nothing matching = 403):
 * - a subject's own rows: REDIRECT = its ports AND any one of its HTTP rules;
 *   ALLOW = its ports (an L4 allow lets every request through);
 * - a wildcard row (identity 0) applies to a subject only where that subject
 *   has no row of its own (the engine's rows are complete: types.ts);
 * - a direction without default deny allows the ports no row mentions.
 * DENY rows are enforced by the kernel before anything reaches the proxy
 * (deny wins in the datapath's lookup, and the proxy's upstream leg is judged
 * again at the destination), so they are not repeated here.
 *
 * Matching semantics: Cilium's method/path/host are extended regular
 * expressions matched against the whole value; Envoy's `safe_regex` is RE2
 * and also matches the whole value, so rules carry over unchanged. Where RE2
 * differs from POSIX ERE (no backreferences; leftmost-first rather than
 * leftmost-longest alternation, which cannot change a full-match result) is
 * documented in docs/l7-http.md. The path is matched without the query string
 * (RBAC `url_path`), after Envoy's path normalisation.
 */
import type { HttpRule, PolicyEntry } from '../policy/types.js';

type Json = Record<string, unknown>;

const regex = (re: string): Json => ({ safe_regex: { regex: re } });

function headerMatcher(name: string, value: string | undefined): Json {
  return value === undefined ? { header: { name, present_match: true } } : { header: { name, string_match: { exact: value } } };
}

/** AND of everything one HTTP rule requires; an empty rule allows any request. */
export function httpRulePermission(rule: HttpRule): Json {
  const parts: Json[] = [];
  if (rule.method !== undefined) parts.push({ header: { name: ':method', string_match: regex(rule.method) } });
  if (rule.path !== undefined) parts.push({ url_path: { path: regex(rule.path) } });
  if (rule.host !== undefined) parts.push({ header: { name: ':authority', string_match: regex(rule.host) } });
  for (const h of rule.headers ?? []) parts.push(headerMatcher(h.name, h.value));
  // headerMatches with mismatch actions other than a plain match need a Lua or
  // header-mutation step; a plain headerMatch (no mismatch action) is a requirement.
  for (const h of rule.headerMatches ?? []) if (h.mismatch === undefined) parts.push(headerMatcher(h.name, h.value));
  return and(parts);
}

function and(parts: Json[]): Json {
  if (parts.length === 0) return { any: true };
  if (parts.length === 1) return parts[0] as Json;
  return { and_rules: { rules: parts } };
}

function or(parts: Json[]): Json {
  if (parts.length === 1) return parts[0] as Json;
  return { or_rules: { rules: parts } };
}

export function cidrs(ips: readonly string[]): Array<{ address_prefix: string; prefix_len: number }> {
  return ips.map((ip) => {
    const slash = ip.indexOf('/');
    const address = slash < 0 ? ip : ip.slice(0, slash);
    const len = slash < 0 ? (ip.includes(':') ? 128 : 32) : Number(ip.slice(slash + 1));
    return { address_prefix: address, prefix_len: len };
  });
}

/** The rows the proxy can see: TCP (or any-protocol) rows. */
function tcpRows(entries: readonly PolicyEntry[], identity: number): PolicyEntry[] {
  return entries.filter((e) => e.remoteIdentity === identity && (e.protocol === 0 || e.protocol === 6) && e.verdict !== 'DENY');
}

function portsOf(rows: readonly PolicyEntry[]): Json | null {
  if (rows.some((r) => r.port === 0)) return { any: true };
  if (rows.length === 0) return null;
  return or(rows.map((r) => ({ destination_port_range: { start: r.port, end: r.endPort + 1 } })));
}

/** A REDIRECT row's HTTP rules as one permission (any of them); null for rows of another kind. */
function httpRowPermission(row: PolicyEntry): Json | null {
  if (row.l7?.kind !== 'http') return null;
  const rules = row.l7.rules.length === 0 ? [{}] : row.l7.rules;
  return or(rules.map(httpRulePermission));
}

function rowPermission(row: PolicyEntry, l7: (row: PolicyEntry) => Json | null): Json[] {
  const parts: Json[] = [];
  if (row.port !== 0) parts.push({ destination_port_range: { start: row.port, end: row.endPort + 1 } });
  const p = row.verdict === 'REDIRECT' ? l7(row) : null;
  if (p) parts.push(p);
  return parts;
}

const overlaps = (a: PolicyEntry, b: PolicyEntry): boolean => a.port === 0 || b.port === 0 || (a.port <= b.endPort && b.port <= a.endPort);

export interface RbacSubject {
  identity: number;
  /** Permission saying a request concerns this identity; null when the filter chain already selected it. */
  match: Json | null;
}

/** Egress subjects: every remote identity with rows and known addresses, told apart by the destination address. */
export function destinationSubjects(entries: readonly PolicyEntry[], ipsOf: (identity: number) => readonly string[]): RbacSubject[] {
  return [...new Set(entries.map((e) => e.remoteIdentity))]
    .filter((r) => r !== 0 && ipsOf(r).length > 0)
    .sort((a, b) => a - b)
    .map((r) => ({ identity: r, match: { or_rules: { rules: cidrs(ipsOf(r)).map((c) => ({ destination_ip: c })) } } }));
}

export interface RbacInput {
  entries: readonly PolicyEntry[];
  defaultDeny: boolean;
  subjects: readonly RbacSubject[];
  /** A REDIRECT row's L7 permission (default: its HTTP rules; the SNI rules for the network RBAC of tls.ts). */
  l7Permission?: (row: PolicyEntry) => Json | null;
}

/** The RBAC filter's typed_config for one endpoint, direction and set of remote identities. */
export function buildRbac(input: RbacInput): Json {
  return { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules: rbacRules(input) };
}

/** The same rules as buildRbac for the network RBAC filter (per connection, e.g. on the SNI). */
export function buildNetworkRbac(input: RbacInput, statPrefix: string): Json {
  return { '@type': 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC', stat_prefix: statPrefix, rules: rbacRules(input) };
}

function rbacRules(input: RbacInput): Json {
  const l7 = input.l7Permission ?? httpRowPermission;
  const policies: Record<string, Json> = {};
  const add = (name: string, parts: Json[]): void => {
    policies[`${Object.keys(policies).length}-${name}`] = { permissions: [and(parts)], principals: [{ any: true }] };
  };
  const owned = input.subjects.map((s) => ({ s, rows: tcpRows(input.entries, s.identity) }));
  for (const { s, rows } of owned) {
    for (const r of rows) add(`id${s.identity}-p${r.port}-${r.endPort}-${r.verdict}-${r.derivedFrom.join('+')}`, [...(s.match ? [s.match] : []), ...rowPermission(r, l7)]);
  }
  // Where a subject has rows of its own, the wildcard rows do not apply to it.
  const exceptOwned = (pred: (r: PolicyEntry) => boolean): Json[] => {
    const ex: Json[] = [];
    for (const { s, rows } of owned) {
      const ports = portsOf(rows.filter(pred));
      if (ports) ex.push(and([...(s.match ? [s.match] : []), ports]));
    }
    return ex.length === 0 ? [] : [{ not_rule: or(ex) }];
  };
  const wild = tcpRows(input.entries, 0);
  for (const w of wild) add(`any-p${w.port}-${w.endPort}-${w.verdict}-${w.derivedFrom.join('+')}`, [...rowPermission(w, l7), ...exceptOwned((r) => overlaps(r, w))]);
  if (!input.defaultDeny) {
    // Not enforced: ports without any row are open (DENY rows are the kernel's).
    const wildPorts = portsOf(input.entries.filter((e) => e.remoteIdentity === 0));
    add('not-enforced', [...(wildPorts ? [{ not_rule: wildPorts }] : []), ...exceptOwned(() => true)]);
  }
  return { action: 'ALLOW', policies };
}
