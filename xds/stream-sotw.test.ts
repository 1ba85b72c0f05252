import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AckTracker } from './ack-tracker.js';
import { SnapshotCache } from './cache.js';
import { MemoryLogger } from './log.js';
import type { DiscoveryRequest, DiscoveryResponse } from './messages.js';
import { XdsMetrics } from './metrics.js';
import { SotwStream } from './stream-sotw.js';
import type { StreamFailure } from './stream.js';
import { basicSnapshot, cluster, rdsListener, routes } from './test-resources.js';
import { TYPE_URL } from './type-urls.js';

const node = { id: 'n1', cluster: 'test' };

function harness(opts: { fixedKind?: 'clusters' } = {}) {
  const cache = new SnapshotCache();
  const sent: DiscoveryResponse[] = [];
  const failures: Array<{ code: StreamFailure; message: string }> = [];
  const log = new MemoryLogger();
  const tracker = new AckTracker();
  const metrics = new XdsMetrics();
  const stream = new SotwStream({ source: cache, sink: { send: (r) => sent.push(r), fail: (code, message) => failures.push({ code, message }) }, tracker, log, metrics, ...opts });
  const req = (r: Partial<DiscoveryRequest>): void =>
    stream.receive({ version_info: '', resource_names: [], type_url: '', response_nonce: '', ...r });
  return { cache, sent, failures, log, tracker, metrics, stream, req };
}

test('SotW: first request gets the snapshot; an ACK opens a watch and nothing is resent', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.clusters });
  assert.equal(h.sent.length, 1);
  assert.equal(h.sent[0]?.version_info, 'v1');
  assert.equal(h.sent[0]?.resources.length, 2);
  h.req({ type_url: TYPE_URL.clusters, version_info: 'v1', response_nonce: h.sent[0]?.nonce });
  assert.equal(h.sent.length, 1, 'ACKed: no resend');
  assert.equal(h.tracker.status('n1')?.types.clusters?.acked?.version, 'v1');
  assert.equal(h.cache.watchCount(), 1);
  h.stream.close();
  assert.equal(h.cache.watchCount(), 0, 'close cancels watches');
  h.stream.close(); // idempotent
});

test('SotW: a NACK keeps the rejected version unsent, is logged once and counted; the next snapshot goes out', async () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.clusters });
  const nonce = h.sent[0]?.nonce;
  h.req({ type_url: TYPE_URL.clusters, version_info: '', response_nonce: nonce, error_detail: { code: 3, message: 'bad cluster' } });
  assert.equal(h.sent.length, 1, 'not resent after NACK');
  const st = h.tracker.status('n1')?.types.clusters;
  assert.equal(st?.nacked?.message, 'bad cluster');
  assert.equal(st?.nacked?.version, 'v1');
  assert.equal(st?.acked, undefined);
  assert.equal(h.log.entries.filter((e) => e.level === 'warn').length, 1);
  assert.deepEqual(h.log.entries.find((e) => e.level === 'warn')?.fields, { node: 'n1', type: 'clusters', version: 'v1', snapshot: 'v1', mode: 'sotw', message: 'bad cluster' });
  assert.match(await h.metrics.registry.getSingleMetricAsString('meshd_xds_nacks_total'), /type="clusters"\} 1/);
  const next = basicSnapshot('v2');
  next.resources.clusters = [cluster('a', true)];
  h.cache.setSnapshot('n1', next);
  assert.equal(h.sent.length, 2);
  assert.equal(h.sent[1]?.version_info, 'v2');
});

test('SotW: a stale nonce is ignored', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.clusters });
  h.req({ type_url: TYPE_URL.clusters, response_nonce: 'not-the-latest', error_detail: { message: 'old' } });
  assert.equal(h.tracker.status('n1')?.types.clusters?.nacked, undefined);
  assert.ok(h.tracker.status('n1')?.types.clusters?.sent && !h.tracker.status('n1')?.types.clusters?.acked);
});

test('SotW: named subscriptions get exactly the names asked for; changing them is answered', () => {
  const h = harness();
  const input = basicSnapshot('v1');
  input.resources.routes = [routes('r', 'a'), routes('r2', 'b')];
  h.cache.setSnapshot('n1', input);
  h.req({ node, type_url: TYPE_URL.routes, resource_names: ['r'] });
  assert.equal(h.sent[0]?.resources.length, 1);
  h.req({ type_url: TYPE_URL.routes, resource_names: ['r', 'r2'], version_info: 'v1', response_nonce: h.sent[0]?.nonce });
  assert.equal(h.sent.length, 2);
  assert.equal(h.sent[1]?.resources.length, 2);
});

test('SotW: unknown type URL or a first request without node.id ends the stream with INVALID_ARGUMENT', () => {
  const a = harness();
  a.req({ type_url: TYPE_URL.clusters });
  assert.equal(a.failures[0]?.code, 'INVALID_ARGUMENT');
  assert.match(a.failures[0]?.message ?? '', /node\.id/);
  const b = harness();
  b.req({ node, type_url: 'type.googleapis.com/envoy.service.runtime.v3.Runtime' });
  assert.deepEqual(b.failures.map((f) => f.code), ['INVALID_ARGUMENT']);
  b.req({ node, type_url: TYPE_URL.clusters });
  assert.equal(b.sent.length, 0, 'closed after failing');
  const c = harness({ fixedKind: 'clusters' });
  c.req({ node, type_url: TYPE_URL.listeners });
  assert.match(c.failures[0]?.message ?? '', /on the clusters service/);
});

test('SotW/ADS make-before-break: a removed cluster stays until listeners and routes are ACKed, then goes', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  const nonces: Record<string, string> = {};
  const ack = (kind: 'clusters' | 'listeners' | 'routes', version: string): void =>
    h.req({ type_url: TYPE_URL[kind], version_info: version, response_nonce: nonces[kind], resource_names: kind === 'routes' ? ['r', 'r2'] : [] });
  const track = (): void => {
    for (const r of h.sent) for (const k of ['clusters', 'listeners', 'routes'] as const) if (r.type_url === TYPE_URL[k]) nonces[k] = r.nonce;
  };
  h.req({ node, type_url: TYPE_URL.clusters });
  h.req({ type_url: TYPE_URL.listeners });
  h.req({ type_url: TYPE_URL.routes, resource_names: ['r', 'r2'] });
  track();
  ack('clusters', 'v1');
  ack('listeners', 'v1');
  ack('routes', 'v1');
  h.sent.length = 0;

  // v2: cluster b goes away, a new cluster c and a route to it come
  const v2 = basicSnapshot('v2');
  v2.resources.clusters = [cluster('a', true), cluster('c')];
  v2.resources.listeners = [rdsListener('l', 'r'), rdsListener('l2', 'r2')];
  v2.resources.routes = [routes('r', 'a'), routes('r2', 'c')];
  h.cache.setSnapshot('n1', v2);
  assert.deepEqual(
    h.sent.map((r) => `${r.type_url.split('.').pop()} ${r.version_info} ${r.resources.length}`),
    ['Cluster v2+keep 3', 'Listener v2 2', 'RouteConfiguration v2 2'],
    'clusters first, still holding b',
  );
  track();
  ack('clusters', 'v2+keep');
  assert.equal(h.sent.length, 3, 'removal waits for listeners and routes');
  ack('listeners', 'v2');
  assert.equal(h.sent.length, 3);
  ack('routes', 'v2');
  assert.equal(h.sent.length, 4);
  assert.equal(h.sent[3]?.version_info, 'v2');
  assert.equal(h.sent[3]?.resources.length, 2, 'b removed last');
});

test('SotW: a second request with an already answered nonce is a re-request and gets an answer (Envoy re-creating a cluster)', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.endpoints, resource_names: ['a'] });
  const nonce = h.sent[0]?.nonce;
  h.req({ type_url: TYPE_URL.endpoints, resource_names: ['a'], version_info: 'v1', response_nonce: nonce });
  assert.equal(h.sent.length, 1, 'the ACK is not answered');
  h.req({ type_url: TYPE_URL.endpoints, resource_names: ['a'], version_info: 'v1', response_nonce: nonce });
  assert.equal(h.sent.length, 2, 'the re-request is');
  assert.equal(h.sent[1]?.version_info, 'v1');
  assert.equal(h.sent[1]?.resources.length, 1);
});
