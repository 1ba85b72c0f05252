/**
 * Translation of validated API documents into the engine's rules: selectors
 * with Cilium's implicit scoping applied, ports expanded, L7 rules
 * normalised. One CiliumNetworkPolicy `specs` entry (or one NetworkPolicy)
 * becomes one Rule.
 *
 * Cilium semantics encoded here:
 * - A namespaced policy's endpointSelector only selects pods of its
 *   namespace; its fromEndpoints/toEndpoints selectors too, unless they name
 *   the namespace (`k8s:io.kubernetes.pod.namespace`), namespace labels
 *   (`k8s:io.cilium.k8s.namespace.labels.*`) or a reserved label. A
 *   clusterwide policy's peer selectors select pods of any namespace (so `{}`
 *   is every pod of the cluster, not every identity).
 * - endpointSelector never selects the host endpoint; nodeSelector selects
 *   only it (host policies).
 * - A rule with ports but no peers allows from/to any peer; a rule with
 *   neither (`ingress: [{}]`) allows nothing but still enables default deny.
 * - protocol ANY (or absent) on a port means TCP, UDP and SCTP, not ICMP.
 * - A rule puts its subject into default deny in a direction when it has an
 *   allow or deny section for it, unless enableDefaultDeny says otherwise.
 * - fromRequires/toRequires (deprecated in Cilium, still enforced here): the
 *   requirement selectors of every rule selecting an endpoint are ANDed into
 *   every fromEndpoints/toEndpoints selector of every rule selecting it (allow
 *   requirements into allow rules, deny requirements into deny rules); other
 *   peers (entities, CIDRs, nodes, services, FQDNs) are not narrowed.
 * - A CIDR set entry naming CiliumCIDRGroups (cidrGroupRef, cidrGroupSelector)
 *   stands for each CIDR of each matching group, with the entry's `except`;
 *   a group that does not exist (yet) selects nothing.
 */
import { cidrLabel, formatPrefix, parsePrefix, prefixContains } from '../identity/cidr.js';
import type { Prefix } from '../identity/cidr.js';
import { CLUSTER_LABEL, NAMESPACE_LABELS_PREFIX, POD_NAMESPACE_LABEL } from '../identity/labels.js';
import { CLUSTER_RESERVED } from '../identity/reserved.js';
import { EXTENDED_PROTOCOLS } from './api/schema.js';
import type { CidrRuleSpec, Entity, TlsContextSpec, IcmpRuleSpec, L7RulesSpec, PolicyDocument, PortProtocolSpec, RuleSpec, EndpointSelectorSpec, K8sPeerSpec, K8sPortSpec } from './api/schema.js';
import { classifyPort, icmpType, isExtendedProtocol } from './api/validate.js';
import { policyKey, policyName } from './api/loader.js';
import { parseHeaderRule } from './l7-match.js';
import { fqdnSelector, isWildcard, labelSelector, requirementsOf } from './selector.js';
import type { Requirement, Selector } from './selector.js';
import { Proto } from './types.js';
import type { HttpRule, L7Rules, ProtoNumber, TlsContextRef, TlsRule } from './types.js';

export interface PortSpec {
  protocol: ProtoNumber;
  /** 0 = any port (then endPort is 0) or, when `name` is set, unresolved. */
  port: number;
  endPort: number;
  /** Named port, resolved per endpoint (ingress) or per peer identity (egress). */
  name?: string;
  l7?: L7Rules;
}

export interface PeerRule {
  selectors: Selector[];
  /** Keys of the selectors that came from fromEndpoints/toEndpoints: the ones fromRequires/toRequires narrow. */
  endpointKeys?: ReadonlySet<string>;
  /** null = every protocol and port (an L3-only rule). */
  ports: PortSpec[] | null;
}

/** Requirement selectors (fromRequires/toRequires) a rule imposes on every rule selecting the same endpoint. */
export interface RuleRequires {
  ingress: Selector[];
  ingressDeny: Selector[];
  egress: Selector[];
  egressDeny: Selector[];
}

export interface Rule {
  /** Unique: policy key plus spec index. */
  id: string;
  /** Key of the policy object it came from (kind/namespace/name). */
  policyKey: string;
  /** The name reported in derivedFrom: "namespace/name" or "name" (clusterwide). */
  policy: string;
  subject: Selector;
  ingress: PeerRule[];
  ingressDeny: PeerRule[];
  egress: PeerRule[];
  egressDeny: PeerRule[];
  enforces: { ingress: boolean; egress: boolean };
  /** Prefixes named by the rule; each needs a CIDR identity. */
  prefixes: Prefix[];
  /** Present only when the rule has fromRequires/toRequires. */
  requires?: RuleRequires;
  /** The rule's `log.value`: attached to the entries it decides (PolicyEntry.log). */
  log?: string;
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  selector?: Record<string, string>;
  /** Backend IPs of a service without selector. */
  endpointIps?: string[];
}

/** A CiliumCIDRGroup as the translator sees it. */
export interface CidrGroupInfo {
  name: string;
  labels: Record<string, string>;
  cidrs: string[];
}

export interface TranslateContext {
  services(): Iterable<ServiceInfo>;
  /** CiliumCIDRGroups by name (absent in contexts without groups: references select nothing). */
  cidrGroups?(): ReadonlyMap<string, CidrGroupInfo>;
}

const NS_KEY = POD_NAMESPACE_LABEL;

function nsReq(ns: string): Requirement {
  return { source: 'k8s', key: NS_KEY, op: 'In', values: [ns] };
}

const notHost: Requirement = { source: 'reserved', key: 'host', op: 'DoesNotExist', values: [] };

function entitySelector(e: Entity): Selector {
  switch (e) {
    case 'all':
      return labelSelector([]);
    case 'cluster':
      return labelSelector([], [...CLUSTER_RESERVED.map((r) => ({ source: 'reserved', key: r })), { source: 'k8s', key: CLUSTER_LABEL }]);
    default:
      return labelSelector([{ source: 'reserved', key: e, op: 'Exists', values: [] }]);
  }
}

function cidrSelector(p: Prefix, except: Prefix[]): Selector {
  const l = cidrLabel(p);
  return labelSelector([
    { source: 'cidr', key: l.key, op: 'Exists', values: [] },
    ...except.map((e): Requirement => ({ source: 'cidr', key: cidrLabel(e).key, op: 'DoesNotExist', values: [] })),
  ]);
}

/**
 * Normalised L7 rules; an empty list (`http: []`) means no L7 restriction, as in Cilium. serverNames
 * without L7 rules is a TLS rule (SNI checked by the proxy without decrypting); validation refused
 * serverNames together with L7 rules.
 */
function l7Of(rules: L7RulesSpec | undefined, serverNames?: readonly string[], tls?: { terminating: TlsContextRef; originating: TlsContextRef }): L7Rules | undefined {
  if (tls) {
    const http = l7Of(rules);
    const r: TlsRule = { ...tls, http: http?.kind === 'http' ? http.rules : [] };
    if (serverNames && serverNames.length > 0) r.serverNames = [...new Set(serverNames)].sort();
    return { kind: 'tls', rules: [r] };
  }
  if (serverNames && serverNames.length > 0) return { kind: 'tls', rules: [{ serverNames: [...new Set(serverNames)].sort() }] };
  if (!rules) return undefined;
  if (rules.http && rules.http.length > 0) {
    return {
      kind: 'http',
      rules: rules.http.map((h) => {
        const r: HttpRule = {};
        if (h.method !== undefined) r.method = h.method;
        if (h.path !== undefined) r.path = h.path;
        if (h.host !== undefined) r.host = h.host;
        if (h.headers) r.headers = h.headers.map(parseHeaderRule);
        if (h.headerMatches) r.headerMatches = h.headerMatches.map((m) => ({ ...m }));
        return r;
      }),
    };
  }
  if (rules.kafka && rules.kafka.length > 0) return { kind: 'kafka', rules: rules.kafka.map((k) => ({ ...k })) };
  if (rules.dns && rules.dns.length > 0) return { kind: 'dns', rules: rules.dns.map((d) => ({ ...d })) };
  return undefined;
}

const PROTOS: Record<string, ProtoNumber[]> = {
  TCP: [Proto.TCP],
  UDP: [Proto.UDP],
  SCTP: [Proto.SCTP],
  ICMP: [Proto.ICMP],
  ICMPv6: [Proto.ICMPV6],
  ICMPV6: [Proto.ICMPV6],
  ANY: [Proto.TCP, Proto.UDP, Proto.SCTP],
};

function portSpecs(pp: PortProtocolSpec | K8sPortSpec, defaultProto: string, l7: L7Rules | undefined): PortSpec[] {
  // IP protocols without ports (VRRP, IGMP, GRE, …): the whole protocol; validation refused ports and L7 rules.
  if (isExtendedProtocol(pp.protocol)) return [{ protocol: EXTENDED_PROTOCOLS[pp.protocol], port: 0, endPort: 0 }];
  let protos = PROTOS[pp.protocol ?? defaultProto] ?? [];
  // L7 rules need a proxy that speaks the protocol: on an ANY port, HTTP/Kafka apply to TCP only and
  // DNS to UDP and TCP; the port rule then allows nothing else (it only allows what its L7 rules admit).
  if (l7) protos = protos.filter((p) => p === Proto.TCP || (l7.kind === 'dns' && p === Proto.UDP));
  const c = classifyPort(pp.port);
  return protos.map((protocol) => {
    const s: PortSpec = { protocol, port: 0, endPort: 0 };
    if (c.kind === 'number') {
      s.port = c.port;
      s.endPort = pp.endPort ?? c.port;
    } else if (c.kind === 'named') s.name = c.name;
    if (l7) s.l7 = l7;
    return s;
  });
}

function icmpSpecs(icmps: IcmpRuleSpec[]): PortSpec[] {
  const out: PortSpec[] = [];
  for (const r of icmps) {
    for (const f of r.fields) {
      const family = f.family ?? 'IPv4';
      const t = icmpType(f.type, family);
      if (t === undefined) continue;
      out.push({ protocol: family === 'IPv4' ? Proto.ICMP : Proto.ICMPV6, port: t, endPort: t });
    }
  }
  return out;
}

interface CommonPeer {
  endpoints?: EndpointSelectorSpec[];
  nodes?: EndpointSelectorSpec[];
  entities?: Entity[];
  cidr?: string[];
  cidrSet?: CidrRuleSpec[];
  services?: Array<{ k8sService?: { serviceName: string; namespace?: string }; k8sServiceSelector?: { selector: EndpointSelectorSpec; namespace?: string } }>;
  fqdns?: Array<{ matchName?: string; matchPattern?: string }>;
  toPorts?: Array<{ ports?: PortProtocolSpec[]; rules?: L7RulesSpec; serverNames?: string[]; terminatingTLS?: TlsContextSpec; originatingTLS?: TlsContextSpec }>;
  icmps?: IcmpRuleSpec[];
}

class Translator {
  readonly prefixes: Prefix[] = [];
  constructor(
    private readonly namespace: string | undefined,
    private readonly ctx: TranslateContext,
  ) {}

  endpointPeer(spec: EndpointSelectorSpec): Selector {
    const reqs = requirementsOf(spec);
    // A selector naming the pod namespace or namespace labels chooses its namespaces itself.
    const namesNs = reqs.some((r) => r.key === NS_KEY || r.key.startsWith(NAMESPACE_LABELS_PREFIX));
    const reserved = reqs.some((r) => r.source === 'reserved');
    if (!namesNs && !reserved) {
      // Namespaced policy: its own namespace. Clusterwide: any namespace, but only pods (never a bare `{}` = everything).
      reqs.push(this.namespace !== undefined ? nsReq(this.namespace) : { source: 'k8s', key: NS_KEY, op: 'Exists', values: [] });
    }
    return labelSelector(reqs);
  }

  /** A port rule's TLS interception contexts (validation allows only both together). */
  interception(pr: { terminatingTLS?: TlsContextSpec; originatingTLS?: TlsContextSpec }): { terminating: TlsContextRef; originating: TlsContextRef } | undefined {
    if (!pr.terminatingTLS || !pr.originatingTLS) return undefined;
    const ref = (c: TlsContextSpec): TlsContextRef => ({
      secret: `${c.secret.namespace ?? this.namespace ?? 'default'}/${c.secret.name}`,
      certificate: c.certificate ?? 'tls.crt',
      privateKey: c.privateKey ?? 'tls.key',
      trustedCA: c.trustedCA ?? 'ca.crt',
    });
    return { terminating: ref(pr.terminatingTLS), originating: ref(pr.originatingTLS) };
  }

  prefix(text: string): Prefix | undefined {
    const p = parsePrefix(text);
    if (p && p.bits > 0) this.prefixes.push(p);
    return p;
  }

  serviceSelectors(s: NonNullable<CommonPeer['services']>[number]): Selector[] {
    const out: Selector[] = [];
    const all = [...this.ctx.services()];
    let matched: ServiceInfo[] = [];
    if (s.k8sService) {
      const ns = s.k8sService.namespace ?? this.namespace ?? 'default';
      matched = all.filter((svc) => svc.namespace === ns && svc.name === s.k8sService?.serviceName);
    } else if (s.k8sServiceSelector) {
      const sel = labelSelector(requirementsOf(s.k8sServiceSelector.selector));
      const ns = s.k8sServiceSelector.namespace ?? this.namespace;
      matched = all.filter((svc) => {
        if (ns !== undefined && svc.namespace !== ns) return false;
        const labels = svc.labels ?? {};
        return sel.kind === 'labels' && sel.reqs.every((r) => labelRequirementHolds(r, labels));
      });
    }
    for (const svc of matched) {
      if (svc.selector && Object.keys(svc.selector).length > 0) {
        const reqs: Requirement[] = Object.entries(svc.selector).map(([key, v]) => ({ source: 'k8s', key, op: 'In', values: [v] }));
        reqs.push(nsReq(svc.namespace));
        out.push(labelSelector(reqs));
      } else {
        for (const ip of svc.endpointIps ?? []) {
          const p = this.prefix(ip);
          if (p) out.push(cidrSelector(p, []));
        }
      }
    }
    return out;
  }

  peerRule(r: CommonPeer, allowL7: boolean): PeerRule {
    const selectors: Selector[] = [];
    let hasPeers = false;
    let endpointKeys: Set<string> | undefined;
    if (r.endpoints && r.endpoints.length > 0) {
      hasPeers = true;
      endpointKeys = new Set();
      for (const s of r.endpoints) {
        const sel = this.endpointPeer(s);
        selectors.push(sel);
        endpointKeys.add(sel.key);
      }
    }
    if (r.nodes && r.nodes.length > 0) {
      hasPeers = true;
      for (const s of r.nodes) {
        selectors.push(labelSelector(requirementsOf(s), [{ source: 'reserved', key: 'host' }, { source: 'reserved', key: 'remote-node' }]));
      }
    }
    if (r.entities && r.entities.length > 0) {
      hasPeers = true;
      for (const e of r.entities) selectors.push(entitySelector(e));
    }
    if (r.cidr && r.cidr.length > 0) {
      hasPeers = true;
      for (const c of r.cidr) {
        const p = this.prefix(c);
        if (p) selectors.push(cidrSelector(p, []));
      }
    }
    if (r.cidrSet && r.cidrSet.length > 0) {
      hasPeers = true;
      for (const c of r.cidrSet) {
        const cidrs = c.cidr !== undefined ? [c.cidr] : this.groupCidrs(c);
        const prefixes = cidrs.map((x) => this.prefix(x)).filter((x): x is Prefix => x !== undefined);
        if (prefixes.length === 0) continue;
        const except = (c.except ?? []).map((e) => parsePrefix(e)).filter((x): x is Prefix => x !== undefined);
        for (const p of prefixes) {
          // Only the exceptions inside this CIDR concern it (a group's CIDRs share one `except` list).
          const inside = except.filter((e) => e.family === p.family && e.bits >= p.bits && prefixContains(p, e.addr));
          for (const e of inside) this.prefix(formatPrefix(e));
          selectors.push(cidrSelector(p, inside));
        }
      }
    }
    if (r.services && r.services.length > 0) {
      hasPeers = true;
      for (const s of r.services) selectors.push(...this.serviceSelectors(s));
    }
    if (r.fqdns && r.fqdns.length > 0) {
      hasPeers = true;
      for (const f of r.fqdns) selectors.push(fqdnSelector(f));
    }
    let ports: PortSpec[] | null = null;
    if (r.toPorts || r.icmps) {
      ports = [];
      for (const pr of r.toPorts ?? []) {
        const l7 = allowL7 ? l7Of(pr.rules, pr.serverNames, this.interception(pr)) : undefined;
        const list = pr.ports && pr.ports.length > 0 ? pr.ports : [{}];
        for (const pp of list) ports.push(...portSpecs(pp, 'ANY', l7));
      }
      ports.push(...icmpSpecs(r.icmps ?? []));
    }
    // Ports without peers: from/to anyone. Neither: selects nothing. An empty (present) list of
    // endpoints, nodes, entities, CIDRs or CIDR sets selects no peer at all, whatever else the rule
    // names, as in Cilium 1.20 (its rule parser returns no selectors for such a rule); the rule
    // still puts its direction into default deny.
    const emptyPeerList = [r.endpoints, r.nodes, r.entities, r.cidr, r.cidrSet].some((l) => l !== undefined && l.length === 0);
    if (emptyPeerList) return { selectors: [], ports };
    if (!hasPeers && ports !== null) selectors.push(labelSelector([]));
    const out: PeerRule = { selectors: dedupe(selectors), ports };
    if (endpointKeys) out.endpointKeys = endpointKeys;
    return out;
  }

  /** The CIDRs of the CiliumCIDRGroups a CIDR set entry names (by name or by labels), sorted. */
  groupCidrs(c: CidrRuleSpec): string[] {
    const groups = this.ctx.cidrGroups?.() ?? new Map<string, CidrGroupInfo>();
    const out = new Set<string>();
    if (c.cidrGroupRef !== undefined) for (const x of groups.get(c.cidrGroupRef)?.cidrs ?? []) out.add(x);
    if (c.cidrGroupSelector) {
      const reqs = requirementsOf(c.cidrGroupSelector);
      for (const g of groups.values()) if (reqs.every((r) => labelRequirementHolds(r, g.labels))) for (const x of g.cidrs) out.add(x);
    }
    return [...out].sort();
  }

  requirements(list: EndpointSelectorSpec[] | undefined): Selector[] {
    return (list ?? []).map((s) => this.endpointPeer(s));
  }
}

/** A requirement against a plain label map (Services, CIDR groups: objects without identities). */
function labelRequirementHolds(r: Requirement, labels: Record<string, string>): boolean {
  const v = labels[r.key];
  switch (r.op) {
    case 'In':
      return v !== undefined && r.values.includes(v);
    case 'NotIn':
      return v === undefined || !r.values.includes(v);
    case 'Exists':
      return v !== undefined;
    case 'DoesNotExist':
      return v === undefined;
  }
  return false;
}

/** Deny port rules carry no L7 part (validation rejected any); keep only the ports. */
function denyPorts(list: Array<{ ports?: PortProtocolSpec[] }> | undefined): Array<{ ports?: PortProtocolSpec[] }> | undefined {
  return list?.map((p) => (p.ports ? { ports: p.ports } : {}));
}

function dedupe(sels: Selector[]): Selector[] {
  return [...new Map(sels.map((s) => [s.key, s])).values()];
}

function translateCilium(spec: RuleSpec, namespace: string | undefined, ctx: TranslateContext, base: Omit<Rule, 'subject' | 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny' | 'enforces' | 'prefixes'>): Rule {
  const t = new Translator(namespace, ctx);
  let subject: Selector;
  if (spec.nodeSelector) {
    subject = labelSelector(requirementsOf(spec.nodeSelector), [{ source: 'reserved', key: 'host' }]);
  } else {
    const reqs = requirementsOf(spec.endpointSelector ?? {});
    reqs.push(notHost);
    if (namespace !== undefined) reqs.push(nsReq(namespace));
    subject = labelSelector(reqs);
  }
  const ingress = (spec.ingress ?? []).map((r) =>
    t.peerRule({ endpoints: r.fromEndpoints, nodes: r.fromNodes, entities: r.fromEntities, cidr: r.fromCIDR, cidrSet: r.fromCIDRSet, toPorts: r.toPorts, icmps: r.icmps }, true),
  );
  const ingressDeny = (spec.ingressDeny ?? []).map((r) =>
    t.peerRule({ endpoints: r.fromEndpoints, nodes: r.fromNodes, entities: r.fromEntities, cidr: r.fromCIDR, cidrSet: r.fromCIDRSet, toPorts: denyPorts(r.toPorts), icmps: r.icmps }, false),
  );
  const egress = (spec.egress ?? []).map((r) =>
    t.peerRule(
      { endpoints: r.toEndpoints, nodes: r.toNodes, entities: r.toEntities, cidr: r.toCIDR, cidrSet: r.toCIDRSet, services: r.toServices, fqdns: r.toFQDNs, toPorts: r.toPorts, icmps: r.icmps },
      true,
    ),
  );
  const egressDeny = (spec.egressDeny ?? []).map((r) =>
    t.peerRule({ endpoints: r.toEndpoints, nodes: r.toNodes, entities: r.toEntities, cidr: r.toCIDR, cidrSet: r.toCIDRSet, services: r.toServices, toPorts: denyPorts(r.toPorts), icmps: r.icmps }, false),
  );
  const hasIngress = (spec.ingress?.length ?? 0) + (spec.ingressDeny?.length ?? 0) > 0;
  const hasEgress = (spec.egress?.length ?? 0) + (spec.egressDeny?.length ?? 0) > 0;
  const rule: Rule = {
    ...base,
    subject,
    ingress,
    ingressDeny,
    egress,
    egressDeny,
    // enableDefaultDeny counts only for a direction the rule has (Cilium: a rule without an ingress section is no ingress rule).
    enforces: { ingress: hasIngress && (spec.enableDefaultDeny?.ingress ?? true), egress: hasEgress && (spec.enableDefaultDeny?.egress ?? true) },
    prefixes: t.prefixes,
  };
  const requires: RuleRequires = {
    ingress: (spec.ingress ?? []).flatMap((r) => t.requirements(r.fromRequires)),
    ingressDeny: (spec.ingressDeny ?? []).flatMap((r) => t.requirements(r.fromRequires)),
    egress: (spec.egress ?? []).flatMap((r) => t.requirements(r.toRequires)),
    egressDeny: (spec.egressDeny ?? []).flatMap((r) => t.requirements(r.toRequires)),
  };
  if (requires.ingress.length + requires.ingressDeny.length + requires.egress.length + requires.egressDeny.length > 0) rule.requires = requires;
  if (spec.log?.value !== undefined && spec.log.value !== '') rule.log = spec.log.value;
  return rule;
}

function k8sPeer(t: Translator, peer: K8sPeerSpec, namespace: string): Selector | undefined {
  if (peer.ipBlock) {
    const p = t.prefix(peer.ipBlock.cidr);
    const except = (peer.ipBlock.except ?? []).map((e) => t.prefix(e)).filter((x): x is Prefix => x !== undefined);
    return p ? cidrSelector(p, except) : undefined;
  }
  const reqs: Requirement[] = [];
  if (peer.podSelector) reqs.push(...requirementsOf(peer.podSelector));
  if (peer.namespaceSelector) {
    const nsReqs = requirementsOf(peer.namespaceSelector, 'io.cilium.k8s.namespace.labels.');
    reqs.push(...nsReqs.map((r) => ({ ...r, source: 'k8s' })));
    reqs.push({ source: 'k8s', key: NS_KEY, op: 'Exists', values: [] });
  } else {
    reqs.push(nsReq(namespace));
  }
  return labelSelector(reqs);
}

function translateNetworkPolicy(doc: Extract<PolicyDocument, { kind: 'NetworkPolicy' }>['doc'], ctx: TranslateContext, base: Omit<Rule, 'subject' | 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny' | 'enforces' | 'prefixes'>): Rule {
  const namespace = doc.metadata.namespace ?? 'default';
  const t = new Translator(namespace, ctx);
  const spec = doc.spec;
  const subject = labelSelector([...requirementsOf(spec.podSelector), notHost, nsReq(namespace)]);
  const side = (peers: K8sPeerSpec[] | undefined, ports: K8sPortSpec[] | undefined): PeerRule => {
    const selectors =
      peers && peers.length > 0 ? peers.map((p) => k8sPeer(t, p, namespace)).filter((s): s is Selector => s !== undefined) : [labelSelector([])];
    const ps = ports && ports.length > 0 ? ports.flatMap((p) => portSpecs(p, 'TCP', undefined)) : null;
    return { selectors: dedupe(selectors), ports: ps };
  };
  const types = spec.policyTypes ?? (spec.egress !== undefined ? ['Ingress', 'Egress'] : ['Ingress']);
  const ingressOn = types.includes('Ingress');
  const egressOn = types.includes('Egress');
  return {
    ...base,
    subject,
    ingress: ingressOn ? (spec.ingress ?? []).map((r) => side(r.from, r.ports)) : [],
    ingressDeny: [],
    egress: egressOn ? (spec.egress ?? []).map((r) => side(r.to, r.ports)) : [],
    egressDeny: [],
    enforces: { ingress: ingressOn, egress: egressOn },
    prefixes: t.prefixes,
  };
}

/** Rules of one validated document. */
export function translatePolicy(d: PolicyDocument, ctx: TranslateContext): Rule[] {
  const key = policyKey(d);
  const name = policyName(d);
  if (d.kind === 'NetworkPolicy') return [translateNetworkPolicy(d.doc, ctx, { id: `${key}#0`, policyKey: key, policy: name })];
  const namespace = d.kind === 'CiliumNetworkPolicy' ? (d.doc.metadata.namespace ?? 'default') : undefined;
  const specs = [...(d.doc.spec ? [d.doc.spec] : []), ...(d.doc.specs ?? [])];
  return specs.map((s, i) => translateCilium(s, namespace, ctx, { id: `${key}#${i}`, policyKey: key, policy: name }));
}

/** Whether a document's CIDR sets name CiliumCIDRGroups (re-translate when groups change). */
export function usesCidrGroups(d: PolicyDocument): boolean {
  if (d.kind === 'NetworkPolicy') return false;
  const specs = [...(d.doc.spec ? [d.doc.spec] : []), ...(d.doc.specs ?? [])];
  const named = (c: CidrRuleSpec): boolean => c.cidrGroupRef !== undefined || c.cidrGroupSelector !== undefined;
  return specs.some(
    (s) =>
      [...(s.ingress ?? []), ...(s.ingressDeny ?? [])].some((r) => (r.fromCIDRSet ?? []).some(named)) ||
      [...(s.egress ?? []), ...(s.egressDeny ?? [])].some((r) => (r.toCIDRSet ?? []).some(named)),
  );
}

/** Whether a translated rule's peers depend on Services (re-translate when Services change). */
export function usesServices(d: PolicyDocument): boolean {
  if (d.kind === 'NetworkPolicy') return false;
  const specs = [...(d.doc.spec ? [d.doc.spec] : []), ...(d.doc.specs ?? [])];
  return specs.some((s) => [...(s.egress ?? []), ...(s.egressDeny ?? [])].some((r) => (r.toServices?.length ?? 0) > 0));
}

export { isWildcard };
