import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SnapshotCache } from './cache.js';
import { isXdsError } from './errors.js';
import { basicSnapshot, cla, cluster, rdsListener, routes } from './test-resources.js';
import type { SotwWatchResponse } from './watch.js';

const node = { id: 'n1', cluster: 'c' };

test('setSnapshot: per-type versions change only with content; unchanged types keep their version', () => {
  const cache = new SnapshotCache();
  const s1 = cache.setSnapshot('n1', basicSnapshot('v1'));
  assert.deepEqual(s1.typeVersions, { clusters: 'v1', endpoints: 'v1', listeners: 'v1', routes: 'v1', secrets: 'v1' });
  const input = basicSnapshot('v2');
  input.resources.clusters = [cluster('a', true)];
  const s2 = cache.setSnapshot('n1', input);
  assert.deepEqual(s2.typeVersions, { clusters: 'v2', endpoints: 'v1', listeners: 'v1', routes: 'v1', secrets: 'v1' });
  assert.ok(s2.seq > s1.seq);
  // the same version string with different content still changes the type version
  const again = basicSnapshot('v2');
  const s3 = cache.setSnapshot('n1', again);
  assert.match(s3.typeVersions.clusters, /^v2-[0-9a-f]{8}$/);
  assert.equal(s3.typeVersions.listeners, 'v1');
});

test('setSnapshot: an inconsistent snapshot is refused and the previous one stays', () => {
  const cache = new SnapshotCache();
  cache.setSnapshot('n1', basicSnapshot('v1'));
  const bad = basicSnapshot('v2');
  bad.resources.routes = [];
  bad.resources.endpoints = [];
  assert.throws(
    () => cache.setSnapshot('n1', bad),
    (e: unknown) =>
      isXdsError(e, 'MESHD_XDS_SNAPSHOT_INCONSISTENT') &&
      e.problems.some((p) => p.includes('route configuration "r" is not in the snapshot')) &&
      e.problems.some((p) => p.includes('EDS load assignment "a" is not in the snapshot')),
  );
  assert.equal(cache.getSnapshot('n1')?.snapshot.version, 'v1');
});

test('createWatch: answers at once when the client is behind, waits when it is current, fires on a newer snapshot', () => {
  const cache = new SnapshotCache();
  const got: SotwWatchResponse[] = [];
  const cancelEarly = cache.createWatch({ node, kind: 'clusters', wildcard: true, names: new Set(), sentVersion: '', sentSubscription: '' }, (r) => got.push(r));
  assert.equal(got.length, 0, 'no snapshot yet: the watch stays open');
  cache.setSnapshot('n1', basicSnapshot('v1'));
  assert.equal(got.length, 1);
  assert.deepEqual(got[0]?.resources.map((r) => r.name).sort(), ['a', 'b']);
  cancelEarly(); // cancelling a fired watch is harmless

  const sub = { node, kind: 'clusters' as const, wildcard: true, names: new Set<string>(), sentVersion: 'v1', sentSubscription: '*|' };
  cache.createWatch(sub, (r) => got.push(r));
  assert.equal(got.length, 1, 'current: waits');
  assert.equal(cache.watchCount(), 1);
  const next = basicSnapshot('v2');
  next.resources.clusters = [cluster('a', true)];
  cache.setSnapshot('n1', next);
  assert.equal(got.length, 2);
  assert.equal(got[1]?.version, 'v2');
  assert.equal(cache.watchCount(), 0);
});

test('createWatch: a change of subscribed names is answered even at the same version; cancel stops a watch', () => {
  const cache = new SnapshotCache();
  cache.setSnapshot('n1', basicSnapshot('v1'));
  const got: SotwWatchResponse[] = [];
  cache.createWatch({ node, kind: 'endpoints', wildcard: false, names: new Set(['a']), sentVersion: 'v1', sentSubscription: '|' }, (r) => got.push(r));
  assert.deepEqual(got[0]?.resources.map((r) => r.name), ['a']);
  const cancel = cache.createWatch({ node, kind: 'endpoints', wildcard: false, names: new Set(['a']), sentVersion: 'v1', sentSubscription: '|a' }, (r) => got.push(r));
  cancel();
  const next = basicSnapshot('v2');
  next.resources.endpoints = [cla('a', 9090)];
  cache.setSnapshot('n1', next);
  assert.equal(got.length, 1, 'cancelled watch did not fire');
});

test('setSnapshot answers open watches in make-before-break order whatever order they were opened in', () => {
  const cache = new SnapshotCache();
  const order: string[] = [];
  for (const kind of ['routes', 'listeners', 'endpoints', 'clusters'] as const) {
    cache.createWatch({ node, kind, wildcard: true, names: new Set(), sentVersion: '', sentSubscription: '' }, () => order.push(kind));
  }
  cache.setSnapshot('n1', basicSnapshot('v1'));
  assert.deepEqual(order, ['clusters', 'endpoints', 'listeners', 'routes']);
});

test('nodeGroup: nodes of one group share a snapshot', () => {
  const cache = new SnapshotCache({ nodeGroup: (n) => n.cluster });
  cache.setSnapshot('edge', basicSnapshot('v1'));
  const got: string[] = [];
  cache.createWatch({ node: { id: 'x', cluster: 'edge' }, kind: 'listeners', wildcard: true, names: new Set(), sentVersion: '', sentSubscription: '' }, (r) =>
    got.push(r.version),
  );
  cache.createWatch({ node: { id: 'y', cluster: 'other' }, kind: 'listeners', wildcard: true, names: new Set(), sentVersion: '', sentSubscription: '' }, (r) =>
    got.push(`other ${r.version}`),
  );
  assert.deepEqual(got, ['v1']);
});

test('createDeltaWatch: sends only what differs from the client, and removals of what it holds', () => {
  const cache = new SnapshotCache();
  const snap = cache.setSnapshot('n1', basicSnapshot('v1'));
  const aVersion = snap.snapshot.types.clusters.items.get('a')?.version ?? '';
  const got: Array<{ names: string[]; removed: string[] }> = [];
  cache.createDeltaWatch(
    { node, kind: 'clusters', wildcard: true, names: new Set(), known: new Map([['a', aVersion], ['gone', 'x']]), sentVersion: '' },
    (r) => got.push({ names: r.resources.map((x) => x.name), removed: r.removed }),
  );
  assert.deepEqual(got, [{ names: ['b'], removed: ['gone'] }]);
  // a named subscription ignores names it does not hold or want
  cache.createDeltaWatch(
    { node, kind: 'clusters', wildcard: false, names: new Set(['a', 'zzz']), known: new Map(), sentVersion: '' },
    (r) => got.push({ names: r.resources.map((x) => x.name), removed: r.removed }),
  );
  assert.deepEqual(got[1], { names: ['a'], removed: [] });
  // nothing differs and the type version is what was sent: the watch waits
  let fired = false;
  cache.createDeltaWatch(
    { node, kind: 'listeners', wildcard: true, names: new Set(), known: new Map([['l', snap.snapshot.types.listeners.items.get('l')?.version ?? '']]), sentVersion: 'v1' },
    () => (fired = true),
  );
  assert.equal(fired, false);
  cache.setSnapshot('n1', { ...basicSnapshot('v2'), resources: { ...basicSnapshot('v2').resources, listeners: [rdsListener('l', 'r'), rdsListener('m', 'r')], routes: [routes('r', 'a')] } });
  assert.equal(fired, true);
});
