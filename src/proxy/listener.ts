/**
 * One transparent listener per proxy port. The kernel hands it connections
 * with bpf_sk_assign (see docs/datapath.md); `transparent` sets
 * IP_TRANSPARENT, without which the SYN-ACK from the pod's original
 * destination address has no route. Filter chains tell endpoints, directions
 * and client identities apart (translate.ts). A connection no chain matches
 * is closed: the proxy fails closed.
 *
 * Envoy picks a chain by the most specific destination prefix first and only
 * then by source; it does not fall back to a less specific destination when
 * no source matches, so the translator gives every destination group every
 * source it needs.
 */
import { cidrs } from './rbac.js';

type Json = Record<string, unknown>;

export interface FilterChainInput {
  name: string;
  /** Original destination addresses (the called endpoint, ingress; a local destination, egress). */
  destinationIps?: readonly string[];
  /** Source addresses (the client identity's, ingress; the calling endpoint's, egress). */
  sourceIps?: readonly string[];
  networkFilters: Json[];
}

export function buildFilterChain(c: FilterChainInput): Json {
  const match: Json = {};
  if (c.destinationIps && c.destinationIps.length > 0) match.prefix_ranges = cidrs(c.destinationIps);
  if (c.sourceIps && c.sourceIps.length > 0) match.source_prefix_ranges = cidrs(c.sourceIps);
  return { name: c.name, filter_chain_match: match, filters: c.networkFilters };
}

export interface ListenerInput {
  name: string;
  port: number;
  /**
   * Where the listener binds (default 0.0.0.0; the datapath finds it with a lookup on (proxyIpv4, port)).
   * A wildcard bind makes Envoy read each accepted socket's own address (getsockname), which with
   * bpf_sk_assign is the original destination: no SO_ORIGINAL_DST, so no dependency on netfilter conntrack.
   */
  bindAddress?: string;
  filterChains: Json[];
}

/**
 * A connection whose own destination port is the proxy port came straight to
 * the listener, not through the datapath: closed (an original-destination
 * upstream would otherwise loop back into the proxy).
 */
function directConnectionGuard(port: number): Json {
  return {
    name: 'direct-connection',
    filter_chain_match: { destination_port: port },
    // direct_response without a response: the connection is closed at once.
    filters: [{ name: 'envoy.filters.network.direct_response', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.direct_response.v3.Config' } }],
  };
}

export function buildListener(l: ListenerInput): Json {
  return {
    '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
    name: l.name,
    address: { socket_address: { address: l.bindAddress ?? '0.0.0.0', port_value: l.port } },
    transparent: true,
    filter_chains: [directConnectionGuard(l.port), ...l.filterChains],
    per_connection_buffer_limit_bytes: 1024 * 1024,
  };
}
