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
  // fresh objects, equal JSON in another key order: still the same encoding
  const reordered = basicSnapshot('v3');
  reordered.resources.clusters = (input.resources.clusters ?? []).map((c) => (typeof c === 'object' && c !== null ? Object.fromEntries(Object.entries(c).reverse()) : c));
  const s3 = buildSnapshot(reordered, undefined, s2);
  assert.equal(s3.types.clusters.items.get('b')?.any, s2.types.clusters.items.get('b')?.any);
  assert.equal(s3.types.clusters.hash, s2.types.clusters.hash);
});

test('buildSnapshot: the same resource objects again cost nothing: the same entries and type hash come back', () => {
  const input = basicSnapshot('v1');
  const s1 = buildSnapshot(input);
  const s2 = buildSnapshot({ ...input, version: 'v2' }, undefined, s1);
  for (const kind of ['clusters', 'listeners', 'routes', 'endpoints'] as const) {
    for (const [name, r] of s1.types[kind].items) assert.equal(s2.types[kind].items.get(name), r, `${kind} ${name}: same entry`);
    assert.equal(s2.types[kind].hash, s1.types[kind].hash);
  }
  // one new object among the same ones: only it is built, and the hash moves
  const changed = { ...basicSnapshot('v3'), resources: { ...input.resources, clusters: [...(input.resources.clusters ?? []).slice(0, 1), { ...cluster('b'), connect_timeout: '9s' }] } };
  const s3 = buildSnapshot(changed, undefined, s2);
  assert.equal(s3.types.clusters.items.get('a'), s2.types.clusters.items.get('a'));
  assert.notEqual(s3.types.clusters.items.get('b')?.version, s2.types.clusters.items.get('b')?.version);
  assert.notEqual(s3.types.clusters.hash, s2.types.clusters.hash);
  assert.equal(s3.types.listeners.hash, s2.types.listeners.hash);
});

test('consistency: references found at build time and by walking a hand-made resource agree', () => {
  const input = basicSnapshot('v1');
  input.resources.routes = [];
  const built = buildSnapshot(input);
  const problems = consistencyProblems(built);
  assert.equal(problems.length, 1);
  const listeners = new Map([...built.types.listeners.items].map(([n, r]) => [n, { name: r.name, version: r.version, any: r.any, json: r.json }]));
  assert.deepEqual(consistencyProblems({ ...built, types: { ...built.types, listeners: { items: listeners, hash: built.types.listeners.hash } } }), problems);
});
