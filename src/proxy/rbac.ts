/**
 * HTTP L7 rules → Envoy RBAC filter config (envoy.filters.http.rbac).
 *
 * One RBAC policy per policy entry (remote identity × port range). A request
 * is allowed when some policy matches: its principal (who is talking) and its
 * permission (destination port range AND any one of the entry's HTTP rules).
 * Everything else is denied (action ALLOW with no match = deny).
 *
 * Matching semantics: Cilium's method/path/host are extended regular
 * expressions matched against the whole value; Envoy's `safe_regex` is RE2
 * and also matches the whole value, so rules carry over unchanged. Where RE2
 * differs from POSIX ERE (no backreferences; leftmost-first rather than
 * leftmost-longest alternation, which cannot change a full-match result) is
 * documented in docs/l7-http.md. The path is matched without the query string
 * (RBAC `url_path`), after Envoy's path normalisation.
 */
import type { Direction, HttpRule, PolicyEntry } from '../policy/types.js';

type Json = Record<string, unknown>;

const regex = (re: string): Json => ({ safe_regex: { regex: re } });

function headerMatcher(name: string, value: string | undefined): Json {
  return value === undefined
    ? { header: { name, present_match: true } }
    : { header: { name, string_match: { exact: value } } };
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
  if (parts.length === 0) return { any: true };
  if (parts.length === 1) return parts[0] as Json;
  return { and_rules: { rules: parts } };
}

function cidrs(ips: readonly string[]): Json[] {
  return ips.map((ip) => {
    const [address, len] = ip.includes('/') ? (ip.split('/') as [string, string]) : [ip, ip.includes(':') ? '128' : '32'];
    return { address_prefix: address, prefix_len: Number(len) };
  });
}

function portRange(e: PolicyEntry): Json | null {
  if (e.port === 0) return null;
  return { destination_port_range: { start: e.port, end: e.endPort + 1 } };
}

export interface RbacInput {
  direction: Direction;
  entries: readonly PolicyEntry[];
  /** IPs (or CIDRs) of each remote identity, from the ipcache. */
  identityIps: ReadonlyMap<number, readonly string[]>;
}

/** The RBAC filter's typed_config for one endpoint and direction. */
export function buildRbac(input: RbacInput): Json {
  const policies: Record<string, Json> = {};
  for (const e of input.entries) {
    if (e.verdict !== 'REDIRECT' || e.l7?.kind !== 'http') continue;
    const rules = e.l7.rules.length === 0 ? [{}] : e.l7.rules;
    const http: Json = rules.length === 1 ? httpRulePermission(rules[0] as HttpRule) : { or_rules: { rules: rules.map(httpRulePermission) } };
    const permission: Json[] = [];
    const ports = portRange(e);
    if (ports) permission.push(ports);
    let principal: Json = { any: true };
    if (e.remoteIdentity !== 0) {
      const ips = input.identityIps.get(e.remoteIdentity) ?? [];
      if (ips.length === 0) continue; // no address carries this identity yet: nothing to allow
      if (input.direction === 'ingress') principal = { or_ids: { ids: cidrs(ips).map((c) => ({ direct_remote_ip: c })) } };
      else permission.push({ or_rules: { rules: cidrs(ips).map((c) => ({ destination_ip: c })) } });
    }
    permission.push(http);
    const name = `id${e.remoteIdentity}-p${e.port}-${e.endPort}-${e.derivedFrom.join('+')}`;
    policies[name] = {
      permissions: [permission.length === 1 ? permission[0] : { and_rules: { rules: permission } }],
      principals: [principal],
    };
  }
  return {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC',
    rules: { action: 'ALLOW', policies },
  };
}
