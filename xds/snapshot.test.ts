import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isXdsError } from './errors.js';
import { buildSnapshot, consistencyProblems, snapshotCounts } from './snapshot.js';
import { basicSnapshot, cla, cluster } from './test-resources.js';
import { TYPE_URL } from './type-urls.js';

test('buildSnapshot: every resource encoded and versioned; counts per kind', () => {
  const s = buildSnapshot(basicSnapshot('v1'));
  assert.deepEqual(snapshotCounts(s), { clusters: 2, endpoints: 1, listeners: 1, routes: 1, secrets: 0 });
  const a = s.types.clusters.items.get('a');
  assert.equal(a?.any.type_url, TYPE_URL.clusters);
  assert.match(a?.version ?? '', /^[0-9a-f]{16}$/);
  assert.equal(buildSnapshot(basicSnapshot('v2')).types.clusters.hash, s.types.clusters.hash, 'type hash depends on content, not version');
});

test('buildSnapshot: duplicate names, missing names and misplaced types are all reported at once', () => {
  const input = basicSnapshot('v1');
  input.resources.clusters = [cluster('a'), cluster('a'), { '@type': TYPE_URL.clusters }, cla('x')];
  assert.throws(
    () => buildSnapshot(input),
    (e: unknown) =>
      isXdsError(e, 'MESHD_XDS_SNAPSHOT_INVALID') &&
      e.problems.length === 3 &&
      e.problems[0] === 'resources.clusters[1].name: duplicate name "a"' &&
      e.problems[1] === 'resources.clusters[2].name: required (it names the resource)' &&
      (e.problems[2] ?? '').startsWith('resources.clusters[3].@type: must be "type.googleapis.com/envoy.config.cluster.v3.Cluster"'),
  );
});

test('consistency: an EDS cluster may name its load assignment with eds_cluster_config.service_name', () => {
  const input = basicSnapshot('v1');
  input.resources.clusters = [{ ...cluster('a', true), eds_cluster_config: { service_name: 'svc-a', eds_config: { ads: {} } } }];
  assert.deepEqual(consistencyProblems(buildSnapshot(input)), ['clusters["a"]: EDS load assignment "svc-a" is not in the snapshot']);
  input.resources.endpoints = [cla('svc-a')];
  assert.deepEqual(consistencyProblems(buildSnapshot(input)), []);
});

test('buildSnapshot with a previous snapshot reuses the encoding of unchanged resources only', () => {
  const s1 = buildSnapshot(basicSnapshot('v1'));
  const input = basicSnapshot('v2');
  input.resources.clusters = [cluster('a', true), { ...cluster('b'), connect_timeout: '3s' }];
  const s2 = buildSnapshot(input, undefined, s1);
  assert.equal(s2.types.clusters.items.get('a')?.any, s1.types.clusters.items.get('a')?.any, 'unchanged: same encoding object');
  assert.notEqual(s2.types.clusters.items.get('b')?.version, s1.types.clusters.items.get('b')?.version, 'changed: encoded again');
  assert.deepEqual(s2, buildSnapshot(input), 'same result as a fresh build');
});
