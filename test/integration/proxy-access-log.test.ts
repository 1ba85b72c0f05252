/**
 * Access logs from a real Envoy arrive over gRPC ALS on a unix socket and
 * become L7 flow records, denials included.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { ALS_CLUSTER } from '../../envoy/bootstrap.js';
import { freePort, httpUpstream, listenerPort, startEnvoy, staticCluster } from '../helpers/envoy.js';
import { AccessLogServer, type L7FlowRecord } from '../../src/proxy/access-log-server.js';
import { buildHttpConnectionManager } from '../../src/proxy/http-connection-manager.js';
import { buildRbac } from '../../src/proxy/rbac.js';

test('ALS: Envoy reports forwarded and denied requests to meshd', async (t) => {
  const up = await httpUpstream(t);
  const lp = await freePort();
  const records: L7FlowRecord[] = [];
  let als: AccessLogServer | undefined;
  const { sup } = await startEnvoy(t, (admin, dir) => {
    als = new AccessLogServer({ socketPath: join(dir, 'als.sock'), onRecord: (r) => records.push(r) });
    const hcm = buildHttpConnectionManager({
      statPrefix: 'default_api_ingress',
      cluster: 'upstream',
      accessLog: true,
      rbac: [
        buildRbac({
          defaultDeny: true,
          subjects: [],
          entries: [{ remoteIdentity: 0, protocol: 6, port: lp, endPort: lp, verdict: 'REDIRECT', derivedFrom: ['default/p'], l7: { kind: 'http', rules: [{ method: 'GET', path: '/ok' }] } }],
        }),
      ],
    });
    return {
      node: { id: 'als-test', cluster: 'meshd' },
      admin: { address: { pipe: { path: admin } } },
      static_resources: {
        listeners: [{ name: 'l', address: { socket_address: { address: '127.0.0.1', port_value: lp } }, enable_reuse_port: false, filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }] }],
        clusters: [
          staticCluster('upstream', up.port),
          {
            name: ALS_CLUSTER,
            type: 'STATIC',
            connect_timeout: '1s',
            load_assignment: { cluster_name: ALS_CLUSTER, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: join(dir, 'als.sock') } } } }] }] },
            typed_extension_protocol_options: {
              'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
                '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
                explicit_http_config: { http2_protocol_options: {} },
              },
            },
          },
        ],
      },
    };
  });
  assert.ok(als);
  await als.listen();
  t.after(() => als?.close());
  const port = await listenerPort(sup);
  assert.equal((await request(`http://127.0.0.1:${port}/ok`)).statusCode, 200);
  assert.equal((await request(`http://127.0.0.1:${port}/nope`, { method: 'POST' })).statusCode, 403);
  const deadline = Date.now() + 10_000;
  while (records.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const byPath = new Map(records.map((r) => [r.path, r]));
  assert.equal(byPath.get('/ok')?.verdict, 'FORWARDED');
  assert.equal(byPath.get('/ok')?.status, 200);
  assert.equal(byPath.get('/ok')?.logName, 'default_api_ingress');
  assert.equal(byPath.get('/nope')?.verdict, 'DENIED');
  assert.equal(byPath.get('/nope')?.method, 'POST');
  assert.match(byPath.get('/nope')?.details ?? '', /^rbac_access_denied/);
  assert.match(byPath.get('/nope')?.source ?? '', /^127\.0\.0\.1:\d+$/);
  assert.deepEqual({ f: als.counters.forwarded, d: als.counters.denied }, { f: 1, d: 1 });
});
