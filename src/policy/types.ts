/**
 * The policy engine's output contract: what the eBPF map writer
 * (src/datapath) and the Envoy translator (src/proxy) both read. The engine
 * (src/policy) produces one EndpointPolicy per local endpoint; nothing else
 * computes verdicts.
 *
 * Keys follow the datapath's lookup: (remote identity, protocol, port range)
 * per direction. Wildcards are explicit: identity 0 = any peer, protocol 0 =
 * any protocol, port 0 with endPort 0 = any port.
 *
 * Lookup semantics (reference implementation: lookupEntries in lookup.ts).
 * For a packet (remote identity R, protocol P, port N) the matching entries
 * are those with identity R or 0, protocol P or 0, and N inside [port,
 * endPort] or port 0. Any matching DENY wins. Otherwise, if some match is
 * REDIRECT, the flow goes to the proxy with the union of the matching
 * REDIRECT rows' L7 rules (plus allow-all if a matching ALLOW exists).
 * Otherwise any matching ALLOW allows. With no match, defaultDeny decides.
 *
 * Guarantee for map writers: within one (remote identity, protocol) group
 * the port ranges are disjoint, and each range already includes what the
 * group's any-port entry says. So taking the most specific entry in each of
 * the four groups (R or 0) × (P or 0) and combining those four as above
 * gives the same verdict (lookupByGroups in lookup.ts; tested).
 *
 * Guarantee for the proxy translator: a REDIRECT row is complete. For an
 * identity-specific row, its l7 is everything that applies to that identity
 * on those ports; a wildcard (identity 0) row applies to every identity that
 * has no row of its own overlapping it (tested in lookup.test.ts).
 */

/** Security identity (numbering as Cilium's; see src/identity). */
export type NumericIdentity = number;

export const ANY_IDENTITY: NumericIdentity = 0;

/** IANA protocol numbers as the datapath sees them; 0 = any. */
export const Proto = { ANY: 0, ICMP: 1, IGMP: 2, IPIP: 4, TCP: 6, UDP: 17, IPV6: 41, GRE: 47, ESP: 50, AH: 51, ICMPV6: 58, VRRP: 112, SCTP: 132 } as const;
export type ProtoNumber = (typeof Proto)[keyof typeof Proto];

export type Direction = 'ingress' | 'egress';

export type Verdict = 'ALLOW' | 'DENY' | 'REDIRECT';

/** L7 rules in the shape the proxy translator consumes (validated, normalised). */
export interface HttpRule {
  /** Extended regular expressions matched against the whole value; absent = any. */
  method?: string;
  path?: string;
  host?: string;
  /** "Name" (presence) or "Name: value" (exact value), normalised to objects. */
  headers?: Array<{ name: string; value?: string }>;
  headerMatches?: Array<{ name: string; value?: string; mismatch?: 'LOG' | 'ADD' | 'DELETE' | 'REPLACE' }>;
}

export interface KafkaRule {
  role?: 'produce' | 'consume';
  apiKey?: string;
  apiVersion?: string;
  clientID?: string;
  topic?: string;
}

export interface DnsRule {
  matchName?: string;
  matchPattern?: string;
}

/**
 * A TLS SNI rule (`toPorts[].serverNames`): the connection is allowed when its ClientHello names one
 * of these servers (Cilium's patterns: `*` within a label, a leading `**.` for any number of labels);
 * an empty rule (no serverNames: an L4 allow on the same key) allows any connection, TLS or not.
 */
export interface TlsRule {
  serverNames?: string[];
  /**
   * TLS interception (terminatingTLS/originatingTLS): the proxy terminates TLS with `terminating`,
   * applies `http` (any of them; empty = any request), and originates TLS to the destination,
   * verifying it with `originating`'s CA.
   */
  terminating?: TlsContextRef;
  originating?: TlsContextRef;
  http?: HttpRule[];
}

/** A TLS context's Secret ("namespace/name") and the keys in it. */
export interface TlsContextRef {
  secret: string;
  certificate: string;
  privateKey: string;
  trustedCA: string;
}

export type L7Rules =
  | { kind: 'http'; rules: HttpRule[] }
  | { kind: 'kafka'; rules: KafkaRule[] }
  | { kind: 'dns'; rules: DnsRule[] }
  | { kind: 'tls'; rules: TlsRule[] };

export type L7Kind = L7Rules['kind'];

/**
 * One row of an endpoint's policy in one direction.
 * A REDIRECT row always carries l7 (the union of every allowing rule's L7
 * rules for that key, per the remote identity); ALLOW/DENY rows never do.
 */
export interface PolicyEntry {
  remoteIdentity: NumericIdentity; // 0 = any
  protocol: ProtoNumber; // 0 = any
  port: number; // 0 = any (then endPort is 0)
  endPort: number; // inclusive; equals port for a single port
  verdict: Verdict;
  l7?: L7Rules;
  /** "namespace/name" (or "name" for clusterwide) of every policy that contributed. */
  derivedFrom: string[];
  /**
   * Set when policies ask for two L7 kinds on one key (Cilium refuses to merge L7 parsers): the
   * row is a DENY (fail closed) and this says which policies conflict, for status and logs.
   */
  conflict?: string;
  /**
   * `log.value` of every rule that decided this row (the deny rules of a DENY, the allow rules of an
   * ALLOW or REDIRECT), sorted; absent when none set one. A flow judged by this row carries these
   * values (see lookupEntries: LookupResult.log).
   */
  log?: string[];
}

export interface DirectionPolicy {
  /** True when some policy selects the endpoint in this direction (or enforcement is "always"). */
  defaultDeny: boolean;
  entries: PolicyEntry[];
  /** Policies whose selection put this direction into default deny (for traces and status). */
  enforcedBy?: string[];
}

export interface EndpointPolicy {
  endpointId: string; // "namespace/name"
  identity: NumericIdentity;
  ingress: DirectionPolicy;
  egress: DirectionPolicy;
  /** Monotonic per endpoint; bumps only when the content changed. */
  revision: number;
}

/** Prefix → identity for the datapath's ipcache. */
export interface IpcacheEntry {
  prefix: string; // CIDR, e.g. "10.0.1.10/32"
  identity: NumericIdentity;
}
