/**
 * The agent's `EndpointResolver`: who is behind an address (identity and its
 * labels, namespace and pod of an endpoint, its workload when known), which
 * Service a VIP belongs to, and which policies decided a connection — read
 * from the policy engine and the endpoint datapath on demand, never copied.
 *
 *   const resolver = new AgentResolver({ engine, epIdOf: (id) => endpoints.endpoint(id)?.epId });
 *   new FlowParser({ nodeName, resolver });
 */
import { formatLabel } from '../identity/labels.js';
import type { PolicyEngine } from '../policy/index.js';
import type { PolicyEntry } from '../policy/types.js';
import type { Policy } from './flow.js';
import type { EndpointResolver, PeerInfo, PolicyDecision } from './parser.js';

export interface AgentResolverOptions {
  engine: PolicyEngine;
  /** The endpoint's numeric datapath id, for local endpoints. */
  epIdOf?: (endpointId: string) => number | undefined;
  /** The endpoint's workload (its Pod's controlling owner), when the agent knows it. */
  workloadOf?: (endpointId: string) => { name: string; kind: string } | undefined;
}

const NO_DECISION: PolicyDecision = { allowedBy: [], deniedBy: [] };
/** Distinct (direction, remote identity, protocol, port, verdict) decisions kept per endpoint policy. */
const DECISIONS_PER_POLICY = 4096;

/** "namespace/name" (namespaced policies) or "name" (clusterwide) → Hubble's Policy. */
function policyOf(ref: string): Policy {
  const i = ref.indexOf('/');
  return i < 0 ? { name: ref, namespace: '', kind: 'CiliumClusterwideNetworkPolicy' } : { name: ref.slice(i + 1), namespace: ref.slice(0, i), kind: '' };
}

function matches(e: PolicyEntry, remote: number, protocol: number, port: number): boolean {
  return (e.remoteIdentity === 0 || e.remoteIdentity === remote) && (e.protocol === 0 || e.protocol === protocol) && (e.port === 0 || (port >= e.port && port <= e.endPort));
}

/** The deciding rows' `log.value`s on a decision (Hubble's policy_log). */
function withLog(d: PolicyDecision, rows: readonly PolicyEntry[]): PolicyDecision {
  const log = [...new Set(rows.flatMap((e) => e.log ?? []))].sort();
  if (log.length > 0) d.log = log;
  return d;
}

export class AgentResolver implements EndpointResolver {
  private readonly labelCache = new WeakMap<object, string[]>();
  /**
   * Decisions by the endpoint policy they were read from: the engine replaces an endpoint's policy
   * object whenever its content changes, so a cached decision is never stale. Bounded per policy.
   */
  private readonly decisions = new WeakMap<object, Map<string, PolicyDecision>>();
  private services = new Map<string, { name: string; namespace: string }>();
  private servicesAt = 0;

  constructor(private readonly opts: AgentResolverOptions) {}

  peer(ip: string, identity?: number): PeerInfo {
    const { engine } = this.opts;
    const endpointId = engine.endpointByIp(ip);
    const id = identity ?? engine.identityOfIp(ip);
    const ident = engine.allocator.get(id);
    let labels: string[] = [];
    if (ident) {
      const cached = this.labelCache.get(ident);
      if (cached) labels = cached;
      else {
        labels = ident.labels.labels.map(formatLabel);
        this.labelCache.set(ident, labels);
      }
    }
    const p: PeerInfo = { identity: id, labels };
    if (endpointId) {
      const slash = endpointId.indexOf('/');
      if (slash > 0) {
        p.namespace = endpointId.slice(0, slash);
        p.podName = endpointId.slice(slash + 1);
      }
      const ep = this.opts.epIdOf?.(endpointId);
      if (ep !== undefined) p.endpointId = ep;
      const w = this.opts.workloadOf?.(endpointId);
      if (w) p.workloads = [w];
    }
    return p;
  }

  service(ip: string, port: number, protocol: number): { name: string; namespace: string } | undefined {
    // Services change rarely next to flows: rebuild the VIP index at most once a second.
    if (Date.now() - this.servicesAt > 1000) {
      const m = new Map<string, { name: string; namespace: string }>();
      for (const s of this.opts.engine.serviceList()) {
        for (const vip of s.clusterIPs ?? []) {
          for (const p of s.ports ?? []) {
            const proto = p.protocol === 'UDP' ? 17 : p.protocol === 'SCTP' ? 132 : 6;
            m.set(`${vip}|${p.port}|${proto}`, { name: s.name, namespace: s.namespace });
          }
        }
      }
      this.services = m;
      this.servicesAt = Date.now();
    }
    return this.services.get(`${ip}|${port}|${protocol}`);
  }

  decision(localIp: string, direction: 'ingress' | 'egress', remote: number, protocol: number, port: number, verdict: 'allow' | 'deny'): PolicyDecision {
    const id = this.opts.engine.endpointByIp(localIp);
    const pol = id ? this.opts.engine.endpointPolicy(id) : undefined;
    if (!pol) return NO_DECISION;
    let cache = this.decisions.get(pol);
    if (!cache) {
      cache = new Map();
      this.decisions.set(pol, cache);
    }
    const key = `${direction}|${remote}|${protocol}|${port}|${verdict}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const d = this.decide(pol[direction].entries, remote, protocol, port, verdict);
    if (cache.size >= DECISIONS_PER_POLICY) cache.clear();
    cache.set(key, d);
    return d;
  }

  private decide(entries: readonly PolicyEntry[], remote: number, protocol: number, port: number, verdict: 'allow' | 'deny'): PolicyDecision {
    const rows = entries.filter((e) => matches(e, remote, protocol, port));
    if (verdict === 'deny') {
      const deny = rows.filter((e) => e.verdict === 'DENY');
      const refs = new Set(deny.flatMap((e) => e.derivedFrom));
      // No deny row: a proxy's L7 denial (the REDIRECT rows' rules decided) or default deny (no rule did).
      return withLog({ allowedBy: [], deniedBy: [...refs].sort().map(policyOf) }, deny.length > 0 ? deny : rows.filter((e) => e.verdict === 'REDIRECT'));
    }
    const allow = rows.filter((e) => e.verdict !== 'DENY');
    const refs = new Set(allow.flatMap((e) => e.derivedFrom));
    return withLog({ allowedBy: [...refs].sort().map(policyOf), deniedBy: [] }, allow);
  }
}
