/**
 * Small Envoy resources for the package's own unit tests.
 */
import type { SnapshotInput } from './snapshot.js';
import { TYPE_URL } from './type-urls.js';

export function cluster(name: string, eds = false): Record<string, unknown> {
  return eds
    ? { '@type': TYPE_URL.clusters, name, type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: { ads: {} } } }
    : { '@type': TYPE_URL.clusters, name, type: 'STATIC', connect_timeout: '1s' };
}

export function cla(name: string, port = 8080): Record<string, unknown> {
  return {
    '@type': TYPE_URL.endpoints,
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  };
}

export function rdsListener(name: string, route: string): Record<string, unknown> {
  return {
    '@type': TYPE_URL.listeners,
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
    filter_chains: [
      {
        filters: [
          {
            name: 'hcm',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: name,
              rds: { route_config_name: route, config_source: { ads: {} } },
            },
          },
        ],
      },
    ],
  };
}

export function routes(name: string, cluster: string): Record<string, unknown> {
  return {
    '@type': TYPE_URL.routes,
    name,
    virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }],
  };
}

/** clusters a (EDS) and b, endpoints a, listener l → routes r → a. */
export function basicSnapshot(version: string): SnapshotInput {
  return {
    version,
    resources: {
      clusters: [cluster('a', true), cluster('b')],
      endpoints: [cla('a')],
      listeners: [rdsListener('l', 'r')],
      routes: [routes('r', 'a')],
    },
  };
}
