/**
 * Which Services' addresses this node is a candidate to announce, and on
 * which of its interfaces: the CiliumL2AnnouncementPolicies whose node
 * selector selects this node and whose service selector selects the Service
 * (type LoadBalancer with no class or `io.cilium/l2-announcer`, or any
 * Service with externalIPs when the policy announces those). Several
 * policies selecting one Service add up. Pure; the announcer decides who
 * announces through one Lease per Service.
 *
 *   const c = candidates({ policies, services, nodeLabels, interfaces: ['eth0', 'eth1'] });
 *   c.get('default/web');   // { ips: ['10.0.10.5'], interfaces: ['eth0'] }
 */
import type { CiliumL2AnnouncementPolicy } from '../k8s/cilium-l2-announcement-policy.js';
import { canonicalIp, ipToBigint } from '../lbipam/ip-range.js';
import { matchSelector } from '../lbipam/label-selector.js';
import { L2_ANNOUNCER_CLASS, serviceKey, type LbService } from '../lbipam/lb-service.js';

export interface Candidate {
  namespace: string;
  name: string;
  ips: string[];
  interfaces: string[];
}

/** Interfaces never used when a policy names none: pod-side veths of meshd-cni. */
const POD_VETH = /^lxc/;

export function candidates(o: { policies: readonly CiliumL2AnnouncementPolicy[]; services: readonly LbService[]; nodeLabels: Readonly<Record<string, string>>; interfaces: readonly string[] }): Map<string, Candidate> {
  const out = new Map<string, Candidate>();
  for (const { spec: p = {} } of o.policies) {
    if (!matchSelector(p.nodeSelector, o.nodeLabels)) continue;
    const res = (p.interfaces ?? []).map((r) => new RegExp(r));
    const ifs = o.interfaces.filter((i) => (res.length === 0 ? !POD_VETH.test(i) : res.some((r) => r.test(i))));
    if (ifs.length === 0) continue;
    for (const s of o.services) {
      const labels = { ...s.metadata.labels, 'io.kubernetes.service.namespace': s.metadata.namespace, 'io.kubernetes.service.name': s.metadata.name };
      if (!matchSelector(p.serviceSelector, labels)) continue;
      const ips: string[] = [];
      const lbClassOk = (s.spec.loadBalancerClass ?? undefined) === undefined || s.spec.loadBalancerClass === L2_ANNOUNCER_CLASS;
      if (p.loadBalancerIPs && s.spec.type === 'LoadBalancer' && lbClassOk) for (const i of s.status?.loadBalancer?.ingress ?? []) if (i.ip) ips.push(i.ip);
      if (p.externalIPs) ips.push(...(s.spec.externalIPs ?? []));
      const valid = ips.filter((ip) => ipToBigint(ip) !== undefined).map(canonicalIp);
      if (valid.length === 0) continue;
      const key = serviceKey(s);
      const c = out.get(key) ?? { namespace: s.metadata.namespace, name: s.metadata.name, ips: [], interfaces: [] };
      c.ips = [...new Set([...c.ips, ...valid])].sort();
      c.interfaces = [...new Set([...c.interfaces, ...ifs])].sort();
      out.set(key, c);
    }
  }
  return out;
}

/** The Lease a Service's announcement is decided by, as Cilium names it. */
export const leaseName = (c: { namespace: string; name: string }): string => `cilium-l2announce-${c.namespace}-${c.name}`;
