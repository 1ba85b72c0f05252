/**
 * Envoy on the per-type services instead of ADS: CDS and LDS each on their
 * own stream (envoy.service.cluster.v3.ClusterDiscoveryService/… and
 * …listener.v3.ListenerDiscoveryService/…), SotW and delta.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client } from 'undici';
import { startEnvoy } from '../helpers/xds-envoy.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { MemoryLogger } from '../../xds/log.js';
import { XdsServer } from '../../xds/server.js';
import type { SnapshotInput } from '../../xds/snapshot.js';
import { TYPE_URL } from '../../xds/type-urls.js';
import { staticCluster, upstream } from './xds-behavior.js';

function inlineListener(name: string, cluster: string): Record<string, unknown> {
  return {
    '@type': TYPE_URL.listeners,
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: name,
              route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }] },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
            },
          },
        ],
      },
    ],
  };
}

for (const mode of ['sotw', 'delta'] as const) {
  test(`xDS ${mode} on the per-type CDS and LDS services: a real Envoy gets both and serves traffic`, async (t) => {
    requirePrivileges();
    const a = await upstream(t, 'A');
    const b = await upstream(t, 'B');
    const log = new MemoryLogger();
    const server = new XdsServer({ log });
    t.after(() => server.close());
    const bound = await server.listen('127.0.0.1:0');
    const nodeId = `per-type-${mode}`;
    const snap = (version: string, cluster: string): SnapshotInput => ({
      version,
      resources: { clusters: [staticCluster('a', a.port), staticCluster('b', b.port)], listeners: [inlineListener('web', cluster)] },
    });
    server.setSnapshot(nodeId, snap('v1', 'a'));
    const envoy = await startEnvoy({ xds: bound.address, mode, nodeId, perType: true });
    t.after(() => envoy.stop());
    await server.waitForAck(nodeId, 'v1', { timeoutMs: 15_000 });
    const st = server.status(nodeId);
    assert.equal(st?.streams, 2, 'one stream per type');
    assert.equal(st?.types.clusters?.acked?.version, 'v1');
    assert.equal(st?.types.listeners?.acked?.version, 'v1');
    assert.equal(await (await fetch(`http://127.0.0.1:${await envoy.listenerPort('web')}/x`)).text(), 'A /x');

    server.setSnapshot(nodeId, snap('v2', 'b'));
    await server.waitForAck(nodeId, 'v2', { timeoutMs: 15_000 });
    // the listener changed (inline routes): Envoy replaced it; a new connection sees the new route
    // (fetch() would reuse its pooled connection, which drains with the old listener)
    const fresh = new Client(`http://127.0.0.1:${await envoy.listenerPort('web')}`);
    t.after(() => fresh.close());
    const r = await fresh.request({ path: '/y', method: 'GET' });
    assert.equal(await r.body.text(), 'B /y');
    assert.equal(log.entries.filter((e) => e.level === 'warn').length, 0);
  });
}
