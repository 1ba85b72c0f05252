/**
 * One transparent listener per proxy port. The kernel hands it connections
 * with bpf_sk_assign (see docs/ARCHITECTURE.md); `transparent` sets
 * IP_TRANSPARENT, without which the SYN-ACK from the pod's original
 * destination address has no route. Filter chains tell endpoints and
 * directions apart: ingress chains match the destination address (the local
 * endpoint being called), egress chains the source address (the local
 * endpoint calling out). A connection no chain matches is closed: the proxy
 * fails closed.
 */
import type { Direction } from '../policy/types.js';

type Json = Record<string, unknown>;

export interface FilterChainInput {
  name: string;
  direction: Direction;
  /** The local endpoint's addresses. */
  endpointIps: readonly string[];
  networkFilters: Json[];
}

function prefixRanges(ips: readonly string[]): Json[] {
  return ips.map((ip) => {
    const [addr, len] = ip.includes('/') ? (ip.split('/') as [string, string]) : [ip, ip.includes(':') ? '128' : '32'];
    return { address_prefix: addr, prefix_len: Number(len) };
  });
}

export function buildFilterChain(c: FilterChainInput): Json {
  const match = c.direction === 'ingress' ? { prefix_ranges: prefixRanges(c.endpointIps) } : { source_prefix_ranges: prefixRanges(c.endpointIps) };
  return { name: c.name, filter_chain_match: match, filters: c.networkFilters };
}

export interface ListenerInput {
  name: string;
  port: number;
  /** Where the listener binds; loopback is enough for bpf_sk_assign. */
  bindAddress?: string;
  filterChains: Json[];
  /**
   * Bind upstream connections to the client's address with this mark
   * (envoy.filters.listener.original_src), so the destination's datapath
   * sees the original source identity.
   */
  originalSrcMark?: number;
}

export function buildListener(l: ListenerInput): Json {
  const listener: Json = {
    '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
    name: l.name,
    address: { socket_address: { address: l.bindAddress ?? '127.0.0.1', port_value: l.port } },
    transparent: true,
    filter_chains: l.filterChains,
    per_connection_buffer_limit_bytes: 1024 * 1024,
  };
  if (l.originalSrcMark !== undefined) {
    listener.listener_filters = [
      {
        name: 'envoy.filters.listener.original_src',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc',
          mark: l.originalSrcMark,
        },
      },
    ];
  }
  return listener;
}
