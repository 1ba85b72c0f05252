/**
 * Per-identity policy: from the rules selecting one identity to its entries
 * keyed by (remote identity, protocol, port range), per direction. Endpoints
 * sharing an identity share the result; only ingress named ports (resolved
 * against each endpoint's own container ports) are finished per endpoint.
 *
 * Merging per key, as Cilium does:
 * - any deny contribution makes the key DENY (deny always wins);
 * - otherwise L7 rules make it REDIRECT with the union of the L7 rules; if a
 *   rule without L7 also allows the key, an allow-all L7 rule joins the union
 *   (rules are additive: an L4-only allow admits every request);
 * - otherwise ALLOW.
 * An entry's `log` is the union of the `log.value`s of the rules that decide
 * it: the deny rules of a DENY entry, the allow rules of an ALLOW/REDIRECT.
 */
import { ReservedIdentity } from '../identity/reserved.js';
import type { PeerRule, PortSpec, Rule } from './rule.js';
import type { Selector } from './selector.js';
import { Proto } from './types.js';
import type { Direction, DnsRule, HttpRule, KafkaRule, L7Kind, L7Rules, PolicyEntry, ProtoNumber, TlsRule } from './types.js';

export type EnforcementMode = 'default' | 'always' | 'never';

export interface NamedPort {
  port: number;
  protocol: ProtoNumber;
}

export interface ResolveDeps {
  /** Identities a selector selects, or 'any' for the wildcard selector. */
  selected(sel: Selector): ReadonlySet<number> | 'any';
  /** Ports a peer identity's endpoints expose under a name (egress named ports). */
  namedPortsOf(identity: number, name: string): NamedPort[];
}

interface Contribution {
  remoteIdentity: number;
  protocol: ProtoNumber;
  port: number;
  endPort: number;
  deny: boolean;
  l7?: L7Rules;
  policy: string;
  log?: string;
}

interface NamedContribution {
  remoteIdentity: number;
  protocol: ProtoNumber;
  name: string;
  deny: boolean;
  l7?: L7Rules;
  policy: string;
  log?: string;
}

export interface DirectionTemplate {
  defaultDeny: boolean;
  /** Policies that selected the endpoint in this direction and enabled default deny. */
  enforcedBy: string[];
  entries: PolicyEntry[];
  /** Present only when ingress named ports must be resolved per endpoint. */
  raw?: Contribution[];
  named: NamedContribution[];
}

export interface IdentityPolicy {
  identity: number;
  ingress: DirectionTemplate;
  egress: DirectionTemplate;
  fingerprint: string;
}

interface Acc {
  remoteIdentity: number;
  protocol: ProtoNumber;
  port: number;
  endPort: number;
  deny: Set<string>;
  allow: Set<string>;
  /** Allocated on the first log value (most rules set none). */
  denyLog?: Set<string>;
  allowLog?: Set<string>;
  plainAllow: boolean;
  l7Kind?: L7Kind;
  /** Policies that asked for a second L7 kind on this key (Cilium refuses to merge L7 parsers). */
  l7Conflict: Set<string>;
  http: Map<string, HttpRule>;
  kafka: Map<string, KafkaRule>;
  dns: Map<string, DnsRule>;
  tls: Map<string, TlsRule>;
}

export class EntryBuilder {
  private readonly acc = new Map<string, Acc>();

  add(c: Contribution): void {
    const k = `${c.remoteIdentity}|${c.protocol}|${c.port}|${c.endPort}`;
    let a = this.acc.get(k);
    if (!a) {
      a = { remoteIdentity: c.remoteIdentity, protocol: c.protocol, port: c.port, endPort: c.endPort, deny: new Set(), allow: new Set(), plainAllow: false, l7Conflict: new Set(), http: new Map(), kafka: new Map(), dns: new Map(), tls: new Map() };
      this.acc.set(k, a);
    }
    if (c.deny) {
      a.deny.add(c.policy);
      if (c.log !== undefined) (a.denyLog ??= new Set()).add(c.log);
      return;
    }
    a.allow.add(c.policy);
    if (c.log !== undefined) (a.allowLog ??= new Set()).add(c.log);
    if (!c.l7) {
      a.plainAllow = true;
      return;
    }
    // One L7 parser per port, as in Cilium. A second kind on the same key is a conflict: the key is
    // denied (fail closed) and the entry says why, rather than one kind's rules being dropped silently.
    if (a.l7Kind !== undefined && a.l7Kind !== c.l7.kind) {
      a.l7Conflict.add(`${c.policy} (${c.l7.kind})`);
      return;
    }
    a.l7Kind = c.l7.kind;
    switch (c.l7.kind) {
      case 'http':
        for (const r of c.l7.rules) a.http.set(JSON.stringify(r), r);
        break;
      case 'kafka':
        for (const r of c.l7.rules) a.kafka.set(JSON.stringify(r), r);
        break;
      case 'dns':
        for (const r of c.l7.rules) a.dns.set(JSON.stringify(r), r);
        break;
      case 'tls':
        for (const r of c.l7.rules) a.tls.set(JSON.stringify(r), r);
        break;
    }
  }

  /**
   * Entries with disjoint port ranges per (remote identity, protocol): where ranges overlap they are split,
   * and every range also carries what the group's any-port entry says. A datapath can therefore take the
   * most specific port match in each of its (at most four) identity/protocol groups and combine those
   * (see lookupByGroups in lookup.ts) and decide exactly as the reference lookup does.
   */
  build(): PolicyEntry[] {
    const groups = new Map<string, Acc[]>();
    for (const a of this.acc.values()) {
      const k = `${a.remoteIdentity}|${a.protocol}`;
      const g = groups.get(k);
      if (g) g.push(a);
      else groups.set(k, [a]);
    }
    const accs: Acc[] = [];
    for (const list of groups.values()) {
      const any = list.find((a) => a.port === 0);
      const ranges = list.filter((a) => a.port !== 0);
      if (any) accs.push(any);
      if (ranges.length === 0) continue;
      const bounds = [...new Set(ranges.flatMap((r) => [r.port, r.endPort + 1]))].sort((a, b) => a - b);
      let prev: { acc: Acc; covering: Acc[] } | undefined;
      for (let i = 0; i + 1 < bounds.length; i++) {
        const lo = bounds[i] ?? 0;
        const hi = (bounds[i + 1] ?? 0) - 1;
        const covering = ranges.filter((r) => r.port <= lo && r.endPort >= lo);
        if (covering.length === 0) {
          prev = undefined;
          continue;
        }
        if (prev && prev.acc.endPort + 1 === lo && sameMembers(prev.covering, covering)) {
          prev.acc.endPort = hi;
          continue;
        }
        const acc = mergeAccs(any ? [...covering, any] : covering, lo, hi);
        prev = { acc, covering };
        accs.push(acc);
      }
    }
    return accs.map(finish).sort(compareEntries);
  }
}

function sameMembers(a: Acc[], b: Acc[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function mergeAccs(list: Acc[], port: number, endPort: number): Acc {
  const first = list[0];
  if (!first) throw new Error('internal: empty merge');
  const m: Acc = {
    remoteIdentity: first.remoteIdentity,
    protocol: first.protocol,
    port,
    endPort,
    deny: new Set(),
    allow: new Set(),
    plainAllow: false,
    l7Conflict: new Set(),
    http: new Map(),
    kafka: new Map(),
    dns: new Map(),
    tls: new Map(),
  };
  for (const a of list) {
    for (const d of a.deny) m.deny.add(d);
    for (const d of a.allow) m.allow.add(d);
    for (const d of a.denyLog ?? []) (m.denyLog ??= new Set()).add(d);
    for (const d of a.allowLog ?? []) (m.allowLog ??= new Set()).add(d);
    for (const d of a.l7Conflict) m.l7Conflict.add(d);
    m.plainAllow ||= a.plainAllow;
    if (a.l7Kind === undefined) continue;
    if (m.l7Kind !== undefined && m.l7Kind !== a.l7Kind) {
      for (const p of a.allow) m.l7Conflict.add(`${p} (${a.l7Kind})`);
      continue;
    }
    m.l7Kind = a.l7Kind;
    for (const [k, v] of a.http) m.http.set(k, v);
    for (const [k, v] of a.kafka) m.kafka.set(k, v);
    for (const [k, v] of a.dns) m.dns.set(k, v);
    for (const [k, v] of a.tls) m.tls.set(k, v);
  }
  return m;
}

/** Log values of the rules deciding an entry; absent when none set one (entries stay as they were without `log`). */
function withLog(e: PolicyEntry, logs: ReadonlySet<string> | undefined): PolicyEntry {
  if (logs && logs.size > 0) e.log = [...logs].sort();
  return e;
}

function finish(a: Acc): PolicyEntry {
  const base = { remoteIdentity: a.remoteIdentity, protocol: a.protocol, port: a.port, endPort: a.endPort };
  if (a.deny.size > 0) return withLog({ ...base, verdict: 'DENY', derivedFrom: [...a.deny].sort() }, a.denyLog);
  if (a.l7Conflict.size > 0) {
    return withLog(
      {
        ...base,
        verdict: 'DENY',
        derivedFrom: [...a.allow].sort(),
        conflict: `conflicting L7 rules on one port: ${a.l7Kind ?? '?'} and ${[...a.l7Conflict].sort().join(', ')}; the port is denied until one kind remains`,
      },
      a.allowLog,
    );
  }
  if (a.l7Kind !== undefined) return withLog({ ...base, verdict: 'REDIRECT', l7: makeL7(a), derivedFrom: [...a.allow].sort() }, a.allowLog);
  return withLog({ ...base, verdict: 'ALLOW', derivedFrom: [...a.allow].sort() }, a.allowLog);
}

/** The union of a key's L7 rules; an L4-only allow on the same key adds the kind's allow-all rule. */
function makeL7(a: Acc): L7Rules {
  const withAll = <R>(m: Map<string, R>, all: R): R[] => {
    const out = new Map(m);
    if (a.plainAllow) out.set(JSON.stringify(all), all);
    return [...out.values()];
  };
  switch (a.l7Kind) {
    case 'kafka':
      return { kind: 'kafka', rules: withAll<KafkaRule>(a.kafka, {}) };
    case 'dns':
      return { kind: 'dns', rules: withAll<DnsRule>(a.dns, { matchPattern: '*' }) };
    case 'tls':
      return { kind: 'tls', rules: withAll<TlsRule>(a.tls, {}) };
    default:
      return { kind: 'http', rules: withAll<HttpRule>(a.http, {}) };
  }
}

export function compareEntries(a: PolicyEntry, b: PolicyEntry): number {
  return a.remoteIdentity - b.remoteIdentity || a.protocol - b.protocol || a.port - b.port || a.endPort - b.endPort || a.verdict.localeCompare(b.verdict);
}

/** What one rule contributes with: its policy name, its log value, and the requirements (fromRequires/toRequires) in force. */
interface Source {
  policy: string;
  log: string | undefined;
  requires: readonly Selector[];
}

/** Identities of `ids` that every requirement selector also selects. */
function narrowed(ids: ReadonlySet<number>, requires: readonly Selector[], deps: ResolveDeps): Set<number> {
  const out = new Set<number>();
  for (const id of ids) {
    if (requires.every((r) => {
      const sel = deps.selected(r);
      return sel === 'any' || sel.has(id);
    })) out.add(id);
  }
  return out;
}

function contribute(
  builder: EntryBuilder,
  named: NamedContribution[],
  raw: Contribution[],
  dir: Direction,
  pr: PeerRule,
  deny: boolean,
  src: Source,
  deps: ResolveDeps,
): void {
  const { policy, log } = src;
  for (const sel of pr.selectors) {
    let ids = deps.selected(sel);
    if (ids !== 'any' && src.requires.length > 0 && pr.endpointKeys?.has(sel.key)) ids = narrowed(ids, src.requires, deps);
    const remotes: Iterable<number> = ids === 'any' ? [0] : ids;
    for (const remote of remotes) {
      if (pr.ports === null) {
        const c: Contribution = { remoteIdentity: remote, protocol: Proto.ANY, port: 0, endPort: 0, deny, policy };
        if (log !== undefined) c.log = log;
        builder.add(c);
        raw.push(c);
        continue;
      }
      for (const ps of pr.ports) addPort(builder, named, raw, dir, ps, remote, deny, src, deps);
    }
  }
}

function addPort(
  builder: EntryBuilder,
  named: NamedContribution[],
  raw: Contribution[],
  dir: Direction,
  ps: PortSpec,
  remote: number,
  deny: boolean,
  src: Source,
  deps: ResolveDeps,
): void {
  const { policy, log } = src;
  if (ps.name === undefined) {
    const c: Contribution = { remoteIdentity: remote, protocol: ps.protocol, port: ps.port, endPort: ps.endPort, deny, policy };
    if (ps.l7) c.l7 = ps.l7;
    if (log !== undefined) c.log = log;
    builder.add(c);
    raw.push(c);
    return;
  }
  if (dir === 'ingress') {
    const n: NamedContribution = { remoteIdentity: remote, protocol: ps.protocol, name: ps.name, deny, policy };
    if (ps.l7) n.l7 = ps.l7;
    if (log !== undefined) n.log = log;
    named.push(n);
    return;
  }
  // Egress: the name is the destination's port name. A wildcard peer resolves against every endpoint (identity 0 asks all).
  for (const np of deps.namedPortsOf(remote, ps.name)) {
    if (np.protocol !== ps.protocol) continue;
    const c: Contribution = { remoteIdentity: remote, protocol: ps.protocol, port: np.port, endPort: np.port, deny, policy };
    if (ps.l7) c.l7 = ps.l7;
    if (log !== undefined) c.log = log;
    builder.add(c);
    raw.push(c);
  }
}

/** Name under which the allow-localhost entry appears in derivedFrom. */
export const ALLOW_LOCALHOST = 'allow-localhost';

export interface ResolveOptions {
  /** The identity is the local node's host endpoint. */
  host: boolean;
  /**
   * Cilium's allow-localhost (auto = always under Kubernetes): the local host may always reach local
   * endpoints, so kubelet probes keep working under default deny. Deny rules still win.
   */
  allowLocalhost: boolean;
}

function resolveDirection(rules: readonly Rule[], dir: Direction, mode: EnforcementMode, deps: ResolveDeps, opts: ResolveOptions): DirectionTemplate {
  if (mode === 'never') return { defaultDeny: false, enforcedBy: [], entries: [], named: [] };
  const builder = new EntryBuilder();
  const named: NamedContribution[] = [];
  const raw: Contribution[] = [];
  const enforcedBy = new Set<string>();
  // fromRequires/toRequires of every rule selecting the identity narrow the endpoint peers of all of them.
  const requires: Selector[] = [];
  const requiresDeny: Selector[] = [];
  for (const r of rules) {
    if (!r.requires) continue;
    requires.push(...(dir === 'ingress' ? r.requires.ingress : r.requires.egress));
    requiresDeny.push(...(dir === 'ingress' ? r.requires.ingressDeny : r.requires.egressDeny));
  }
  for (const r of rules) {
    if (r.enforces[dir]) enforcedBy.add(r.policy);
    for (const pr of dir === 'ingress' ? r.ingress : r.egress) contribute(builder, named, raw, dir, pr, false, { policy: r.policy, log: r.log, requires }, deps);
    for (const pr of dir === 'ingress' ? r.ingressDeny : r.egressDeny) contribute(builder, named, raw, dir, pr, true, { policy: r.policy, log: r.log, requires: requiresDeny }, deps);
  }
  // "always" puts every pod into default deny; the host endpoint only when a host policy selects it
  // (host firewalling is opt-in, as in Cilium where the host is an endpoint only with the host firewall).
  const defaultDeny = (mode === 'always' && !opts.host) || enforcedBy.size > 0;
  if (defaultDeny && dir === 'ingress' && opts.allowLocalhost && !opts.host) {
    const c: Contribution = { remoteIdentity: ReservedIdentity.host, protocol: Proto.ANY, port: 0, endPort: 0, deny: false, policy: ALLOW_LOCALHOST };
    builder.add(c);
    raw.push(c);
  }
  for (const c of redirectCompletions(raw)) builder.add(c);
  const t: DirectionTemplate = {
    defaultDeny,
    enforcedBy: [...enforcedBy].sort(),
    entries: builder.build(),
    named,
  };
  if (named.length > 0) t.raw = raw;
  return t;
}

/** Port range of a contribution; port 0 = every port. */
function rangeOf(c: { port: number; endPort: number }): [number, number] {
  return c.port === 0 ? [0, 65535] : [c.port, c.endPort];
}

/**
 * Makes every REDIRECT row complete, so the proxy translator can read one row
 * for the L7 rules that apply: for each wildcard-identity redirect key
 * (0, P, range) it adds
 * - to that key, the wildcard any-protocol contributions (an L3 allow-all
 *   makes the port allow-all at L7 too);
 * - for every identity X with a contribution overlapping the key, a row
 *   (X, P, overlap) carrying every contribution that matches X there.
 * Only copies of contributions that already match are added, so every
 * verdict stays exactly what it was (lookup.test.ts checks both).
 */
function redirectCompletions(cs: readonly Contribution[]): Contribution[] {
  const keys = new Map<string, Contribution>();
  for (const c of cs) if (c.remoteIdentity === 0 && c.l7 && !c.deny) keys.set(`${c.protocol}|${c.port}|${c.endPort}`, c);
  if (keys.size === 0) return [];
  const byIdentity = new Map<number, Contribution[]>();
  const wildcard: Contribution[] = [];
  for (const c of cs) {
    if (c.remoteIdentity === 0) wildcard.push(c);
    else {
      const list = byIdentity.get(c.remoteIdentity);
      if (list) list.push(c);
      else byIdentity.set(c.remoteIdentity, [c]);
    }
  }
  const out: Contribution[] = [];
  for (const k of keys.values()) {
    const [klo, khi] = rangeOf(k);
    const matching = (c: Contribution): boolean => {
      if (c.protocol !== 0 && c.protocol !== k.protocol) return false;
      const [lo, hi] = rangeOf(c);
      return lo <= khi && hi >= klo;
    };
    const clip = (c: Contribution, identity: number): Contribution => {
      const [lo, hi] = rangeOf(c);
      const port = k.port === 0 && c.port === 0 ? 0 : Math.max(lo, klo);
      const endPort = port === 0 ? 0 : Math.min(hi, khi);
      return { ...c, remoteIdentity: identity, protocol: k.protocol, port, endPort };
    };
    for (const c of wildcard) if (c.protocol === 0 && matching(c)) out.push(clip(c, 0));
    const wild = wildcard.filter(matching);
    for (const [x, list] of byIdentity) {
      const mine = list.filter(matching);
      if (mine.length === 0) continue;
      for (const c of [...mine, ...wild]) out.push(clip(c, x));
    }
  }
  return out;
}

export function resolveIdentityPolicy(identity: number, rules: readonly Rule[], mode: EnforcementMode, deps: ResolveDeps, opts: ResolveOptions): IdentityPolicy {
  const ingress = resolveDirection(rules, 'ingress', mode, deps, opts);
  const egress = resolveDirection(rules, 'egress', mode, deps, opts);
  const fingerprint = JSON.stringify([ingress.defaultDeny, ingress.entries, ingress.named, egress.defaultDeny, egress.entries, egress.named]);
  return { identity, ingress, egress, fingerprint };
}

/** Finishes a direction for one endpoint: resolves ingress named ports against the endpoint's own ports. */
export function materialise(t: DirectionTemplate, ports: ReadonlyMap<string, NamedPort[]>): PolicyEntry[] {
  if (t.named.length === 0) return t.entries;
  const all: Contribution[] = [...(t.raw ?? [])];
  for (const n of t.named) {
    for (const np of ports.get(n.name) ?? []) {
      if (np.protocol !== n.protocol) continue;
      const c: Contribution = { remoteIdentity: n.remoteIdentity, protocol: n.protocol, port: np.port, endPort: np.port, deny: n.deny, policy: n.policy };
      if (n.l7) c.l7 = n.l7;
      if (n.log !== undefined) c.log = n.log;
      all.push(c);
    }
  }
  const b = new EntryBuilder();
  for (const c of all) b.add(c);
  for (const c of redirectCompletions(all)) b.add(c);
  return b.build();
}
