/**
 * TLS SNI rules (`toPorts[].serverNames`, REDIRECT rows of kind `tls`) → the
 * node Envoy's `meshd-tls-ingress` / `meshd-tls-egress` listeners. Nothing is
 * decrypted: the `tls_inspector` listener filter reads the ClientHello's SNI,
 * a network RBAC filter allows the connection when a row's port and one of
 * its serverNames patterns match (`requested_server_name`, the regex of
 * serverNameRegex in src/policy/l7-match.ts, so trace and proxy agree), and
 * tcp_proxy forwards the bytes to the original destination. No SNI, another
 * SNI or no TLS at all: the RBAC filter closes the connection (fail closed).
 *
 * The chains follow translate.ts's HTTP chains: ingress, per local
 * destination D one chain per client identity with rows of its own and one
 * for every other client; egress, per local source S one chain (the remote
 * identity told by the destination address) and one per local destination
 * with ingress SNI rows, which checks both sides, since the datapath
 * redirects a connection only once.
 *
 *   const t = translateTls({ endpoints, identityIps, ports });
 *   // t.listeners, t.clusters (TCP ORIGINAL_DST per identity), t.redirects
 */
import { Identity } from '../datapath/maps.js';
import { serverNameRegex } from '../policy/l7-match.js';
import type { Direction, EndpointPolicy, L7Kind, PolicyEntry, TlsRule } from '../policy/types.js';
import { buildOriginalDstCluster, DEFAULT_UPSTREAM_HTTP, originalDstClusterName, upstreamHttpProtocolOptions, type UpstreamHttpOptions } from './cluster.js';
import { buildHttpConnectionManager } from './http-connection-manager.js';
import { buildTcpOriginalDstCluster, ORIGINAL_DST_FILTER_STATE, tcpOriginalDstClusterName } from './kafka-listener.js';
import { buildFilterChain, buildListener } from './listener.js';
import { buildNetworkRbac, buildRbac, cidrs, destinationSubjects, httpRulePermission, type RbacInput, type RbacSubject } from './rbac.js';
import { caSecretName, certificateSecretName, sdsSecretConfig, type SecretRef } from './sds.js';

type Json = Record<string, unknown>;

export interface TlsTranslateInput {
  endpoints: ReadonlyArray<{ policy: EndpointPolicy; ips: readonly string[] }>;
  identityIps: ReadonlyMap<number, readonly string[]>;
  ports: { portFor(kind: L7Kind, direction: Direction): number };
  bindAddress?: string;
  /** Send the intercepted HTTP requests' access logs to meshd. */
  accessLog?: boolean;
  /** Upstream idle timeout and retries of the intercepted HTTP requests (default DEFAULT_UPSTREAM_HTTP). */
  upstream?: UpstreamHttpOptions;
}

export interface TlsTranslateOutput {
  listeners: Json[];
  clusters: Json[];
  redirects: Array<{ endpointId: string; direction: Direction; kind: L7Kind; proxyPort: number }>;
  /** The secrets intercepting chains and clusters name (sds.ts turns them into SDS resources). */
  secretRefs: SecretRef[];
}

export const TLS_LISTENER_PREFIX = 'meshd-tls';

/** How long the TLS inspector waits for a ClientHello before the connection is closed. */
export const CLIENT_HELLO_TIMEOUT = '5s';

const isTlsRedirect = (e: PolicyEntry): boolean => e.verdict === 'REDIRECT' && e.l7?.kind === 'tls';

const anyOf = (alts: Json[]): Json => (alts.length === 0 ? { not_rule: { any: true } } : alts.length === 1 ? (alts[0] as Json) : { or_rules: { rules: alts } });
const sniMatch = (names: readonly string[]): Json => anyOf(names.map((n) => ({ requested_server_name: { safe_regex: { regex: serverNameRegex(n) } } })));

/** A row's SNI rules as one RBAC permission: any rule; a rule without serverNames allows every connection. */
export function sniPermission(row: PolicyEntry): Json | null {
  if (row.l7?.kind !== 'tls') return null;
  // Intercepting rules allow nothing here: their connections must go through the intercepting chain.
  const rules = row.l7.rules.filter((r) => !r.terminating);
  if (rules.some((r) => !r.serverNames || r.serverNames.length === 0)) return { any: true };
  return sniMatch(rules.flatMap((r) => r.serverNames ?? []));
}

/** An intercepted row's rules for the HTTP RBAC: per rule its SNI (if any) and any of its HTTP rules (none: any request). */
export function interceptPermission(row: PolicyEntry): Json | null {
  if (row.l7?.kind !== 'tls') return null;
  return anyOf(
    row.l7.rules.map((r) => {
      const parts: Json[] = [];
      if (r.serverNames && r.serverNames.length > 0) parts.push(sniMatch(r.serverNames));
      if (r.http && r.http.length > 0) parts.push(anyOf(r.http.map(httpRulePermission)));
      return parts.length === 0 ? { any: true } : parts.length === 1 ? (parts[0] as Json) : { and_rules: { rules: parts } };
    }),
  );
}

/** The interception contexts of a row (the first intercepting rule's; validation keeps one per port rule). */
function interceptionOf(row: PolicyEntry): { terminating: NonNullable<TlsRule['terminating']>; originating: NonNullable<TlsRule['originating']> } | undefined {
  if (row.verdict !== 'REDIRECT' || row.l7?.kind !== 'tls') return undefined;
  const r = row.l7.rules.find((x) => x.terminating && x.originating);
  return r?.terminating && r.originating ? { terminating: r.terminating, originating: r.originating } : undefined;
}

/** The ORIGINAL_DST cluster of an identity that originates TLS, verifying the destination with the CA secret. */
function originatingCluster(identity: number, caSecret: string, idleTimeoutS: number): Json {
  const c = buildOriginalDstCluster(identity, idleTimeoutS);
  return {
    ...c,
    name: `${originalDstClusterName(identity)}-tls-${safe(caSecret)}`,
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        common_tls_context: { validation_context_sds_secret_config: sdsSecretConfig(caSecret) },
      },
    },
    typed_extension_protocol_options: upstreamHttpProtocolOptions(idleTimeoutS, {
      // The upstream's SNI is the request's host (the name the client asked for), and its certificate must carry that name.
      upstream_http_protocol_options: { auto_sni: true, auto_san_validation: true },
      explicit_http_config: { http_protocol_options: {} },
    }),
  };
}

function safe(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_');
}

export function translateTls(input: TlsTranslateInput): TlsTranslateOutput {
  const endpoints = [...input.endpoints].filter((e) => e.ips.length > 0).sort((a, b) => a.policy.endpointId.localeCompare(b.policy.endpointId));
  const ipsOf = (id: number): readonly string[] => input.identityIps.get(id) ?? [];
  const upstream = input.upstream ?? DEFAULT_UPSTREAM_HTTP;
  const marks = new Set<number>();
  const chains: Record<Direction, Json[]> = { ingress: [], egress: [] };
  const redirects: TlsTranslateOutput['redirects'] = [];
  const secretRefs: SecretRef[] = [];
  const extraClusters = new Map<string, Json>();
  const rbac = (pol: EndpointPolicy['ingress'], subjects: RbacSubject[], stat: string): Json => {
    const r: RbacInput = { entries: pol.entries, defaultDeny: pol.defaultDeny, subjects, l7Permission: sniPermission };
    return { name: 'envoy.filters.network.rbac', typed_config: buildNetworkRbac(r, `${safe(stat)}_`) };
  };
  const chain = (name: string, m: { destinationIps?: readonly string[]; sourceIps?: readonly string[] }, filters: Json[], identity: number): Json => {
    marks.add(identity);
    const upstream = [
      // With bpf_sk_assign the accepted socket's local address is the original destination.
      {
        name: 'envoy.filters.network.set_filter_state',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config',
          on_new_connection: [{ object_key: ORIGINAL_DST_FILTER_STATE, format_string: { text_format_source: { inline_string: '%DOWNSTREAM_LOCAL_ADDRESS%' } } }],
        },
      },
      { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: safe(name), cluster: tcpOriginalDstClusterName(identity) } },
    ];
    return buildFilterChain({ name, ...m, networkFilters: [...filters, ...upstream] });
  };

  const ingress = endpoints.filter((ep) => ep.policy.ingress.entries.some(isTlsRedirect));
  for (const d of ingress) {
    const id = d.policy.endpointId;
    const pol = d.policy.ingress;
    const own = [...new Set(pol.entries.filter(isTlsRedirect).map((e) => e.remoteIdentity))].filter((r) => r !== 0 && ipsOf(r).length > 0).sort((a, b) => a - b);
    for (const r of own) chains.ingress.push(chain(`${id}/ingress/tls/id${r}`, { destinationIps: d.ips, sourceIps: ipsOf(r) }, [rbac(pol, [{ identity: r, match: null }], `${id}_in_${r}`)], r));
    chains.ingress.push(chain(`${id}/ingress/tls/any`, { destinationIps: d.ips }, [rbac(pol, [], `${id}_in_any`)], Identity.WORLD));
    redirects.push({ endpointId: id, direction: 'ingress', kind: 'tls', proxyPort: input.ports.portFor('tls', 'ingress') });
  }

  for (const s of endpoints.filter((ep) => ep.policy.egress.entries.some(isTlsRedirect))) {
    const id = s.policy.endpointId;
    const pol = s.policy.egress;
    const subjects = destinationSubjects(pol.entries, ipsOf);
    const me = s.policy.identity;
    const egressRbac = rbac(pol, subjects, `${id}_out`);
    chains.egress.push(chain(`${id}/egress/tls`, { sourceIps: s.ips }, [egressRbac], me));
    // TLS interception: per intercepted port a chain that terminates TLS, applies the HTTP rules and
    // originates TLS again (destination_port is matched before addresses, so it takes that port).
    for (const row of pol.entries) {
      const tls = interceptionOf(row);
      if (!tls) continue;
      const cert = certificateSecretName(tls.terminating);
      const ca = caSecretName(tls.originating);
      secretRefs.push({ name: cert, use: 'certificate', ref: tls.terminating, policies: row.derivedFrom, field: 'terminatingTLS' });
      secretRefs.push({ name: ca, use: 'ca', ref: tls.originating, policies: row.derivedFrom, field: 'originatingTLS' });
      const cluster = originatingCluster(me, ca, upstream.idleTimeoutS);
      extraClusters.set(String(cluster.name), cluster);
      const rbacHttp = buildRbac({ entries: pol.entries, defaultDeny: pol.defaultDeny, subjects, l7Permission: interceptPermission });
      const hcm = buildHttpConnectionManager({ statPrefix: safe(`${id}_egress_tls_${row.port}`), rbac: [rbacHttp], cluster: String(cluster.name), accessLog: input.accessLog ?? false, retries: upstream.retries });
      const c = buildFilterChain({ name: `${id}/egress/tls/intercept/id${row.remoteIdentity}/${row.port}`, sourceIps: s.ips, networkFilters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] });
      const match = c.filter_chain_match as Json;
      match.destination_port = row.port;
      if (row.remoteIdentity !== 0 && ipsOf(row.remoteIdentity).length > 0) match.prefix_ranges = cidrs(ipsOf(row.remoteIdentity));
      c.transport_socket = {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
          common_tls_context: { tls_certificate_sds_secret_configs: [sdsSecretConfig(cert)], alpn_protocols: ['http/1.1'] },
        },
      };
      chains.egress.push(c);
    }
    for (const d of ingress) {
      const inRbac = rbac(d.policy.ingress, [{ identity: me, match: null }], `${id}_to_${d.policy.endpointId}`);
      chains.egress.push(chain(`${id}/egress/to/${d.policy.endpointId}/tls`, { destinationIps: d.ips, sourceIps: s.ips }, [egressRbac, inRbac], me));
    }
    redirects.push({ endpointId: id, direction: 'egress', kind: 'tls', proxyPort: input.ports.portFor('tls', 'egress') });
  }

  const listeners: Json[] = [];
  for (const direction of ['egress', 'ingress'] as const) {
    if (chains[direction].length === 0) continue;
    const l: Parameters<typeof buildListener>[0] = { name: `${TLS_LISTENER_PREFIX}-${direction}`, port: input.ports.portFor('tls', direction), filterChains: chains[direction] };
    if (input.bindAddress !== undefined) l.bindAddress = input.bindAddress;
    const listener = buildListener(l);
    listener.listener_filters = [{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' } }];
    listener.listener_filters_timeout = CLIENT_HELLO_TIMEOUT;
    listeners.push(listener);
  }
  return { listeners, clusters: [...[...marks].sort((a, b) => a - b).map(buildTcpOriginalDstCluster), ...extraClusters.values()], redirects, secretRefs };
}
