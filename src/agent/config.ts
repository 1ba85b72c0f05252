/**
 * Agent configuration. Keys are Cilium's Helm value names wherever one exists
 * (policyEnforcementMode, kubeProxyReplacement, socketLB.*, cni.*, bpf.root,
 * ipam.*), so values move between the two without relearning.
 *
 * Sources, later wins: defaults < config file (YAML/JSON, nested or dotted
 * keys) < environment (MESHD_ + the key upper-cased with dots removed, e.g.
 * MESHD_SOCKETLB_HOSTNAMESPACEONLY=true) < flags (--socketLB.hostNamespaceOnly=true
 * or --set socketLB.hostNamespaceOnly=true). Unknown keys are errors naming
 * the key and where it came from.
 *
 * Errors are ConfigError with a stable code: MESHD_CONFIG_UNREADABLE (the
 * file cannot be read), MESHD_CONFIG_UNKNOWN_KEY, MESHD_CONFIG_INVALID (a
 * value, the file's syntax or a malformed --set); `keys` names the keys.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_SECRETS_NAMESPACE } from '../k8s/secret.js';
import { MeshdError } from '../util/errors.js';
import { errno } from '../util/fs-errors.js';

const bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);
const int = (min: number, max: number) => z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).pipe(z.number().int().min(min).max(max));

const portRange = z
  .string()
  .regex(/^\d{1,5}-\d{1,5}$/, 'expected "LOW-HIGH", e.g. "10000-20000"')
  .transform((s) => s.split('-').map(Number) as [number, number])
  .refine(([lo, hi]) => lo >= 1 && hi <= 65535 && lo <= hi, 'ports must satisfy 1 <= LOW <= HIGH <= 65535');

const cidr4 = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/(\d|[12]\d|3[0-2])$/, 'expected an IPv4 CIDR such as 10.244.0.0/24');

/** A duration as Cilium's values write them ("30s", "15m", "1h30m", "500ms"), in milliseconds. */
const duration = z
  .string()
  .regex(/^(\d+(ms|s|m|h))+$/, 'expected a duration such as "30s", "15m" or "1h30m"')
  .transform((s) => [...s.matchAll(/(\d+)(ms|s|m|h)/g)].reduce((ms, [, n, u]) => ms + Number(n) * ({ ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[u ?? 'ms'] ?? 1), 0))
  .refine((ms) => ms > 0, 'must be longer than zero');

/** Flat schema: one entry per dotted key. */
export const configShape = {
  nodeName: z.string().min(1),
  policyEnforcementMode: z.enum(['default', 'always', 'never']),
  kubeProxyReplacement: bool,
  'socketLB.enabled': bool,
  'socketLB.hostNamespaceOnly': bool,
  'sockops.enabled': bool,
  'cni.install': bool,
  'cni.exclusive': bool,
  'cni.confDir': z.string().min(1),
  'cni.binDir': z.string().min(1),
  /** true: the installed meshd-cni runs a Node.js and bundle copied into cni.binDir/meshd-cni.d (an agent in a container); false: the agent's own. */
  'cni.hostRuntime': bool,
  'envoy.enabled': bool,
  'envoy.binaryPath': z.string().min(1).optional(),
  'envoy.xdsMode': z.enum(['sotw', 'delta']),
  /** Seconds Envoy keeps an idle upstream HTTP connection in its pool (Cilium's key and default; Envoy's own default is an hour). */
  'envoy.idleTimeoutDurationSeconds': int(1, 86_400),
  /** Retries of an idempotent request whose upstream connection failed or reset before any response; 0: none. */
  'envoy.httpRetryCount': int(0, 10),
  'proxy.portRange': portRange,
  /** Envoys active-active behind the proxy ports; one crashing leaves the others serving (docs/reliability.md). */
  'proxy.replicas': int(1, 8),
  /** false: a stopping agent leaves its Envoys serving for the next agent to adopt; true: it drains and stops them. */
  'proxy.stopOnShutdown': bool,
  /** The node's pod CIDR. Standalone: the range meshd-cni allocates from (default STANDALONE_POD_CIDR). Kubernetes: an explicit CIDR, claimed like a pool block and refused when another node holds it. */
  'ipam.podCIDR': cidr4.optional(),
  'bpf.root': z.string().min(1),
  'bpf.lbMapMax': int(16, 16_777_216),
  'loadBalancer.algorithm': z.enum(['random', 'maglev']),
  /** The cgroup v2 directory the socket LB's hooks attach to (Cilium: cgroup.hostRoot). */
  'cgroup.hostRoot': z.string().min(1),
  'bpf.events.sampleNewConnections': int(0, 1_000_000),
  stateDir: z.string().min(1),
  'log.format': z.enum(['auto', 'json', 'text']),
  'log.level': z.enum(['debug', 'info', 'warn', 'error']),
  /** The API server's address when the in-cluster one (KUBERNETES_SERVICE_HOST) is not usable, e.g. without kube-proxy (Cilium: k8sServiceHost). */
  k8sServiceHost: z.string().min(1).optional(),
  k8sServicePort: int(1, 65535).optional(),
  /** A kubeconfig file; wins over KUBECONFIG and the in-cluster service account. */
  k8sKubeconfigPath: z.string().min(1).optional(),
  /**
   * Kubernetes mode: where identity numbers come from (Cilium's key). `crd`: MeshdIdentity objects, the same
   * number for a label set on every node; `local`: this node only (numbers differ between nodes). Standalone mode is always local.
   */
  identityAllocationMode: z.enum(['crd', 'local']),
  /** Namespace of the coordination.k8s.io Lease `meshd-identity-gc` that elects the agent collecting unused identities. */
  'identityGC.leaseNamespace': z.string().min(1),
  /** How long an identity may go without any node's reference before it is deleted (Cilium: identityHeartbeatTimeout). */
  'identityGC.gracePeriod': duration,
  /** How often the Lease holder looks for unused identities (Cilium: operator.identityGCInterval). */
  'identityGC.interval': duration,
  /** Do not create or update the cilium.io policy CRDs (install them from install/crds/ instead); Cilium: operator.skipCRDCreation, flag skip-crd-creation. */
  skipCRDCreation: bool,
  // ---- node objects and pod CIDRs (src/agent/pod-cidr.ts, node-object.ts, node-housekeeping.ts) ----
  /** Kubernetes mode: where the node's pod CIDR comes from (Cilium: ipam.mode): a block of the cluster pool, or Node.spec.podCIDRs. */
  'ipam.mode': z.enum(['cluster-pool', 'kubernetes']),
  /** The pools cluster-pool carves node CIDRs from (Cilium: ipam.operator.clusterPoolIPv4PodCIDRList); a list or "a,b". */
  'ipam.operator.clusterPoolIPv4PodCIDRList': z
    .union([z.array(z.string()), z.string().transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x !== ''))])
    .pipe(z.array(cidr4).min(1)),
  /** The prefix length of each node's block (Cilium: ipam.operator.clusterPoolIPv4MaskSize). */
  'ipam.operator.clusterPoolIPv4MaskSize': int(8, 30),
  /** How often the agent rewrites its MeshdNode (its heartbeat). */
  'nodeHeartbeat.interval': duration,
  /** Namespace of the Lease `meshd-node-gc` that elects the agent removing nodes that left. */
  'nodeGC.leaseNamespace': z.string().min(1),
  /** How long a node whose Node object is gone may go without a heartbeat before its MeshdNode, pod CIDR and policy status keys are removed. */
  'nodeGC.gracePeriod': duration,
  /** How often the Lease holder looks for nodes that left. */
  'nodeGC.interval': duration,
  // The DNS proxy and toFQDNs (src/dns, docs/dns.md); Cilium's dnsProxy.* Helm values.
  /** UDP and TCP port of the DNS proxy; 0 = the top port of proxy.portRange, persisted, the same after restarts. */
  'dnsProxy.proxyPort': int(0, 65535),
  /** Seconds an address learned from DNS is kept at least, whatever the answer's TTL (0 = honour the TTL). */
  'dnsProxy.minTtl': int(0, 2_147_483),
  /** Addresses kept per name and endpoint (Cilium: tofqdns-endpoint-max-ip-per-hostname). */
  'dnsProxy.endpointMaxIpPerHostname': int(1, 1_000_000),
  /** How long an allowed answer may wait for its addresses to reach the ipcache and policy maps. */
  'dnsProxy.proxyResponseMaxDelay': duration,
  /** The answer to a name no rule allows: REFUSED or NXDOMAIN (nameError). */
  'dnsProxy.dnsRejectResponseCode': z.enum(['refused', 'nameError']),
  /** How long an expired address with no connection stays (Cilium: tofqdns-idle-connection-grace-period). */
  'dnsProxy.idleConnectionGracePeriod': z.union([z.enum(['0', '0s']).transform(() => 0), duration]),
  /**
   * Forward allowed queries from the pod's own address (UDP: and port), so the resolver's own policy sees
   * the pod; the datapath hands the resolver's answer back to the proxy. Off: from the node's address,
   * with the pod's identity in the mark.
   */
  'dnsProxy.enableTransparentMode': bool,
  // TLS interception's Secrets (src/proxy/sds.ts); Cilium's tls.* values.
  /** Kubernetes mode: read the Secrets that terminatingTLS/originatingTLS name only from tls.secretsNamespace.name (false: every namespace, which needs read access to all Secrets). */
  'tls.readSecretsOnlyFromSecretsNamespace': bool,
  /** The namespace those Secrets are read from. */
  'tls.secretsNamespace.name': z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a namespace name (RFC 1123 label)'),
  // Flow observability (Cilium's hubble.* and prometheus.* values; docs/observability.md).
  'hubble.enabled': bool,
  /** Flows kept per node; Cilium requires a power of two minus one. */
  'hubble.eventBufferCapacity': int(1, 65535).refine((n) => ((n + 1) & n) === 0, 'must be a power of two minus one (1, 3, 7, …, 4095, …, 65535)'),
  /** The observer's unix socket (default <stateDir>/hubble.sock). */
  'hubble.socketPath': z.string().min(1).optional(),
  /** A TCP address for the observer as well, e.g. ":4244"; empty: unix socket only. */
  'hubble.listenAddress': z.string(),
  /** Hubble flow metrics to serve on hubble.metrics.port, e.g. [flow, drop, tcp, port-distribution, httpV2, dns]; empty: none. */
  'hubble.metrics.enabled': z.union([z.array(z.string().min(1)), z.string().transform((v) => v.split(/[\s,]+/).filter((x) => x !== ''))]),
  'hubble.metrics.port': int(1, 65535),
  /** The agent's own metrics on prometheus.port. */
  'prometheus.enabled': bool,
  'prometheus.port': int(1, 65535),
  // Clients outside the node (src/datapath/nodeport, bpf/nodeport.c, docs/socket-lb.md); Cilium's names.
  /** The native devices NodePort, external-IP and load-balancer frontends are served on; a list or "eth0,eth1"; empty: the interfaces of the default routes. */
  devices: z.union([z.array(z.string()), z.string().transform((v) => v.split(/[\s,]+/).filter((x) => x !== ''))]).pipe(z.array(z.string().regex(/^[^\s/:]{1,15}$/, 'expected interface names such as eth0'))),
  /** Serve those frontends to clients outside the node; unset: follows kubeProxyReplacement (and needs socketLB.enabled, whose maps it reads). */
  'nodePort.enabled': bool.optional(),
  /** How a backend on another node is reached: snat (its reply comes back through this node). Cilium's dsr and hybrid are not implemented. */
  'loadBalancer.mode': z.enum(['snat']),
  // The host firewall (src/datapath/host, bpf/host.c, docs/datapath.md); Cilium's names.
  /** Enforce host policies (CiliumClusterwideNetworkPolicy with nodeSelector) on the native devices (`devices`). */
  'hostFirewall.enabled': bool,
  /** Report what policy would drop (audit events) and drop nothing; host firewall. */
  policyAuditMode: bool,
  // L2 announcements (src/l2announce, docs/lb-ipam.md); Cilium's l2announcements.* values. LB IPAM itself needs no key.
  /** Answer ARP/ND on this node for the LoadBalancer and external IPs CiliumL2AnnouncementPolicies select, one node per Service by Lease. */
  'l2announcements.enabled': bool,
  /** How long a Service's announcing node may go without renewing its Lease before another node takes over. */
  'l2announcements.leaseDuration': duration,
  /** Accepted as Cilium names it; meshd stops answering at the first renewal that fails (stricter). */
  'l2announcements.leaseRenewDeadline': duration,
  /** How often each Service's Lease is renewed or tried. */
  'l2announcements.leaseRetryPeriod': duration,
  // Gateway API (src/gateway, docs/gateway-api.md); Cilium's gatewayAPI.* values.
  /** Read GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant and BackendTLSPolicy and serve the Gateways of meshd's class on the node's Envoy. */
  'gatewayAPI.enabled': bool,
  /** How long a Gateway's status writer may go without renewing its Lease (meshd-gateway-status) before another agent takes over. */
  'gatewayAPI.leaseDuration': duration,
  // Routing between nodes (src/datapath/routing, docs/routing.md); Cilium's Helm value names.
  /** native: pod addresses routed by the network between nodes; tunnel: encapsulated in eBPF, the source identity in the VNI. */
  routingMode: z.enum(['native', 'tunnel']),
  /** The encapsulation of tunnel mode; geneve only where the kernel has it (the agent probes and refuses to start otherwise). */
  tunnelProtocol: z.enum(['vxlan', 'geneve']),
  /** UDP port of the tunnel (Cilium's default for VXLAN: 8472). */
  tunnelPort: int(1, 65535),
  /** Native mode: the CIDR in which pod addresses are routable without masquerade (all of the cluster's pod CIDRs). */
  ipv4NativeRoutingCIDR: cidr4.optional(),
  /** Native mode: install a route to each other node's pod CIDR via that node's address (nodes on one L2 segment). */
  autoDirectNodeRoutes: bool,
  /** Pod interfaces' MTU; 0 = the node device's MTU, minus the tunnel's overhead in tunnel mode. */
  MTU: int(0, 65535),
} as const;

/** The pod CIDR of standalone mode when ipam.podCIDR is not set. */
export const STANDALONE_POD_CIDR = '10.244.0.0/24';

export const configSchema = z.object(configShape).strict();
export type AgentConfig = z.output<typeof configSchema>;
export type ConfigKey = keyof typeof configShape;

export const DEFAULTS: Record<ConfigKey, unknown> = {
  nodeName: process.env.NODE_NAME ?? hostname(),
  policyEnforcementMode: 'default',
  kubeProxyReplacement: true,
  'socketLB.enabled': true,
  'socketLB.hostNamespaceOnly': false,
  'sockops.enabled': false,
  'cni.install': true,
  'cni.exclusive': true,
  'cni.confDir': '/etc/cni/net.d',
  'cni.binDir': '/opt/cni/bin',
  'cni.hostRuntime': false,
  'envoy.enabled': true,
  'envoy.binaryPath': undefined,
  'envoy.xdsMode': 'delta',
  'envoy.idleTimeoutDurationSeconds': 60,
  'envoy.httpRetryCount': 3,
  'proxy.portRange': '10000-20000',
  'proxy.replicas': 1,
  'proxy.stopOnShutdown': false,
  'ipam.podCIDR': undefined,
  'bpf.root': '/sys/fs/bpf',
  'bpf.lbMapMax': 65536,
  'loadBalancer.algorithm': 'random',
  'cgroup.hostRoot': '/sys/fs/cgroup/unified',
  'bpf.events.sampleNewConnections': 1,
  stateDir: '/var/run/meshd',
  'log.format': 'auto',
  'log.level': 'info',
  k8sServiceHost: undefined,
  k8sServicePort: undefined,
  k8sKubeconfigPath: undefined,
  identityAllocationMode: 'crd',
  'identityGC.leaseNamespace': 'kube-system',
  'identityGC.gracePeriod': '15m',
  'identityGC.interval': '1m',
  skipCRDCreation: false,
  'ipam.mode': 'cluster-pool',
  'ipam.operator.clusterPoolIPv4PodCIDRList': ['10.0.0.0/8'],
  'ipam.operator.clusterPoolIPv4MaskSize': 24,
  'nodeHeartbeat.interval': '30s',
  'nodeGC.leaseNamespace': 'kube-system',
  'nodeGC.gracePeriod': '5m',
  'nodeGC.interval': '1m',
  'dnsProxy.proxyPort': 0,
  'dnsProxy.minTtl': 0,
  'dnsProxy.endpointMaxIpPerHostname': 1000,
  'dnsProxy.proxyResponseMaxDelay': '100ms',
  'dnsProxy.dnsRejectResponseCode': 'refused',
  'dnsProxy.idleConnectionGracePeriod': '0s',
  'dnsProxy.enableTransparentMode': false,
  'tls.readSecretsOnlyFromSecretsNamespace': true,
  'tls.secretsNamespace.name': DEFAULT_SECRETS_NAMESPACE,
  'hubble.enabled': true,
  'hubble.eventBufferCapacity': 4095,
  'hubble.socketPath': undefined,
  'hubble.listenAddress': '',
  'hubble.metrics.enabled': [],
  'hubble.metrics.port': 9965,
  'prometheus.enabled': false,
  'prometheus.port': 9962,
  devices: [],
  'nodePort.enabled': undefined,
  'loadBalancer.mode': 'snat',
  'hostFirewall.enabled': false,
  policyAuditMode: false,
  'l2announcements.enabled': false,
  'l2announcements.leaseDuration': '15s',
  'l2announcements.leaseRenewDeadline': '5s',
  'l2announcements.leaseRetryPeriod': '2s',
  'gatewayAPI.enabled': false,
  'gatewayAPI.leaseDuration': '15s',
  routingMode: 'native',
  tunnelProtocol: 'vxlan',
  tunnelPort: 8472,
  ipv4NativeRoutingCIDR: undefined,
  autoDirectNodeRoutes: false,
  MTU: 0,
};

export type ConfigErrorCode = 'MESHD_CONFIG_UNREADABLE' | 'MESHD_CONFIG_UNKNOWN_KEY' | 'MESHD_CONFIG_INVALID';

export class ConfigError extends MeshdError {
  declare readonly code: ConfigErrorCode;

  constructor(
    code: ConfigErrorCode,
    message: string,
    /** The configuration keys at fault (dotted), when known. */
    readonly keys: readonly string[] = [],
    opts: { cause?: unknown } = {},
  ) {
    super(code, message, { kind: code === 'MESHD_CONFIG_UNREADABLE' ? 'not-found' : 'invalid', cause: opts.cause });
  }
}

const KEYS: readonly string[] = Object.keys(configShape);
const isConfigKey = (k: string): k is ConfigKey => KEYS.includes(k);
const envName = (k: string) => `MESHD_${k.replace(/\./g, '_').toUpperCase()}`;

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Flattens nested objects into dotted keys ({socketLB: {enabled: true}} → socketLB.enabled). */
function flatten(obj: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isMapping(v) && !isConfigKey(key)) Object.assign(out, flatten(v, key));
    else out[key] = v;
  }
  return out;
}

function checkKeys(values: Record<string, unknown>, origin: string): void {
  const unknown = Object.keys(values).filter((k) => !isConfigKey(k));
  if (unknown.length > 0) {
    throw new ConfigError('MESHD_CONFIG_UNKNOWN_KEY', `${origin}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}`, unknown);
  }
}

export interface ConfigSources {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Raw flag values by key, e.g. {'socketLB.hostNamespaceOnly': 'true'}. */
  flags?: Record<string, string>;
}

export function loadConfig(src: ConfigSources = {}): AgentConfig {
  const merged: Record<string, unknown> = { ...DEFAULTS };
  if (src.file) {
    let text: string;
    try {
      text = readFileSync(src.file, 'utf8');
    } catch (e) {
      const why = errno(e) ?? (e instanceof Error ? e.message : String(e));
      throw new ConfigError('MESHD_CONFIG_UNREADABLE', `${src.file}: cannot read the configuration file (${why})`, [], { cause: e });
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ConfigError('MESHD_CONFIG_INVALID', `${src.file}: ${e instanceof Error ? e.message : String(e)}`, [], { cause: e });
    }
    if (doc !== null && doc !== undefined) {
      if (!isMapping(doc)) throw new ConfigError('MESHD_CONFIG_INVALID', `${src.file}: expected a mapping of configuration keys`);
      const flat = flatten(doc);
      checkKeys(flat, src.file);
      Object.assign(merged, flat);
    }
  }
  const env = src.env ?? process.env;
  for (const k of KEYS) {
    const v = env[envName(k)];
    if (v !== undefined) merged[k] = v;
  }
  if (src.flags) {
    checkKeys(src.flags, 'flag');
    Object.assign(merged, src.flags);
  }
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const keys = parsed.error.issues.map((i) => i.path.map(String).join('.'));
    const msgs = parsed.error.issues.map((i, n) => `${keys[n] ?? ''}: ${i.message}`);
    throw new ConfigError('MESHD_CONFIG_INVALID', `invalid configuration${src.file ? ` (${src.file})` : ''}: ${msgs.join('; ')}`, keys);
  }
  return parsed.data;
}

/** Splits `--key=value`, `--key value` and `--set key=value` agent flags into config flags and the rest. */
export function configFlags(argv: readonly string[]): { flags: Record<string, string>; rest: string[] } {
  const flags: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--set') {
      const kv = argv[++i] ?? '';
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new ConfigError('MESHD_CONFIG_INVALID', `--set: expected key=value, got "${kv}"`);
      flags[kv.slice(0, eq)] = kv.slice(eq + 1);
      continue;
    }
    const m = /^--([A-Za-z][\w.]*)(?:=(.*))?$/.exec(a);
    if (m?.[1] && isConfigKey(m[1])) {
      flags[m[1]] = m[2] ?? argv[++i] ?? '';
      continue;
    }
    rest.push(a);
  }
  return { flags, rest };
}
