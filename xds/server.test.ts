import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { isXdsError } from './errors.js';
import { MemoryLogger } from './log.js';
import { type DiscoveryRequest, type DiscoveryResponse, deltaCodec, sotwCodec } from './messages.js';
import { XdsServer } from './server.js';
import { basicSnapshot, cluster } from './test-resources.js';
import { TYPE_URL } from './type-urls.js';

const identity = (b: Buffer): Buffer => b;
const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

async function started(t: TestContext, listen = '127.0.0.1:0'): Promise<{ server: XdsServer; client: grpc.Client; log: MemoryLogger }> {
  const log = new MemoryLogger();
  const server = new XdsServer({ log });
  const bound = await server.listen(listen);
  const client = new grpc.Client(bound.target, grpc.credentials.createInsecure());
  t.after(async () => {
    client.close();
    await server.close();
  });
  return { server, client, log };
}

interface RawStream {
  responses: DiscoveryResponse[];
  write(req: Partial<DiscoveryRequest>): void;
  writeRaw(b: Buffer): void;
  next(): Promise<DiscoveryResponse>;
  status: Promise<grpc.StatusObject>;
  end(): void;
}

function sotwStream(client: grpc.Client, path = ADS): RawStream {
  const codec = sotwCodec();
  const call = client.makeBidiStreamRequest(path, identity, identity);
  const responses: DiscoveryResponse[] = [];
  const waiting: Array<(r: DiscoveryResponse) => void> = [];
  let read = 0;
  call.on('data', (b: Buffer) => {
    const r = codec.decodeResponse(b);
    responses.push(r);
    waiting.shift()?.(r);
  });
  const status = new Promise<grpc.StatusObject>((res) => {
    call.on('status', res);
    call.on('error', () => {});
  });
  return {
    responses,
    write: (req) => call.write(codec.encodeRequest({ version_info: '', resource_names: [], type_url: '', response_nonce: '', ...req })),
    writeRaw: (b) => call.write(b),
    next: () =>
      new Promise((res) => {
        const have = responses[read];
        if (have) {
          read++;
          res(have);
        } else {
          waiting.push((r) => {
            read++;
            res(r);
          });
        }
      }),
    status,
    end: () => call.cancel(),
  };
}

const node = { id: 'n1', cluster: 'c' };

test('server: garbage on one stream ends it with INVALID_ARGUMENT; another stream keeps working', async (t) => {
  const { server, client } = await started(t);
  server.setSnapshot('n1', basicSnapshot('v1'));
  const good = sotwStream(client);
  t.after(() => good.end());
  good.write({ node, type_url: TYPE_URL.clusters });
  const first = await good.next();
  assert.equal(first.version_info, 'v1');

  const bad = sotwStream(client);
  bad.writeRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  const st = await bad.status;
  assert.equal(st.code, grpc.status.INVALID_ARGUMENT);
  assert.match(st.details, /undecodable DiscoveryRequest/);

  good.write({ type_url: TYPE_URL.clusters, version_info: 'v1', response_nonce: first.nonce });
  const v2 = basicSnapshot('v2');
  v2.resources.clusters = [cluster('a', true)];
  server.setSnapshot('n1', v2);
  const second = await good.next();
  assert.equal(second.version_info, 'v2', 'the good stream still gets updates');
  assert.match(await server.metrics.registry.getSingleMetricAsString('meshd_xds_stream_errors_total'), /code="INVALID_ARGUMENT"\} 1/);
});

test('server: an unknown type URL gets INVALID_ARGUMENT naming it', async (t) => {
  const { client } = await started(t);
  const s = sotwStream(client);
  s.write({ node, type_url: 'type.googleapis.com/envoy.service.runtime.v3.Runtime' });
  const st = await s.status;
  assert.equal(st.code, grpc.status.INVALID_ARGUMENT);
  assert.match(st.details, /unknown type_url "type\.googleapis\.com\/envoy\.service\.runtime\.v3\.Runtime"/);
});

test('server: per-type services (CDS stream without type_url, LDS delta, unary Fetch) over a unix socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-xds-srv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { server, client } = await started(t, `unix:${join(dir, 'a', 'xds.sock')}`);
  server.setSnapshot('n1', basicSnapshot('v1'));

  const cds = sotwStream(client, '/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters');
  t.after(() => cds.end());
  cds.write({ node });
  const r = await cds.next();
  assert.equal(r.type_url, TYPE_URL.clusters);
  assert.equal(r.resources.length, 2);

  const dcodec = deltaCodec();
  const lds = client.makeBidiStreamRequest('/envoy.service.listener.v3.ListenerDiscoveryService/DeltaListeners', identity, identity);
  t.after(() => lds.cancel());
  lds.on('error', () => {});
  const delta = new Promise<Buffer>((res) => lds.once('data', res));
  lds.write(dcodec.encodeRequest({ node, type_url: '', resource_names_subscribe: [], resource_names_unsubscribe: [], initial_resource_versions: {}, response_nonce: '' }));
  const dr = dcodec.decodeResponse(await delta);
  assert.deepEqual(dr.resources.map((x) => x.name), ['l']);
  assert.match(dr.resources[0]?.version ?? '', /^[0-9a-f]{16}$/);

  const codec = sotwCodec();
  const fetched = await new Promise<Buffer>((res, rej) =>
    client.makeUnaryRequest(
      '/envoy.service.route.v3.RouteDiscoveryService/FetchRoutes',
      identity,
      identity,
      codec.encodeRequest({ node, version_info: '', resource_names: ['r'], type_url: '', response_nonce: '' }),
      (e, b) => (e || !b ? rej(e ?? new Error('empty')) : res(b)),
    ),
  );
  const fr = codec.decodeResponse(fetched);
  assert.equal(fr.version_info, 'v1');
  assert.equal(fr.resources.length, 1);
  assert.equal(fr.type_url, TYPE_URL.routes);
});

test('server: waitForAck times out, aborts, and resolves on ACK', async (t) => {
  const { server, client } = await started(t);
  server.setSnapshot('n1', basicSnapshot('v1'));
  await assert.rejects(server.waitForAck('n1', 'v1', { timeoutMs: 50 }), (e: unknown) => isXdsError(e, 'MESHD_XDS_ACK_TIMEOUT'));
  const ac = new AbortController();
  const aborted = server.waitForAck('n1', 'v1', { signal: ac.signal });
  ac.abort();
  await assert.rejects(aborted, (e: unknown) => isXdsError(e, 'MESHD_XDS_ABORTED'));

  const s = sotwStream(client);
  t.after(() => s.end());
  const waiting = server.waitForAck('n1', 'v1', { kinds: ['clusters'], timeoutMs: 5000 });
  s.write({ node, type_url: TYPE_URL.clusters });
  const r = await s.next();
  s.write({ type_url: TYPE_URL.clusters, version_info: r.version_info, response_nonce: r.nonce });
  await waiting;
  assert.equal(server.status('n1')?.streams, 1);
  assert.match(await server.metrics.registry.getSingleMetricAsString('meshd_xds_streams'), /mode="sotw"\} 1/);
});

test('server: a snapshot that does not encode is rejected with its path and counted; the previous stays', async (t) => {
  const { server } = await started(t);
  server.setSnapshot('n1', basicSnapshot('v1'));
  const bad = basicSnapshot('v2');
  bad.resources.clusters = [{ ...cluster('a', true), conect_timeout: '1s' }];
  assert.throws(
    () => server.setSnapshot('n1', bad),
    (e: unknown) => isXdsError(e, 'MESHD_XDS_SNAPSHOT_INVALID') && e.problems[0] === 'resources.clusters[0].conect_timeout: unknown field of envoy.config.cluster.v3.Cluster',
  );
  assert.equal(server.cache.getSnapshot('n1')?.snapshot.version, 'v1');
  assert.match(await server.metrics.registry.getSingleMetricAsString('meshd_xds_snapshots_total'), /result="rejected"\} 1/);
});
