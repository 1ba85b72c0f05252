/**
 * The proxy's question to the policy: may this endpoint ask this name of
 * this resolver? Answered from the engine's EndpointPolicy with the same
 * reference lookup the datapath and `meshd policy trace` use (lookup.ts) and
 * the same name matching (l7-match.ts), so the three agree.
 *
 *   const v = judgeDnsQuery(engine, { clientIp, serverIp, serverPort: 53, protocol: 17, name: 'api.example.com' });
 *   if (!v.allowed) reply(REFUSED);
 *
 * The client is told apart by its source address (the datapath hands the
 * pod's own datagram to the proxy, source intact); the rules are the
 * client's egress rows for (the resolver's identity, protocol, port).
 */
import { lookupEntries } from '../policy/lookup.js';
import { matchDnsSelector } from '../policy/l7-match.js';
import type { DnsRule, EndpointPolicy } from '../policy/types.js';

/** What the proxy needs of the policy engine (PolicyEngine implements it). */
export interface DnsPolicySource {
  endpointByIp(ip: string): string | undefined;
  endpointPolicy(id: string): EndpointPolicy | undefined;
  identityOfIp(ip: string): number;
  /** The identities behind a Service's cluster IP (empty for any other address). */
  serviceBackendIdentities?(ip: string): number[];
}

const WORLD = 2;

export interface DnsQueryFlow {
  clientIp: string;
  serverIp: string;
  serverPort: number;
  protocol: 6 | 17;
  /** Normalised (lowercase, no trailing dot). */
  name: string;
}

export interface DnsVerdict {
  allowed: boolean;
  /**
   * rule: a DNS rule allows the name; no-rule: the port has DNS rules and none allows it;
   * l4: the port is allowed without DNS rules (not inspected); denied: the flow itself is denied;
   * unknown-client: the source is no local endpoint.
   */
  reason: 'rule' | 'no-rule' | 'l4' | 'denied' | 'unknown-client';
  endpointId: string | null;
  identity: number;
  serverIdentity: number;
  /** The policies behind the decision. */
  policies: string[];
}

/** What a flow's policy says before the name is known: a verdict, or the DNS rules the name must match. */
type FlowOutcome = { base: Omit<DnsVerdict, 'allowed' | 'reason'>; decided: 'denied' | 'l4' | 'no-rule' | null; rules: readonly DnsRule[] };

function flowOutcome(src: DnsPolicySource, policy: EndpointPolicy, endpointId: string, f: DnsQueryFlow): FlowOutcome {
  let serverIdentity = src.identityOfIp(f.serverIp);
  let r = lookupEntries(policy.egress, serverIdentity, f.protocol, f.serverPort);
  // A Service VIP as the original destination (the datapath's per-packet LB kept it for the proxy after judging
  // the backend it picked): judged by the Service's backends, the first whose row lets the query through.
  if (r.verdict === 'DENY' && serverIdentity === WORLD) {
    for (const id of src.serviceBackendIdentities?.(f.serverIp) ?? []) {
      const b = lookupEntries(policy.egress, id, f.protocol, f.serverPort);
      if (b.verdict === 'DENY') continue;
      serverIdentity = id;
      r = b;
      break;
    }
  }
  const base = { endpointId, identity: policy.identity, serverIdentity, policies: r.policies };
  if (r.verdict === 'DENY') return { base, decided: 'denied', rules: [] };
  if (r.verdict === 'ALLOW') return { base, decided: 'l4', rules: [] };
  if (r.l7?.kind !== 'dns') return { base, decided: 'no-rule', rules: [] };
  return { base, decided: null, rules: r.l7.rules };
}

function verdictOf(o: FlowOutcome, name: string): DnsVerdict {
  if (o.decided !== null) return { ...o.base, allowed: o.decided === 'l4', reason: o.decided };
  const allowed = o.rules.some((rule) => matchDnsSelector(rule, name));
  return { ...o.base, allowed, reason: allowed ? 'rule' : 'no-rule' };
}

export function judgeDnsQuery(src: DnsPolicySource, f: DnsQueryFlow): DnsVerdict {
  const endpointId = src.endpointByIp(f.clientIp) ?? null;
  const policy = endpointId === null ? undefined : src.endpointPolicy(endpointId);
  if (endpointId === null || !policy) return { allowed: false, reason: 'unknown-client', endpointId, identity: 0, serverIdentity: src.identityOfIp(f.serverIp), policies: [] };
  return verdictOf(flowOutcome(src, policy, endpointId, f), f.name);
}

const MAX_FLOWS = 4096;

/**
 * judgeDnsQuery for the proxy's hot path: what a flow's policy says (the resolver's identity, the row
 * for its protocol and port, the DNS rules) is kept per (endpoint, resolver, protocol, port) and only
 * the name is matched per query. An entry is used while the endpoint's EndpointPolicy object and the
 * engine's ipcache (the world of identities and addresses) are the very ones it was computed from;
 * any policy or identity change replaces either, and the next query recomputes. Finding the identity
 * of a resolver that is not an endpoint walks every CIDR and FQDN identity of the node (21 ms per
 * query with 2,000 learned addresses, measured), which the proxy now pays once per change.
 */
export class DnsJudge {
  private readonly flows = new Map<string, { policy: EndpointPolicy; world: unknown; outcome: FlowOutcome }>();

  constructor(private readonly src: DnsPolicySource & { ipcache(): unknown }) {}

  judge(f: DnsQueryFlow): DnsVerdict {
    const endpointId = this.src.endpointByIp(f.clientIp);
    const policy = endpointId === undefined ? undefined : this.src.endpointPolicy(endpointId);
    if (endpointId === undefined || !policy) return judgeDnsQuery(this.src, f);
    const world = this.src.ipcache();
    const key = `${endpointId}|${f.serverIp}|${f.protocol}|${f.serverPort}`;
    let e = this.flows.get(key);
    if (!e || e.policy !== policy || e.world !== world) {
      e = { policy, world, outcome: flowOutcome(this.src, policy, endpointId, f) };
      if (this.flows.size >= MAX_FLOWS) this.flows.clear();
      this.flows.set(key, e);
    }
    return verdictOf(e.outcome, f.name);
  }
}
