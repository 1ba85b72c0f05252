/**
 * Selectors after translation from the API: what a rule's subject or peer
 * selects among identities. Label selectors cover endpoint selectors,
 * namespace scoping, entities, nodes and CIDRs (CIDR identities carry `cidr:`
 * labels, see identity/cidr.ts); FQDN selectors select the identities of IPs
 * the DNS cache has for matching names.
 *
 * A selector's `key` is canonical: equal selectors share one selector-cache
 * entry, evaluated once.
 */
import type { Identity } from '../identity/allocator.js';
import { parseSelectorKey } from '../identity/labels.js';
import type { EndpointSelectorSpec } from './api/schema.js';

export interface Requirement {
  source: string; // "any" = every source
  key: string;
  op: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values: string[];
}

export interface LabelSelector {
  kind: 'labels';
  reqs: Requirement[];
  /** When set, the identity must also carry at least one of these labels (e.g. host or remote-node for nodes). */
  anyOf?: Array<{ source: string; key: string }>;
  key: string;
}

export interface FqdnSelector {
  kind: 'fqdn';
  matchName?: string;
  matchPattern?: string;
  key: string;
}

export type Selector = LabelSelector | FqdnSelector;

function canonReq(r: Requirement): string {
  return `${r.source}:${r.key} ${r.op} ${[...r.values].sort().join(',')}`;
}

export function labelSelector(reqs: Requirement[], anyOf?: Array<{ source: string; key: string }>): LabelSelector {
  const uniq = [...new Map(reqs.map((r) => [canonReq(r), r])).values()].sort((a, b) => canonReq(a).localeCompare(canonReq(b)));
  const any = anyOf ? [...anyOf].sort((a, b) => `${a.source}:${a.key}`.localeCompare(`${b.source}:${b.key}`)) : undefined;
  const key = `L{${uniq.map(canonReq).join('&')}}${any ? `|any(${any.map((a) => `${a.source}:${a.key}`).join(',')})` : ''}`;
  return any ? { kind: 'labels', reqs: uniq, anyOf: any, key } : { kind: 'labels', reqs: uniq, key };
}

export function fqdnSelector(s: { matchName?: string; matchPattern?: string }): FqdnSelector {
  const out: FqdnSelector = { kind: 'fqdn', key: `F{${s.matchName ?? ''}|${s.matchPattern ?? ''}}` };
  if (s.matchName !== undefined) out.matchName = s.matchName;
  if (s.matchPattern !== undefined) out.matchPattern = s.matchPattern;
  return out;
}

/** Requirements of a Kubernetes-style label selector; keys may carry a source prefix. */
export function requirementsOf(spec: EndpointSelectorSpec, keyPrefix = ''): Requirement[] {
  const reqs: Requirement[] = [];
  for (const [k, v] of Object.entries(spec.matchLabels ?? {})) {
    const { source, key } = parseSelectorKey(k);
    reqs.push({ source, key: keyPrefix + key, op: 'In', values: [v] });
  }
  for (const e of spec.matchExpressions ?? []) {
    const { source, key } = parseSelectorKey(e.key);
    reqs.push({ source, key: keyPrefix + key, op: e.operator, values: e.values ?? [] });
  }
  return reqs;
}

/** True when the selector selects every identity (the peer becomes identity 0, "any"). */
export function isWildcard(s: Selector): boolean {
  return s.kind === 'labels' && s.reqs.length === 0 && s.anyOf === undefined;
}

export function matchesLabels(s: LabelSelector, identity: Identity): boolean {
  const labels = identity.labels;
  for (const r of s.reqs) {
    const found = labels.get(r.source, r.key);
    switch (r.op) {
      case 'In':
        if (!found.some((l) => r.values.includes(l.value))) return false;
        break;
      case 'NotIn':
        if (found.some((l) => r.values.includes(l.value))) return false;
        break;
      case 'Exists':
        if (found.length === 0) return false;
        break;
      case 'DoesNotExist':
        if (found.length > 0) return false;
        break;
    }
  }
  if (s.anyOf && !s.anyOf.some((a) => labels.has(a.source, a.key))) return false;
  return true;
}
