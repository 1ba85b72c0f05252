/**
 * Semantic checks on schema-valid policy documents: what Cilium's rule
 * sanitizer rejects, each reported with the field path. Runs after zod has
 * proven the shape, so it trusts the types.
 */
import { parsePrefix } from '../../identity/cidr.js';
import {
  KAFKA_API_KEYS,
  KAFKA_MAX_RANGE_PORTS,
  compileFullMatch,
  isValidDnsName,
  isValidDnsPattern,
} from '../l7-match.js';
import type { PathSegment, ProblemCode } from './problem.js';
import { EXTENDED_PROTOCOLS } from './schema.js';
import type {
  CidrRuleSpec,
  EndpointSelectorSpec,
  IcmpRuleSpec,
  K8sPortSpec,
  L7RulesSpec,
  PolicyDocument,
  PortProtocolSpec,
  RuleSpec,
} from './schema.js';

export interface RawProblem {
  path: PathSegment[];
  code: ProblemCode;
  message: string;
}

/** IANA service name syntax (named ports): 1–15 chars, lowercase alphanumerics and '-', at least one letter. */
const NAMED_PORT = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;

/** ICMP type names per family, every name Cilium 1.20 accepts (IANA numbers). */
export const ICMP_TYPE_NAMES: Record<'IPv4' | 'IPv6', Record<string, number>> = {
  IPv4: {
    EchoReply: 0,
    DestinationUnreachable: 3,
    Redirect: 5,
    Echo: 8,
    EchoRequest: 8,
    RouterAdvertisement: 9,
    RouterSelection: 10,
    TimeExceeded: 11,
    ParameterProblem: 12,
    Timestamp: 13,
    TimestampReply: 14,
    Photuris: 40,
    ExtendedEchoRequest: 42,
    ExtendedEchoReply: 43,
  },
  IPv6: {
    DestinationUnreachable: 1,
    PacketTooBig: 2,
    TimeExceeded: 3,
    ParameterProblem: 4,
    EchoRequest: 128,
    EchoReply: 129,
    MulticastListenerQuery: 130,
    MulticastListenerReport: 131,
    MulticastListenerDone: 132,
    RouterSolicitation: 133,
    RouterAdvertisement: 134,
    NeighborSolicitation: 135,
    NeighborAdvertisement: 136,
    RedirectMessage: 137,
    RouterRenumbering: 138,
    ICMPNodeInformationQuery: 139,
    ICMPNodeInformationResponse: 140,
    InverseNeighborDiscoverySolicitation: 141,
    InverseNeighborDiscoveryAdvertisement: 142,
    HomeAgentAddressDiscoveryRequest: 144,
    HomeAgentAddressDiscoveryReply: 145,
    MobilePrefixSolicitation: 146,
    MobilePrefixAdvertisement: 147,
    DuplicateAddressRequestCodeSuffix: 157,
    DuplicateAddressConfirmationCodeSuffix: 158,
    ExtendedEchoRequest: 160,
    ExtendedEchoReply: 161,
  },
};

/** The ICMP type a field names (number, numeric string or name of its family), or undefined. */
export function icmpType(type: number | string, family: 'IPv4' | 'IPv6'): number | undefined {
  if (typeof type === 'number') return type;
  if (/^[0-9]+$/.test(type)) return Number(type);
  return Object.hasOwn(ICMP_TYPE_NAMES[family], type) ? ICMP_TYPE_NAMES[family][type] : undefined;
}

export function isExtendedProtocol(p: string | undefined): p is keyof typeof EXTENDED_PROTOCOLS {
  return p !== undefined && Object.hasOwn(EXTENDED_PROTOCOLS, p);
}

/** Numeric port of a port field, a named port, or an error. */
export function classifyPort(v: string | number | undefined): { kind: 'none' } | { kind: 'number'; port: number } | { kind: 'named'; name: string } | { kind: 'error'; message: string } {
  if (v === undefined) return { kind: 'none' };
  if (typeof v === 'number' || /^[0-9]+$/.test(v)) {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65535) return { kind: 'error', message: `port ${String(v)} is out of range 1–65535` };
    return { kind: 'number', port: n };
  }
  if (!NAMED_PORT.test(v)) return { kind: 'error', message: `"${v}" is neither a port number nor a valid port name` };
  return { kind: 'named', name: v };
}

export function validateDocument(d: PolicyDocument): RawProblem[] {
  const out: RawProblem[] = [];
  const add = (path: PathSegment[], code: ProblemCode, message: string): void => {
    out.push({ path, code, message });
  };
  if (d.kind === 'NetworkPolicy') {
    validateNetworkPolicy(d.doc.spec, ['spec'], add);
    return out;
  }
  const doc = d.doc;
  if (doc.spec === undefined && (doc.specs === undefined || doc.specs.length === 0)) {
    add([], 'MISSING_SPEC', 'a policy needs "spec" or a non-empty "specs"');
  }
  const rules: Array<[RuleSpec, PathSegment[]]> = [];
  if (doc.spec) rules.push([doc.spec, ['spec']]);
  (doc.specs ?? []).forEach((r, i) => rules.push([r, ['specs', i]]));
  for (const [r, p] of rules) validateRule(r, p, d.kind === 'CiliumClusterwideNetworkPolicy', add);
  return out;
}

type Add = (path: PathSegment[], code: ProblemCode, message: string) => void;

function validateSelector(s: EndpointSelectorSpec, p: PathSegment[], add: Add): void {
  (s.matchExpressions ?? []).forEach((e, i) => {
    const needs = e.operator === 'In' || e.operator === 'NotIn';
    const n = e.values?.length ?? 0;
    if (needs && n === 0) add([...p, 'matchExpressions', i, 'values'], 'INVALID_SELECTOR', `operator ${e.operator} needs values`);
    if (!needs && n > 0) add([...p, 'matchExpressions', i, 'values'], 'INVALID_SELECTOR', `operator ${e.operator} takes no values`);
  });
}

function validateCidr(text: string, p: PathSegment[], add: Add): void {
  if (!parsePrefix(text)) add(p, 'INVALID_CIDR', `"${text}" is not a valid CIDR or IP address`);
}

/** A CIDR set entry: exactly one of cidr, cidrGroupRef, cidrGroupSelector; `except` inside `cidr` (a group's CIDRs are checked when it is used). */
function validateCidrRule(c: CidrRuleSpec, p: PathSegment[], add: Add): void {
  const n = Number(c.cidr !== undefined) + Number(c.cidrGroupRef !== undefined) + Number(c.cidrGroupSelector !== undefined);
  if (n !== 1) add(p, 'INVALID_VALUE', 'exactly one of cidr, cidrGroupRef or cidrGroupSelector');
  if (c.cidr !== undefined) {
    validateCidrSet({ cidr: c.cidr, ...(c.except ? { except: c.except } : {}) }, p, add);
    return;
  }
  if (c.cidrGroupSelector) validateSelector(c.cidrGroupSelector, [...p, 'cidrGroupSelector'], add);
  (c.except ?? []).forEach((e, i) => {
    if (!parsePrefix(e)) add([...p, 'except', i], 'INVALID_CIDR', `"${e}" is not a valid CIDR`);
  });
}

function validateCidrSet(c: { cidr: string; except?: string[] }, p: PathSegment[], add: Add): void {
  const outer = parsePrefix(c.cidr);
  if (!outer) {
    add([...p, 'cidr'], 'INVALID_CIDR', `"${c.cidr}" is not a valid CIDR`);
    return;
  }
  (c.except ?? []).forEach((e, i) => {
    const inner = parsePrefix(e);
    if (!inner) add([...p, 'except', i], 'INVALID_CIDR', `"${e}" is not a valid CIDR`);
    else if (inner.family !== outer.family || inner.bits < outer.bits || parsePrefix(`${inner.addr}/${outer.bits}`)?.addr !== outer.addr) {
      add([...p, 'except', i], 'INVALID_CIDR', `except ${e} is not inside ${c.cidr}`);
    }
  });
}

function validatePorts(ports: PortProtocolSpec[] | K8sPortSpec[], p: PathSegment[], add: Add): void {
  ports.forEach((pp, i) => {
    if (isExtendedProtocol(pp.protocol)) {
      // IP protocols without transport ports, as Cilium: the port must be empty or 0.
      if (pp.port !== undefined && String(pp.port) !== '0' && String(pp.port) !== '') {
        add([...p, i, 'port'], 'INVALID_PORT', `protocol ${pp.protocol} has no ports: port must be empty or 0`);
      }
      if (pp.endPort !== undefined) add([...p, i, 'endPort'], 'INVALID_PORT_RANGE', `protocol ${pp.protocol} has no ports`);
      return;
    }
    const c = classifyPort(pp.port);
    if (c.kind === 'error') add([...p, i, 'port'], 'INVALID_PORT', c.message);
    if (pp.endPort !== undefined) {
      if (c.kind !== 'number') {
        add([...p, i, 'endPort'], 'INVALID_PORT_RANGE', 'endPort needs a numeric port');
      } else if (pp.endPort < c.port || pp.endPort > 65535) {
        add([...p, i, 'endPort'], 'INVALID_PORT_RANGE', `endPort ${pp.endPort} must be ≥ port ${c.port} and ≤ 65535`);
      }
    }
  });
}

function validateIcmps(icmps: IcmpRuleSpec[], p: PathSegment[], add: Add): void {
  icmps.forEach((r, i) =>
    r.fields.forEach((f, j) => {
      const family = f.family ?? 'IPv4';
      const path = [...p, i, 'fields', j, 'type'];
      const t = icmpType(f.type, family);
      if (t === undefined) add(path, 'INVALID_ICMP', `unknown ${family} ICMP type name "${String(f.type)}"`);
      else if (t < 0 || t > 255) add(path, 'INVALID_ICMP', `ICMP type ${t} is out of range 0–255`);
      // Entries use port 0 for "any", so type 0 (IPv4 echo reply) has no encoding; replies of allowed
      // echo requests pass through connection tracking anyway. Rejected rather than silently widened.
      else if (t === 0) add(path, 'INVALID_ICMP', 'ICMP type 0 (echo reply) is not supported; replies to allowed requests are allowed by connection tracking');
    }),
  );
}

function validateL7(rules: L7RulesSpec, ports: PortProtocolSpec[] | undefined, ingress: boolean, p: PathSegment[], add: Add): void {
  const kinds = (['http', 'kafka', 'dns'] as const).filter((k) => rules[k] !== undefined);
  if (kinds.length > 1) add(p, 'L7_MIXED', `only one L7 protocol per port rule (found ${kinds.join(', ')})`);
  if (kinds.length === 0) return;
  if (!ports || ports.length === 0) add(p, 'L7_WITHOUT_PORTS', 'L7 rules need explicit ports');
  const isDns = kinds.includes('dns');
  if (isDns && ingress) add([...p, 'dns'], 'DNS_ON_INGRESS', 'DNS rules are only allowed on egress');
  (ports ?? []).forEach((pp, i) => {
    const proto = pp.protocol ?? 'ANY';
    const ok = isDns ? proto === 'TCP' || proto === 'UDP' || proto === 'ANY' : proto === 'TCP' || proto === 'ANY';
    if (!ok) {
      add(
        [...p.slice(0, -1), 'ports', i, 'protocol'],
        'L7_NON_TCP',
        isDns ? `DNS rules apply only to UDP/TCP/ANY ports, not ${proto}` : `L7 rules apply only to TCP ports (not ${proto}); only DNS rules may use UDP`,
      );
    }
    if (isDns && pp.endPort !== undefined) add([...p.slice(0, -1), 'ports', i, 'endPort'], 'L7_NON_TCP', 'DNS rules cannot use port ranges');
    if (kinds.includes('kafka')) validateKafkaPort(pp, [...p.slice(0, -1), 'ports', i], add);
  });
  (rules.http ?? []).forEach((h, i) => {
    for (const f of ['method', 'path', 'host'] as const) {
      const re = h[f];
      if (re === undefined) continue;
      try {
        compileFullMatch(re);
      } catch (e: unknown) {
        add([...p, 'http', i, f], 'INVALID_REGEX', `invalid regular expression ${JSON.stringify(re)}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    (h.headers ?? []).forEach((hd, j) => {
      if (hd.trim() === '' || hd.trim().startsWith(':')) add([...p, 'http', i, 'headers', j], 'INVALID_VALUE', 'a header rule needs a name');
    });
  });
  (rules.kafka ?? []).forEach((k, i) => {
    if (k.role !== undefined && k.apiKey !== undefined) add([...p, 'kafka', i], 'INVALID_KAFKA', 'role and apiKey are mutually exclusive');
    if (k.apiKey !== undefined && KAFKA_API_KEYS[k.apiKey.toLowerCase()] === undefined) {
      add([...p, 'kafka', i, 'apiKey'], 'INVALID_KAFKA', `unknown Kafka apiKey "${k.apiKey}"`);
    }
    if (k.apiVersion !== undefined && !/^[0-9]+$/.test(k.apiVersion)) add([...p, 'kafka', i, 'apiVersion'], 'INVALID_KAFKA', 'apiVersion must be a number');
    if (k.topic !== undefined && (k.topic.length > 255 || !/^[a-zA-Z0-9._-]*$/.test(k.topic))) {
      add([...p, 'kafka', i, 'topic'], 'INVALID_KAFKA', `invalid Kafka topic "${k.topic}"`);
    }
  });
  (rules.dns ?? []).forEach((d, i) => validateDns(d, [...p, 'dns', i], add));
}

/** Kafka chains match one port each (src/proxy/kafka-listener.ts): a port is needed, and a range may span KAFKA_MAX_RANGE_PORTS. */
function validateKafkaPort(pp: PortProtocolSpec, p: PathSegment[], add: Add): void {
  const c = classifyPort(pp.port);
  if (c.kind === 'none') add([...p, 'port'], 'INVALID_KAFKA', 'Kafka rules need a port (or a port range)');
  if (c.kind === 'number' && pp.endPort !== undefined && pp.endPort - c.port + 1 > KAFKA_MAX_RANGE_PORTS) {
    add([...p, 'endPort'], 'INVALID_KAFKA', `a port range under Kafka rules may span at most ${KAFKA_MAX_RANGE_PORTS} ports (${c.port}–${pp.endPort} spans ${pp.endPort - c.port + 1})`);
  }
}

function validateDns(d: { matchName?: string; matchPattern?: string }, p: PathSegment[], add: Add): void {
  if (d.matchName === undefined && d.matchPattern === undefined) add(p, 'INVALID_DNS', 'needs matchName or matchPattern');
  if (d.matchName !== undefined && !isValidDnsName(d.matchName)) add([...p, 'matchName'], 'INVALID_DNS', `invalid DNS name "${d.matchName}"`);
  if (d.matchPattern !== undefined && !isValidDnsPattern(d.matchPattern)) {
    add([...p, 'matchPattern'], 'INVALID_DNS', `invalid DNS pattern "${d.matchPattern}" (letters, digits, "-", "_", ".", "*")`);
  } else if (d.matchPattern?.includes('**')) {
    // Newer Cilium reads a leading "**." as "any number of labels"; meshd does not implement it yet and
    // refuses it rather than matching something narrower than the user meant.
    add([...p, 'matchPattern'], 'INVALID_DNS', `"**" in DNS patterns is not supported (use "*" per label)`);
  }
}

interface AnyPeerRule {
  fromEndpoints?: EndpointSelectorSpec[];
  toEndpoints?: EndpointSelectorSpec[];
  fromRequires?: EndpointSelectorSpec[];
  toRequires?: EndpointSelectorSpec[];
  fromNodes?: EndpointSelectorSpec[];
  toNodes?: EndpointSelectorSpec[];
  fromCIDR?: string[];
  toCIDR?: string[];
  fromCIDRSet?: CidrRuleSpec[];
  toCIDRSet?: CidrRuleSpec[];
  toServices?: Array<{ k8sService?: unknown; k8sServiceSelector?: { selector: EndpointSelectorSpec } }>;
  toFQDNs?: unknown;
  toPorts?: Array<{ ports?: PortProtocolSpec[]; rules?: unknown }>;
  icmps?: IcmpRuleSpec[];
}

function validatePeerRule(
  r: AnyPeerRule,
  p: PathSegment[],
  ingress: boolean,
  deny: boolean,
  add: Add,
  fqdns?: Array<{ matchName?: string; matchPattern?: string }>,
): void {
  for (const f of ['fromEndpoints', 'toEndpoints', 'fromRequires', 'toRequires', 'fromNodes', 'toNodes'] as const) {
    (r[f] ?? []).forEach((s, i) => validateSelector(s, [...p, f, i], add));
  }
  for (const f of ['fromCIDR', 'toCIDR'] as const) (r[f] ?? []).forEach((c, i) => validateCidr(c, [...p, f, i], add));
  for (const f of ['fromCIDRSet', 'toCIDRSet'] as const) (r[f] ?? []).forEach((c, i) => validateCidrRule(c, [...p, f, i], add));
  (r.toServices ?? []).forEach((s, i) => {
    const n = Number(s.k8sService !== undefined) + Number(s.k8sServiceSelector !== undefined);
    if (n !== 1) add([...p, 'toServices', i], 'INVALID_VALUE', 'exactly one of k8sService or k8sServiceSelector');
    if (s.k8sServiceSelector) validateSelector(s.k8sServiceSelector.selector, [...p, 'toServices', i, 'k8sServiceSelector', 'selector'], add);
  });
  if (deny && r.toFQDNs !== undefined) add([...p, 'toFQDNs'], 'DENY_WITH_FQDN', 'deny rules cannot use toFQDNs');
  (fqdns ?? []).forEach((f, i) => validateDns(f, [...p, 'toFQDNs', i], add));
  (r.toPorts ?? []).forEach((pr, i) => {
    const pp = [...p, 'toPorts', i];
    if (pr.ports) validatePorts(pr.ports, [...pp, 'ports'], add);
    if (deny && pr.rules !== undefined) add([...pp, 'rules'], 'DENY_WITH_L7', 'deny rules cannot have L7 rules');
  });
  if (r.icmps) validateIcmps(r.icmps, [...p, 'icmps'], add);
}

type TlsPortRule = { ports?: PortProtocolSpec[]; rules?: L7RulesSpec; serverNames?: string[]; terminatingTLS?: unknown; originatingTLS?: unknown };

/**
 * serverNames and TLS interception. Without interception the SNI is read from the ClientHello by
 * the node's Envoy without decrypting, so the port rule may not also carry L7 rules. Interception
 * (terminatingTLS with originatingTLS) is meshd's for egress HTTP: both contexts, single TCP ports,
 * HTTP rules (or none: any request). Neither has a proxy path in host policies.
 */
function validateTls(pr: TlsPortRule, p: PathSegment[], ingress: boolean, host: boolean, add: Add): void {
  const intercept = pr.terminatingTLS !== undefined || pr.originatingTLS !== undefined;
  if (!pr.serverNames && !intercept) return;
  const field = intercept ? (pr.terminatingTLS !== undefined ? 'terminatingTLS' : 'originatingTLS') : 'serverNames';
  const fp = [...p, field];
  const l7 = (['http', 'kafka', 'dns'] as const).filter((k) => (pr.rules?.[k]?.length ?? 0) > 0);
  if (!intercept && l7.length > 0) add([...p, 'serverNames'], 'L7_MIXED', `serverNames cannot be combined with ${l7.join(', ')} rules without TLS interception (terminatingTLS and originatingTLS)`);
  if (intercept) {
    if (l7.some((k) => k !== 'http')) add(fp, 'L7_MIXED', 'TLS interception applies HTTP rules only');
    if (pr.terminatingTLS === undefined) add([...p, 'terminatingTLS'], 'INVALID_VALUE', 'originatingTLS needs terminatingTLS too (meshd intercepts with both)');
    if (pr.originatingTLS === undefined) add([...p, 'originatingTLS'], 'INVALID_VALUE', 'terminatingTLS needs originatingTLS too (meshd intercepts with both)');
    if (ingress) add(fp, 'UNSUPPORTED_FIELD', 'TLS interception on ingress is not supported by meshd (egress only)');
  }
  if (host) add(fp, 'L7_ON_HOST', `${field} is not supported in host policies (nodeSelector)`);
  if (!pr.ports || pr.ports.length === 0) add(fp, 'L7_WITHOUT_PORTS', `${field} needs explicit TCP ports`);
  (pr.ports ?? []).forEach((pp, i) => {
    const proto = pp.protocol ?? 'ANY';
    if (proto !== 'TCP' && proto !== 'ANY') add([...p, 'ports', i, 'protocol'], 'L7_NON_TCP', `${field} applies only to TCP ports, not ${proto}`);
    if (intercept && pp.endPort !== undefined && pp.endPort !== Number(pp.port)) add([...p, 'ports', i, 'endPort'], 'INVALID_PORT_RANGE', 'TLS interception needs single ports');
    if (intercept && (pp.port === undefined || !/^[1-9][0-9]*$/.test(String(pp.port)))) add([...p, 'ports', i, 'port'], 'INVALID_PORT', 'TLS interception needs port numbers');
  });
  (pr.serverNames ?? []).forEach((n, i) => {
    if (n.startsWith('.') || n.includes('..')) add([...p, 'serverNames', i], 'INVALID_VALUE', `invalid server name "${n}"`);
  });
}

/** Host policies (nodeSelector) support only DNS L7 rules, as in Cilium: host traffic has no HTTP/Kafka proxy path. */
function hostL7(rules: L7RulesSpec | undefined, p: PathSegment[], add: Add): void {
  for (const k of ['http', 'kafka'] as const) {
    if (rules?.[k] && rules[k].length > 0) add([...p, k], 'L7_ON_HOST', `${k} rules are not supported in host policies (nodeSelector); only dns`);
  }
}

function validateRule(r: RuleSpec, p: PathSegment[], clusterwide: boolean, add: Add): void {
  const n = Number(r.endpointSelector !== undefined) + Number(r.nodeSelector !== undefined);
  if (n !== 1) add(p, 'SELECTOR_REQUIRED', 'a rule needs exactly one of endpointSelector or nodeSelector');
  if (r.nodeSelector && !clusterwide) {
    add([...p, 'nodeSelector'], 'NODE_SELECTOR_NAMESPACED', 'nodeSelector (host policy) is only allowed in CiliumClusterwideNetworkPolicy');
  }
  if (r.endpointSelector) validateSelector(r.endpointSelector, [...p, 'endpointSelector'], add);
  if (r.nodeSelector) validateSelector(r.nodeSelector, [...p, 'nodeSelector'], add);
  // Cilium applies enableDefaultDeny per section (a rule without one for a direction has no say there, and a
  // rule without any section is refused): `true` for a direction the rule has no section for would do nothing.
  for (const [dir, n] of [
    ['ingress', (r.ingress?.length ?? 0) + (r.ingressDeny?.length ?? 0)],
    ['egress', (r.egress?.length ?? 0) + (r.egressDeny?.length ?? 0)],
  ] as const) {
    if (r.enableDefaultDeny?.[dir] === true && n === 0) {
      add([...p, 'enableDefaultDeny', dir], 'INVALID_VALUE', `enableDefaultDeny.${dir} needs an ${dir} or ${dir}Deny section in the same rule (e.g. ${dir}: [{}] to deny all ${dir})`);
    }
  }
  (r.ingress ?? []).forEach((x, i) => {
    validatePeerRule(x, [...p, 'ingress', i], true, false, add);
    (x.toPorts ?? []).forEach((pr, j) => {
      if (pr.rules) validateL7(pr.rules, pr.ports, true, [...p, 'ingress', i, 'toPorts', j, 'rules'], add);
      validateTls(pr, [...p, 'ingress', i, 'toPorts', j], true, r.nodeSelector !== undefined, add);
      if (r.nodeSelector) hostL7(pr.rules, [...p, 'ingress', i, 'toPorts', j, 'rules'], add);
    });
  });
  (r.ingressDeny ?? []).forEach((x, i) => validatePeerRule(x, [...p, 'ingressDeny', i], true, true, add));
  (r.egress ?? []).forEach((x, i) => {
    validatePeerRule(x, [...p, 'egress', i], false, false, add, x.toFQDNs);
    (x.toPorts ?? []).forEach((pr, j) => {
      if (pr.rules) validateL7(pr.rules, pr.ports, false, [...p, 'egress', i, 'toPorts', j, 'rules'], add);
      validateTls(pr, [...p, 'egress', i, 'toPorts', j], false, r.nodeSelector !== undefined, add);
      if (r.nodeSelector) hostL7(pr.rules, [...p, 'egress', i, 'toPorts', j, 'rules'], add);
    });
  });
  (r.egressDeny ?? []).forEach((x, i) => validatePeerRule(x, [...p, 'egressDeny', i], false, true, add));
}

function validateNetworkPolicy(
  spec: Extract<PolicyDocument, { kind: 'NetworkPolicy' }>['doc']['spec'],
  p: PathSegment[],
  add: Add,
): void {
  validateSelector(spec.podSelector, [...p, 'podSelector'], add);
  const peers = (list: Array<{ podSelector?: EndpointSelectorSpec; namespaceSelector?: EndpointSelectorSpec; ipBlock?: { cidr: string; except?: string[] } }>, pp: PathSegment[]): void =>
    list.forEach((peer, i) => {
      if (peer.ipBlock && (peer.podSelector || peer.namespaceSelector)) {
        add([...pp, i], 'INVALID_VALUE', 'ipBlock cannot be combined with podSelector or namespaceSelector');
      }
      if (!peer.ipBlock && !peer.podSelector && !peer.namespaceSelector) add([...pp, i], 'INVALID_VALUE', 'a peer needs podSelector, namespaceSelector or ipBlock');
      if (peer.podSelector) validateSelector(peer.podSelector, [...pp, i, 'podSelector'], add);
      if (peer.namespaceSelector) validateSelector(peer.namespaceSelector, [...pp, i, 'namespaceSelector'], add);
      if (peer.ipBlock) validateCidrSet(peer.ipBlock, [...pp, i, 'ipBlock'], add);
    });
  (spec.ingress ?? []).forEach((r, i) => {
    if (r.from) peers(r.from, [...p, 'ingress', i, 'from']);
    if (r.ports) validatePorts(r.ports, [...p, 'ingress', i, 'ports'], add);
  });
  (spec.egress ?? []).forEach((r, i) => {
    if (r.to) peers(r.to, [...p, 'egress', i, 'to']);
    if (r.ports) validatePorts(r.ports, [...p, 'egress', i, 'ports'], add);
  });
}

/**
 * Warnings on a valid document: fields meshd enforces that Cilium deprecated. They never make a
 * document invalid; `meshd policy validate` prints them (code DEPRECATED_FIELD).
 */
export function documentWarnings(d: PolicyDocument): RawProblem[] {
  if (d.kind === 'NetworkPolicy') return [];
  const out: RawProblem[] = [];
  const rules: Array<[RuleSpec, PathSegment[]]> = [];
  if (d.doc.spec) rules.push([d.doc.spec, ['spec']]);
  (d.doc.specs ?? []).forEach((r, i) => rules.push([r, ['specs', i]]));
  const warn = (path: PathSegment[], field: string): void => {
    out.push({ path, code: 'DEPRECATED_FIELD', message: `${field} is deprecated (Cilium 1.17) and gone from Cilium 1.19's schema; meshd still enforces it: its selectors narrow every ${field === 'fromRequires' ? 'fromEndpoints' : 'toEndpoints'} of every rule selecting the endpoint` });
  };
  for (const [r, p] of rules) {
    for (const sec of ['ingress', 'ingressDeny'] as const) (r[sec] ?? []).forEach((x, i) => x.fromRequires && warn([...p, sec, i, 'fromRequires'], 'fromRequires'));
    for (const sec of ['egress', 'egressDeny'] as const) (r[sec] ?? []).forEach((x, i) => x.toRequires && warn([...p, sec, i, 'toRequires'], 'toRequires'));
  }
  return out;
}
