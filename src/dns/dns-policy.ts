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
import type { EndpointPolicy } from '../policy/types.js';

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

export function judgeDnsQuery(src: DnsPolicySource, f: DnsQueryFlow): DnsVerdict {
  let serverIdentity = src.identityOfIp(f.serverIp);
  const endpointId = src.endpointByIp(f.clientIp) ?? null;
  const policy = endpointId === null ? undefined : src.endpointPolicy(endpointId);
  if (endpointId === null || !policy) return { allowed: false, reason: 'unknown-client', endpointId, identity: 0, serverIdentity, policies: [] };
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
  if (r.verdict === 'DENY') return { ...base, allowed: false, reason: 'denied' };
  if (r.verdict === 'ALLOW') return { ...base, allowed: true, reason: 'l4' };
  if (r.l7?.kind !== 'dns') return { ...base, allowed: false, reason: 'no-rule' };
  const allowed = r.l7.rules.some((rule) => matchDnsSelector(rule, f.name));
  return { ...base, allowed, reason: allowed ? 'rule' : 'no-rule' };
}
