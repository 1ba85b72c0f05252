import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AckTracker } from './ack-tracker.js';
import { SnapshotCache } from './cache.js';
import { MemoryLogger } from './log.js';
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from './messages.js';
import { DeltaStream } from './stream-delta.js';
import type { StreamFailure } from './stream.js';
import { basicSnapshot, cla, cluster, rdsListener, routes } from './test-resources.js';
import { TYPE_URL } from './type-urls.js';

const node = { id: 'n1', cluster: 'test' };

function harness() {
  const cache = new SnapshotCache();
  const sent: DeltaDiscoveryResponse[] = [];
  const failures: Array<{ code: StreamFailure; message: string }> = [];
  const log = new MemoryLogger();
  const tracker = new AckTracker();
  const stream = new DeltaStream({ source: cache, sink: { send: (r) => sent.push(r), fail: (code, message) => failures.push({ code, message }) }, tracker, log });
  const req = (r: Partial<DeltaDiscoveryRequest>): void =>
    stream.receive({
      type_url: '',
      resource_names_subscribe: [],
      resource_names_unsubscribe: [],
      initial_resource_versions: {},
      response_nonce: '',
      ...r,
    });
  return { cache, sent, failures, log, tracker, stream, req };
}

const names = (r: DeltaDiscoveryResponse | undefined): string[] => (r?.resources ?? []).map((x) => x.name).sort();

test('delta: wildcard first request gets everything with per-resource versions; ACK; only changes follow', () => {
  const h = harness();
  const s1 = h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.clusters });
  assert.deepEqual(names(h.sent[0]), ['a', 'b']);
  assert.equal(h.sent[0]?.resources[0]?.version, s1.snapshot.types.clusters.items.get(h.sent[0]?.resources[0]?.name ?? '')?.version);
  assert.equal(h.sent[0]?.system_version_info, 'v1');
  h.req({ type_url: TYPE_URL.clusters, response_nonce: h.sent[0]?.nonce });
  assert.equal(h.tracker.status('n1')?.types.clusters?.acked?.version, 'v1');
  const v2 = basicSnapshot('v2');
  v2.resources.clusters = [cluster('a', true), { ...cluster('b'), connect_timeout: '2s' }, cluster('c')];
  h.cache.setSnapshot('n1', v2);
  assert.deepEqual(names(h.sent[1]), ['b', 'c'], 'a unchanged is not resent');
  assert.deepEqual(h.sent[1]?.removed_resources, []);
});

test('delta: initial_resource_versions are honoured: a reconnecting client gets only what changed and what is gone', () => {
  const h = harness();
  const s1 = h.cache.setSnapshot('n1', basicSnapshot('v1'));
  const a = s1.snapshot.types.clusters.items.get('a')?.version ?? '';
  h.req({ node, type_url: TYPE_URL.clusters, initial_resource_versions: { a, b: 'stale', old: 'x' } });
  assert.deepEqual(names(h.sent[0]), ['b']);
  assert.deepEqual(h.sent[0]?.removed_resources, ['old']);
});

test('delta: subscribe and unsubscribe by name at any time', () => {
  const h = harness();
  const input = basicSnapshot('v1');
  input.resources.endpoints = [cla('a'), cla('x')];
  h.cache.setSnapshot('n1', input);
  h.req({ node, type_url: TYPE_URL.endpoints, resource_names_subscribe: ['a'] });
  assert.deepEqual(names(h.sent[0]), ['a']);
  h.req({ type_url: TYPE_URL.endpoints, response_nonce: h.sent[0]?.nonce, resource_names_subscribe: ['x'] });
  assert.deepEqual(names(h.sent[1]), ['x']);
  h.req({ type_url: TYPE_URL.endpoints, response_nonce: h.sent[1]?.nonce, resource_names_unsubscribe: ['a'] });
  const v2 = basicSnapshot('v2');
  v2.resources.endpoints = [cla('a', 1), cla('x')];
  h.cache.setSnapshot('n1', v2);
  assert.equal(h.sent.length, 3, 'a change of a type version is announced');
  assert.deepEqual(names(h.sent[2]), [], 'but a (unsubscribed) is not sent');
});

test('delta: removal of a resource the client holds goes out as removed_resources', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.listeners });
  h.req({ type_url: TYPE_URL.listeners, response_nonce: h.sent[0]?.nonce });
  const v2 = basicSnapshot('v2');
  v2.resources.listeners = [];
  h.cache.setSnapshot('n1', v2);
  assert.deepEqual(h.sent[1]?.removed_resources, ['l']);
  assert.deepEqual(names(h.sent[1]), []);
});

test('delta: a NACK is recorded and logged once, and not answered by a resend', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.clusters });
  h.req({ type_url: TYPE_URL.clusters, response_nonce: h.sent[0]?.nonce, error_detail: { code: 13, message: 'nope' } });
  assert.equal(h.sent.length, 1);
  assert.equal(h.tracker.status('n1')?.types.clusters?.nacked?.message, 'nope');
  assert.equal(h.log.entries.filter((e) => e.level === 'warn').length, 1);
});

test('delta/ADS make-before-break: removed clusters are withheld until listeners and routes are ACKed', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  const last: Record<string, string> = {};
  const track = (): void => {
    for (const r of h.sent) last[r.type_url] = r.nonce;
  };
  h.req({ node, type_url: TYPE_URL.clusters });
  h.req({ type_url: TYPE_URL.listeners });
  h.req({ type_url: TYPE_URL.routes, resource_names_subscribe: ['r', 'r2'] });
  track();
  for (const t of [TYPE_URL.clusters, TYPE_URL.listeners, TYPE_URL.routes]) h.req({ type_url: t, response_nonce: last[t] });
  h.sent.length = 0;

  const v2 = basicSnapshot('v2');
  v2.resources.clusters = [cluster('a', true), cluster('c')];
  v2.resources.listeners = [rdsListener('l', 'r'), rdsListener('l2', 'r2')];
  v2.resources.routes = [routes('r', 'a'), routes('r2', 'c')];
  h.cache.setSnapshot('n1', v2);
  assert.deepEqual(
    h.sent.map((r) => `${r.type_url.split('.').pop()} +${r.resources.map((x) => x.name).join(',')} -${r.removed_resources.join(',')}`),
    ['Cluster +c -', 'Listener +l2 -', 'RouteConfiguration +r2 -'],
  );
  track();
  h.req({ type_url: TYPE_URL.clusters, response_nonce: last[TYPE_URL.clusters] });
  h.req({ type_url: TYPE_URL.listeners, response_nonce: last[TYPE_URL.listeners] });
  assert.equal(h.sent.length, 3, 'routes not ACKed yet');
  h.req({ type_url: TYPE_URL.routes, response_nonce: last[TYPE_URL.routes] });
  assert.equal(h.sent.length, 4);
  assert.deepEqual(h.sent[3]?.removed_resources, ['b']);
  assert.equal(h.sent[3]?.system_version_info, 'v2');
});

test('delta: when an EDS cluster the client has changes, its unchanged load assignment is sent again', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.clusters });
  h.req({ type_url: TYPE_URL.endpoints, resource_names_subscribe: ['a'] });
  for (const r of [...h.sent]) h.req({ type_url: r.type_url, response_nonce: r.nonce });
  h.sent.length = 0;
  const v2 = basicSnapshot('v2');
  v2.resources.clusters = [{ ...cluster('a', true), connect_timeout: '2s' }, cluster('b')];
  h.cache.setSnapshot('n1', v2);
  assert.deepEqual(
    h.sent.map((r) => `${r.type_url.split('.').pop()} +${r.resources.map((x) => x.name).join(',')}`),
    ['Cluster +a', 'ClusterLoadAssignment +a'],
  );
});

test('delta: subscribing again to a name the client has asks for it again', () => {
  const h = harness();
  h.cache.setSnapshot('n1', basicSnapshot('v1'));
  h.req({ node, type_url: TYPE_URL.endpoints, resource_names_subscribe: ['a'] });
  h.req({ type_url: TYPE_URL.endpoints, response_nonce: h.sent[0]?.nonce });
  assert.equal(h.sent.length, 1);
  h.req({ type_url: TYPE_URL.endpoints, resource_names_subscribe: ['a'] });
  assert.deepEqual(names(h.sent[1]), ['a']);
});
