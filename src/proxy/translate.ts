/**
 * Policy → Envoy resources for the node's proxy.
 *
 * Input: the policy engine's EndpointPolicy for each local endpoint (with the
 * endpoint's addresses) and the ipcache's identity → addresses. Output: one
 * transparent listener per (L7 protocol, direction) that has any REDIRECT
 * entry, its filter chains, one ORIGINAL_DST cluster per client identity
 * (SO_MARK = proxyUpstreamMark(identity), cluster.ts), and the redirects the
 * datapath may program once Envoy has ACKed these listeners.
 *
 * Filter chains:
 * - ingress (`meshd-http-ingress`): per local destination endpoint D, one
 *   chain per remote identity R that has rows of its own (destination = D's
 *   addresses, source = R's addresses from the ipcache; RBAC from R's rows and
 *   the wildcard rows R has no own row for; upstream marked with R), plus one
 *   chain without a source match for every other client (the wildcard rows;
 *   upstream marked `world`, since Envoy cannot tell which identity an
 *   address outside every chain has — see docs/l7-http.md);
 * - egress (`meshd-http-egress`): per local source endpoint S, one chain
 *   (source = S's addresses; RBAC from S's egress rows, the remote identity
 *   told by the destination address; upstream marked with S's identity), and
 *   one chain per local destination D with ingress L7 rules (destination = D,
 *   source = S): the datapath redirects such a connection once, to the egress
 *   port, so that chain enforces S's egress rules and then D's ingress rules
 *   for S's identity.
 *
 * HTTP is enforced here; Kafka (both directions) in kafka-listener.ts (when
 * `kafka` names the processor's socket). A REDIRECT entry for another L7 protocol (or
 * direction) is not dropped silently: it is returned in `unsupported`, so the
 * caller can report it (and the datapath keeps such flows failing closed
 * rather than unfiltered).
 */
import { Identity } from '../datapath/maps.js';
import type { Direction, EndpointPolicy, KafkaRule, L7Kind, PolicyEntry } from '../policy/types.js';
import { buildOriginalDstCluster, DEFAULT_UPSTREAM_HTTP, originalDstClusterName, type UpstreamHttpOptions } from './cluster.js';
import { buildHttpConnectionManager } from './http-connection-manager.js';
import { translateKafka } from './kafka-listener.js';
import { buildFilterChain, buildListener } from './listener.js';
import { buildRbac, destinationSubjects } from './rbac.js';
import type { SecretRef } from './sds.js';
import { translateTls } from './tls.js';

type Json = Record<string, unknown>;

export interface L7Endpoint {
  policy: EndpointPolicy;
  ips: readonly string[];
}

export interface TranslateInput {
  endpoints: readonly L7Endpoint[];
  identityIps: ReadonlyMap<number, readonly string[]>;
  ports: { portFor(kind: L7Kind, direction: Direction): number };
  accessLog?: boolean;
  /** Where the listeners bind (the datapath's proxyIpv4); default 127.0.0.1. */
  bindAddress?: string;
  /** Kafka rules are enforced (kafka-listener.ts) when the agent's Kafka processor listens here. */
  kafka?: { processorSocket: string };
  /** Upstream idle timeout and retries of the HTTP chains (default DEFAULT_UPSTREAM_HTTP, Cilium's). */
  upstream?: UpstreamHttpOptions;
}

export interface Redirect {
  endpointId: string;
  direction: Direction;
  kind: L7Kind;
  proxyPort: number;
}

export interface TranslateOutput {
  listeners: Json[];
  clusters: Json[];
  redirects: Redirect[];
  unsupported: Array<{ endpointId: string; direction: Direction; kind: L7Kind; derivedFrom: string[] }>;
  /** Kafka chains' policy keys → rules, for the Kafka processor (kafka-listener.ts). */
  kafkaPolicies?: Map<string, KafkaRule[]>;
  /** Secrets TLS interception names (tls.ts); the proxy manager turns them into SDS resources (sds.ts). */
  secretRefs?: SecretRef[];
  /** The SDS resources for secretRefs (set by the proxy manager). */
  secrets?: Json[];
}

export const SUPPORTED_L7: ReadonlySet<L7Kind> = new Set<L7Kind>(['http', 'kafka', 'tls']);

/** The identity the upstream of the ingress fallback chain carries (a client outside every identity chain). */
export const FALLBACK_IDENTITY = Identity.WORLD;

export function listenerName(kind: L7Kind, direction: Direction): string {
  return `meshd-${kind}-${direction}`;
}

const isHttpRedirect = (e: PolicyEntry): boolean => e.verdict === 'REDIRECT' && e.l7?.kind === 'http';

function safe(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_');
}

export function translateL7(input: TranslateInput): TranslateOutput {
  const redirects: Redirect[] = [];
  const unsupported: TranslateOutput['unsupported'] = [];
  const endpoints = [...input.endpoints].filter((e) => e.ips.length > 0).sort((a, b) => a.policy.endpointId.localeCompare(b.policy.endpointId));
  const marks = new Set<number>();
  const upstream = input.upstream ?? DEFAULT_UPSTREAM_HTTP;
  const chains: Record<Direction, Json[]> = { ingress: [], egress: [] };
  // Kafka only with the processor to send it to (rows no chain can express are reported by translateKafka).
  const handled = (kind: L7Kind): boolean => kind === 'http' || kind === 'tls' || (kind === 'kafka' && input.kafka !== undefined);

  for (const ep of input.endpoints) {
    for (const direction of ['ingress', 'egress'] as const) {
      const other = new Map<L7Kind, PolicyEntry[]>();
      for (const e of ep.policy[direction].entries) {
        if (e.verdict !== 'REDIRECT' || !e.l7 || handled(e.l7.kind)) continue;
        other.set(e.l7.kind, [...(other.get(e.l7.kind) ?? []), e]);
      }
      for (const [kind, entries] of other) {
        unsupported.push({ endpointId: ep.policy.endpointId, direction, kind, derivedFrom: [...new Set(entries.flatMap((e) => e.derivedFrom))].sort() });
      }
    }
  }

  const hcm = (statPrefix: string, rbac: Json[], identity: number): Json => {
    marks.add(identity);
    return buildHttpConnectionManager({ statPrefix: safe(statPrefix), rbac, cluster: originalDstClusterName(identity), accessLog: input.accessLog ?? false, retries: upstream.retries });
  };
  const chain = (name: string, m: { destinationIps?: readonly string[]; sourceIps?: readonly string[] }, typedConfig: Json): Json =>
    buildFilterChain({ name, ...m, networkFilters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: typedConfig }] });
  const ipsOf = (id: number): readonly string[] => input.identityIps.get(id) ?? [];

  const ingressL7 = endpoints.filter((ep) => ep.policy.ingress.entries.some(isHttpRedirect));
  const egressL7 = endpoints.filter((ep) => ep.policy.egress.entries.some(isHttpRedirect));

  for (const d of ingressL7) {
    const id = d.policy.endpointId;
    const pol = d.policy.ingress;
    const identities = [...new Set(pol.entries.filter(isHttpRedirect).map((e) => e.remoteIdentity))].filter((r) => r !== 0).sort((a, b) => a - b);
    for (const r of identities) {
      if (ipsOf(r).length === 0) continue; // no address carries this identity yet: nothing to allow
      const rbac = buildRbac({ entries: pol.entries, defaultDeny: pol.defaultDeny, subjects: [{ identity: r, match: null }] });
      chains.ingress.push(chain(`${id}/ingress/id${r}`, { destinationIps: d.ips, sourceIps: ipsOf(r) }, hcm(`${id}_ingress_id${r}`, [rbac], r)));
    }
    // Every other client: the wildcard rows (if any; otherwise every request is denied with 403).
    const rbac = buildRbac({ entries: pol.entries, defaultDeny: pol.defaultDeny, subjects: [] });
    chains.ingress.push(chain(`${id}/ingress/any`, { destinationIps: d.ips }, hcm(`${id}_ingress_any`, [rbac], FALLBACK_IDENTITY)));
    redirects.push({ endpointId: id, direction: 'ingress', kind: 'http', proxyPort: input.ports.portFor('http', 'ingress') });
  }

  for (const s of egressL7) {
    const id = s.policy.endpointId;
    const pol = s.policy.egress;
    const subjects = destinationSubjects(pol.entries, ipsOf);
    const egressRbac = buildRbac({ entries: pol.entries, defaultDeny: pol.defaultDeny, subjects });
    const me = s.policy.identity;
    chains.egress.push(chain(`${id}/egress`, { sourceIps: s.ips }, hcm(`${id}_egress`, [egressRbac], me)));
    for (const d of ingressL7) {
      const dp = d.policy.ingress;
      const ingressRbac = buildRbac({ entries: dp.entries, defaultDeny: dp.defaultDeny, subjects: [{ identity: me, match: null }] });
      chains.egress.push(
        chain(`${id}/egress/to/${d.policy.endpointId}`, { destinationIps: d.ips, sourceIps: s.ips }, hcm(`${id}_egress_to_${d.policy.endpointId}`, [egressRbac, ingressRbac], me)),
      );
    }
    redirects.push({ endpointId: id, direction: 'egress', kind: 'http', proxyPort: input.ports.portFor('http', 'egress') });
  }

  const listeners: Json[] = [];
  for (const direction of ['egress', 'ingress'] as const) {
    if (chains[direction].length === 0) continue;
    const l: Parameters<typeof buildListener>[0] = { name: listenerName('http', direction), port: input.ports.portFor('http', direction), filterChains: chains[direction] };
    if (input.bindAddress !== undefined) l.bindAddress = input.bindAddress;
    listeners.push(buildListener(l));
  }
  const clusters = [...marks].sort((a, b) => a - b).map((m) => buildOriginalDstCluster(m, upstream.idleTimeoutS));
  let kafkaPolicies: Map<string, KafkaRule[]> | undefined;
  if (input.kafka) {
    const ports = { ingress: input.ports.portFor('kafka', 'ingress'), egress: input.ports.portFor('kafka', 'egress') };
    const k = translateKafka({ endpoints, identityIps: input.identityIps, ports, processorSocket: input.kafka.processorSocket, ...(input.bindAddress !== undefined ? { bindAddress: input.bindAddress } : {}) });
    listeners.push(...k.listeners);
    clusters.push(...k.clusters);
    for (const r of k.redirects) redirects.push({ ...r, kind: 'kafka', proxyPort: ports[r.direction] });
    for (const u of k.unsupported) unsupported.push({ ...u, kind: 'kafka' });
    kafkaPolicies = k.policies;
  }
  const secretRefs = addTls(input, listeners, clusters, redirects);
  redirects.sort((a, b) => a.endpointId.localeCompare(b.endpointId) || a.direction.localeCompare(b.direction));
  return { listeners, clusters, redirects, unsupported, ...(kafkaPolicies ? { kafkaPolicies } : {}), ...(secretRefs.length > 0 ? { secretRefs } : {}) };
}

/** TLS rules (tls.ts): their listeners, redirects and the clusters not already present (Kafka uses the same TCP ones); returns the secrets named. */
function addTls(input: TranslateInput, listeners: Json[], clusters: Json[], redirects: Redirect[]): SecretRef[] {
  const t = translateTls({ endpoints: input.endpoints, identityIps: input.identityIps, ports: input.ports, accessLog: input.accessLog ?? false, upstream: input.upstream ?? DEFAULT_UPSTREAM_HTTP, ...(input.bindAddress !== undefined ? { bindAddress: input.bindAddress } : {}) });
  const have = new Set(clusters.map((c) => c.name));
  listeners.push(...t.listeners);
  clusters.push(...t.clusters.filter((c) => !have.has(c.name)));
  redirects.push(...t.redirects);
  return t.secretRefs;
}
