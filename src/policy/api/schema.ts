/**
 * zod schemas of the policy resources meshd accepts, field for field as the
 * users write them for Cilium and Kubernetes: cilium.io/v2
 * CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, networking.k8s.io/v1
 * NetworkPolicy. Objects are strict (an unknown field is an error naming its
 * path); semantic checks (regexes, CIDRs, port ranges, where L7 rules may
 * appear) live in validate.ts and run on the typed result.
 *
 * Every field of Cilium's CRD schemas is either read here or refused here by
 * name with `unsupported(feature)`: such a field, whatever its value, makes
 * the policy invalid with the problem code UNSUPPORTED_FIELD at its path, so
 * a policy is never half understood (test/integration/policy-cilium-compat
 * walks Cilium's CRD schemas against this file).
 */
import { z } from 'zod';

export const ENTITIES = [
  'all',
  'world',
  'cluster',
  'host',
  'remote-node',
  'kube-apiserver',
  'health',
  'init',
  'ingress',
  'unmanaged',
] as const;
export type Entity = (typeof ENTITIES)[number];

const str = z.string();

/**
 * A field Cilium defines whose feature meshd does not have. When present (any value) the
 * document is refused with UNSUPPORTED_FIELD at the field's path, naming the feature; absent, it
 * is nothing. The generated CRD keeps it as an untyped node whose description says so, so the
 * API server stores it and the agent reports the refusal in the policy's status.
 */
export function unsupported(feature: string) {
  return z
    .unknown()
    .superRefine((_v, ctx) => {
      ctx.addIssue({ code: 'custom', message: `${feature} is not supported by meshd`, params: { problem: 'UNSUPPORTED_FIELD', feature } });
    })
    .optional()
    .describe(`Not supported by meshd: ${feature}. A policy that sets it is refused (UNSUPPORTED_FIELD).`);
}

const MUTUAL_AUTH = 'mutual authentication';

export const labelSelectorRequirement = z.strictObject({
  key: str.min(1),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
  values: z.array(str).optional(),
});

export const endpointSelector = z.strictObject({
  matchLabels: z.record(str, str).optional(),
  matchExpressions: z.array(labelSelectorRequirement).optional(),
});
export type EndpointSelectorSpec = z.infer<typeof endpointSelector>;

const portValue = z.union([str, z.number().int()]);

/** IP protocols without transport ports that Cilium accepts by name (`--enable-extended-ip-protocols`), with their numbers. */
export const EXTENDED_PROTOCOLS = { VRRP: 112, IGMP: 2, GRE: 47, IPIP: 4, IPV6: 41, ESP: 50, AH: 51 } as const;
export type ExtendedProtocol = keyof typeof EXTENDED_PROTOCOLS;

export const portProtocol = z.strictObject({
  port: portValue.optional(),
  endPort: z.number().int().optional(),
  /**
   * Cilium's names plus ICMP/ICMPv6 (meshd: all types of the family). VRRP, IGMP, GRE, IPIP, IPV6,
   * ESP and AH are IP protocols without ports (Cilium's extended IP protocols): port empty or 0.
   */
  protocol: z.enum(['TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6', 'ICMPV6', 'ANY', 'VRRP', 'IGMP', 'GRE', 'IPIP', 'IPV6', 'ESP', 'AH']).optional(),
});
export type PortProtocolSpec = z.infer<typeof portProtocol>;

export const httpRule = z.strictObject({
  method: str.optional(),
  path: str.optional(),
  host: str.optional(),
  headers: z.array(str).optional(),
  headerMatches: z
    .array(
      z.strictObject({
        name: str.min(1),
        value: str.optional(),
        mismatch: z.enum(['LOG', 'ADD', 'DELETE', 'REPLACE']).optional(),
        secret: unsupported('header values from Kubernetes Secrets (headerMatches[].secret)'),
      }),
    )
    .optional(),
});

export const kafkaRule = z.strictObject({
  role: z.enum(['produce', 'consume']).optional(),
  apiKey: str.optional(),
  apiVersion: str.optional(),
  clientID: str.optional(),
  topic: str.optional(),
});

export const dnsRule = z.strictObject({
  matchName: str.optional(),
  matchPattern: str.optional(),
});

export const l7Rules = z.strictObject({
  http: z.array(httpRule).optional(),
  kafka: z.array(kafkaRule).optional(),
  dns: z.array(dnsRule).optional(),
});
export type L7RulesSpec = z.infer<typeof l7Rules>;

/**
 * TLS interception keys (Cilium's TLSContext): a Secret by namespace and name (namespace: the
 * policy's; `default` for clusterwide policies) and the keys in it that hold the CA bundle, the
 * certificate chain and the private key (defaults ca.crt, tls.crt, tls.key).
 */
export const tlsContext = z.strictObject({
  secret: z.strictObject({ namespace: str.min(1).optional(), name: str.min(1) }),
  trustedCA: str.min(1).optional(),
  certificate: str.min(1).optional(),
  privateKey: str.min(1).optional(),
});
export type TlsContextSpec = z.infer<typeof tlsContext>;

export const portRule = z.strictObject({
  ports: z.array(portProtocol).optional(),
  rules: l7Rules.optional(),
  /** TLS SNI patterns (Cilium's ServerName: `*` within a label, a leading `**.` for any labels); enforced by the node's Envoy (src/proxy/tls.ts). */
  serverNames: z.array(str.max(255).regex(/^([-a-zA-Z0-9_*]+[.]?)+$/)).min(1).optional(),
  /** TLS interception (egress, with HTTP rules): the node's Envoy terminates with this certificate (src/proxy/tls.ts). */
  terminatingTLS: tlsContext.optional(),
  /** …and originates TLS to the destination, verifying it against this CA. */
  originatingTLS: tlsContext.optional(),
  listener: unsupported('CiliumEnvoyConfig listener references (listener, listener.priority)'),
});
export type PortRuleSpec = z.infer<typeof portRule>;

/**
 * Deny port rules have no L7 part in Cilium. `rules` is accepted here only so
 * validate.ts can reject it with a precise message instead of "unknown field".
 */
export const portDenyRule = z.strictObject({
  ports: z.array(portProtocol).optional(),
  rules: z.unknown().optional(),
});

export const icmpRule = z.strictObject({
  fields: z
    .array(
      z.strictObject({
        type: z.union([z.number().int(), str]),
        family: z.enum(['IPv4', 'IPv6']).optional(),
      }),
    )
    .min(1),
});
export type IcmpRuleSpec = z.infer<typeof icmpRule>;

/**
 * One CIDR block: exactly one of `cidr`, `cidrGroupRef` (a CiliumCIDRGroup by name) or
 * `cidrGroupSelector` (CiliumCIDRGroups by their labels); `except` applies to every CIDR it names.
 */
export const cidrRule = z.strictObject({
  cidr: str.optional(),
  cidrGroupRef: str.min(1).optional(),
  cidrGroupSelector: endpointSelector.optional(),
  except: z.array(str).optional(),
});
export type CidrRuleSpec = z.infer<typeof cidrRule>;

export const service = z.strictObject({
  k8sService: z.strictObject({ serviceName: str.min(1), namespace: str.optional() }).optional(),
  k8sServiceSelector: z.strictObject({ selector: endpointSelector, namespace: str.optional() }).optional(),
});
export type ServiceSpec = z.infer<typeof service>;

export const fqdnSelector = z.strictObject({
  matchName: str.optional(),
  matchPattern: str.optional(),
});

const entity = z.enum(ENTITIES);

export const ingressRule = z.strictObject({
  fromEndpoints: z.array(endpointSelector).optional(),
  /**
   * Deprecated in Cilium 1.17 and dropped from its schema in 1.19; meshd still enforces it as
   * Cilium defined it (every fromEndpoints of every rule selecting the endpoint must also match)
   * and warns (DEPRECATED_FIELD).
   */
  fromRequires: z.array(endpointSelector).optional(),
  fromGroups: unsupported('cloud provider security groups (fromGroups)'),
  authentication: unsupported(`${MUTUAL_AUTH} (authentication.mode)`),
  auth: unsupported(`${MUTUAL_AUTH} (auth, an older spelling of authentication)`),
  fromCIDR: z.array(str).optional(),
  fromCIDRSet: z.array(cidrRule).optional(),
  fromEntities: z.array(entity).optional(),
  fromNodes: z.array(endpointSelector).optional(),
  toPorts: z.array(portRule).optional(),
  icmps: z.array(icmpRule).optional(),
});

/** A deny rule is an allow rule whose ports carry no L7 rules (strictness is kept by extend). */
export const ingressDenyRule = ingressRule.extend({ toPorts: z.array(portDenyRule).optional() });

export const egressRule = z.strictObject({
  toEndpoints: z.array(endpointSelector).optional(),
  /** As fromRequires, for toEndpoints. */
  toRequires: z.array(endpointSelector).optional(),
  toGroups: unsupported('cloud provider security groups (toGroups)'),
  authentication: unsupported(`${MUTUAL_AUTH} (authentication.mode)`),
  auth: unsupported(`${MUTUAL_AUTH} (auth, an older spelling of authentication)`),
  toCIDR: z.array(str).optional(),
  toCIDRSet: z.array(cidrRule).optional(),
  toEntities: z.array(entity).optional(),
  toNodes: z.array(endpointSelector).optional(),
  toServices: z.array(service).optional(),
  toFQDNs: z.array(fqdnSelector).optional(),
  toPorts: z.array(portRule).optional(),
  icmps: z.array(icmpRule).optional(),
});

export const egressDenyRule = egressRule.extend({
  /** Not allowed on deny (Cilium has no FQDN deny); accepted only to be rejected precisely by validate.ts. */
  toFQDNs: z.unknown().optional(),
  toPorts: z.array(portDenyRule).optional(),
});

export type IngressRuleSpec = z.infer<typeof ingressRule>;
export type IngressDenyRuleSpec = z.infer<typeof ingressDenyRule>;
export type EgressRuleSpec = z.infer<typeof egressRule>;
export type EgressDenyRuleSpec = z.infer<typeof egressDenyRule>;

export const ruleSpec = z.strictObject({
  endpointSelector: endpointSelector.optional(),
  nodeSelector: endpointSelector.optional(),
  ingress: z.array(ingressRule).optional(),
  ingressDeny: z.array(ingressDenyRule).optional(),
  egress: z.array(egressRule).optional(),
  egressDeny: z.array(egressDenyRule).optional(),
  enableDefaultDeny: z.strictObject({ ingress: z.boolean().optional(), egress: z.boolean().optional() }).optional(),
  labels: z.array(z.strictObject({ key: str, value: str.optional(), source: str.optional() })).optional(),
  description: str.optional(),
  /** Attached to the verdicts this rule decides (PolicyEntry.log), for flow logs; ≤ 32 printable characters as in Cilium. */
  log: z.strictObject({ value: str.max(32).regex(/^\P{C}*$/u).optional() }).optional(),
  /** Cilium 1.20's policy kinds have no rule priority (only listener.priority, refused with listener). */
  priority: unsupported('rule priority (not part of Cilium 1.20 CiliumNetworkPolicy; policies are unordered, deny wins)'),
});
export type RuleSpec = z.infer<typeof ruleSpec>;

/** Kubernetes metadata: only name and namespace matter; the rest of ObjectMeta is accepted as Kubernetes writes it. */
const metadata = z.looseObject({
  name: str.min(1),
  namespace: str.min(1).optional(),
});

export const ciliumNetworkPolicy = z.strictObject({
  apiVersion: z.literal('cilium.io/v2'),
  kind: z.literal('CiliumNetworkPolicy'),
  metadata,
  spec: ruleSpec.optional(),
  specs: z.array(ruleSpec).optional(),
  status: z.unknown().optional(),
});

export const ciliumClusterwideNetworkPolicy = z.strictObject({
  apiVersion: z.literal('cilium.io/v2'),
  kind: z.literal('CiliumClusterwideNetworkPolicy'),
  metadata,
  spec: ruleSpec.optional(),
  specs: z.array(ruleSpec).optional(),
  status: z.unknown().optional(),
});

const k8sPort = z.strictObject({
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).optional(),
  port: portValue.optional(),
  endPort: z.number().int().optional(),
});
export type K8sPortSpec = z.infer<typeof k8sPort>;

const k8sPeer = z.strictObject({
  podSelector: endpointSelector.optional(),
  namespaceSelector: endpointSelector.optional(),
  ipBlock: z.strictObject({ cidr: str, except: z.array(str).optional() }).optional(),
});
export type K8sPeerSpec = z.infer<typeof k8sPeer>;

export const networkPolicy = z.strictObject({
  apiVersion: z.literal('networking.k8s.io/v1'),
  kind: z.literal('NetworkPolicy'),
  metadata,
  spec: z.strictObject({
    podSelector: endpointSelector,
    policyTypes: z.array(z.enum(['Ingress', 'Egress'])).optional(),
    ingress: z.array(z.strictObject({ from: z.array(k8sPeer).optional(), ports: z.array(k8sPort).optional() })).optional(),
    egress: z.array(z.strictObject({ to: z.array(k8sPeer).optional(), ports: z.array(k8sPort).optional() })).optional(),
  }),
  status: z.unknown().optional(),
});

export type CiliumNetworkPolicySpec = z.infer<typeof ciliumNetworkPolicy>;
export type CiliumClusterwideNetworkPolicySpec = z.infer<typeof ciliumClusterwideNetworkPolicy>;
export type NetworkPolicySpec = z.infer<typeof networkPolicy>;

/** A validated policy document. */
export type PolicyDocument =
  | { kind: 'CiliumNetworkPolicy'; doc: CiliumNetworkPolicySpec }
  | { kind: 'CiliumClusterwideNetworkPolicy'; doc: CiliumClusterwideNetworkPolicySpec }
  | { kind: 'NetworkPolicy'; doc: NetworkPolicySpec };
