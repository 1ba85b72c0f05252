/**
 * A second, independent xDS client: gRPC's own (@grpc/grpc-js-xds) resolves
 * `xds:///echo` through our server over ADS (SotW, which is what it speaks),
 * on both transports, and sends real RPCs to the endpoint it learned.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { isXdsError } from '../../xds/errors.js';
import { MemoryLogger } from '../../xds/log.js';
import { XdsServer } from '../../xds/server.js';
import type { SnapshotInput } from '../../xds/snapshot.js';
import { TYPE_URL } from '../../xds/type-urls.js';
import { TRANSPORTS, edsCluster, routeConfig } from './xds-behavior.js';

grpcXds.register();

const METHOD = '/meshd.test.Echo/Say';
const identity = (b: Buffer): Buffer => b;

async function backend(t: TestContext, name: string): Promise<number> {
  const server = new grpc.Server();
  server.addService(
    { Say: { path: METHOD, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    {
      Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(`${name}:${call.request.toString()}`)),
    },
  );
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  t.after(() => server.forceShutdown());
  return port;
}

function snapshot(version: string, backendPort: number, lbPolicy = 'ROUND_ROBIN'): SnapshotInput {
  return {
    version,
    resources: {
      listeners: [
        {
          '@type': TYPE_URL.listeners,
          name: 'echo',
          api_listener: {
            api_listener: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              rds: { route_config_name: 'echo-routes', config_source: { ads: {}, resource_api_version: 'V3' } },
              http_filters: [{ name: 'router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
            },
          },
        },
      ],
      routes: [routeConfig('echo-routes', [['', 'echo']])],
      clusters: [{ ...edsCluster('echo'), lb_policy: lbPolicy }],
      endpoints: [
        {
          '@type': TYPE_URL.endpoints,
          cluster_name: 'echo',
          endpoints: [
            {
              // gRPC insists on a locality and its weight (Envoy does not)
              locality: { region: 'local' },
              load_balancing_weight: 1,
              lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: backendPort } } } }],
            },
          ],
        },
      ],
    },
  };
}

function say(client: grpc.Client, msg: string): Promise<string> {
  return new Promise((res, rej) =>
    client.makeUnaryRequest(METHOD, identity, identity, Buffer.from(msg), { deadline: Date.now() + 5000 }, (e, r) =>
      e || !r ? rej(e ?? new Error('no response')) : res(r.toString()),
    ),
  );
}

for (const transport of TRANSPORTS) {
  test(`grpc-js-xds resolves through the server over ${transport.name}: RPCs follow endpoint updates; its NACK is reported`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'meshd-xds-grpc-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const log = new MemoryLogger();
    const server = new XdsServer({ log });
    const bound = await server.listen(transport.listen(dir));
    const nodeId = `grpc-${transport.name}`;
    const b1 = await backend(t, 'one');
    const b2 = await backend(t, 'two');
    server.setSnapshot(nodeId, snapshot('v1', b1));

    const bootstrap = {
      xds_servers: [{ server_uri: bound.target, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: nodeId, locality: {} },
    };
    const client = new grpc.Client('xds:///echo', grpc.credentials.createInsecure(), {
      'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
    });
    t.after(async () => {
      client.close();
      await server.close();
    });

    assert.equal(await say(client, 'hi'), 'one:hi');
    await server.waitForAck(nodeId, 'v1', { timeoutMs: 10_000 });
    const st = server.status(nodeId);
    for (const k of ['listeners', 'routes', 'clusters', 'endpoints'] as const) assert.equal(st?.types[k]?.acked?.version, 'v1', k);

    server.setSnapshot(nodeId, snapshot('v2', b2));
    await server.waitForAck(nodeId, 'v2', { timeoutMs: 10_000 });
    let reply = '';
    for (let i = 0; i < 100 && reply !== 'two:hi'; i++) {
      reply = await say(client, 'hi');
      if (reply !== 'two:hi') await sleep(50);
    }
    assert.equal(reply, 'two:hi', 'RPCs moved to the new endpoint');

    // gRPC refuses an lb_policy it does not implement: a NACK from a second implementation
    server.setSnapshot(nodeId, snapshot('v3', b2, 'CLUSTER_PROVIDED'));
    const err = await server.waitForAck(nodeId, 'v3', { timeoutMs: 10_000 }).then(
      () => assert.fail('v3 should be NACKed'),
      (e: unknown) => e,
    );
    assert.ok(isXdsError(err, 'MESHD_XDS_NACKED'), String(err));
    assert.equal(server.status(nodeId)?.types.clusters?.nacked?.version, 'v3');
    assert.match(server.status(nodeId)?.types.clusters?.nacked?.message ?? '', /validation/i, 'gRPC\'s own message');
    assert.equal(log.entries.filter((e) => e.msg.includes('NACK')).length, 1);
    assert.equal(server.status(nodeId)?.types.clusters?.acked?.version, 'v1', 'v1 clusters stay the last good ones');
    assert.equal(await say(client, 'still'), 'two:still');
  });
}
