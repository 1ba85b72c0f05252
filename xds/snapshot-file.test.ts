import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isXdsError } from './errors.js';
import type { Snapshot } from './snapshot.js';
import { loadSnapshotFile, parseSnapshotText, watchSnapshotFile } from './snapshot-file.js';
import { basicSnapshot } from './test-resources.js';

function problems(text: string): readonly string[] {
  try {
    parseSnapshotText(text, 'snap.json');
  } catch (e) {
    assert.ok(isXdsError(e, 'MESHD_XDS_SNAPSHOT_FILE'), String(e));
    assert.match(e.message, /^snap\.json: /);
    return e.problems;
  }
  assert.fail('expected SNAPSHOT_FILE');
}

test('snapshot file: a valid file loads', () => {
  const s = parseSnapshotText(JSON.stringify(basicSnapshot('v7')), 'snap.json');
  assert.equal(s.version, 'v7');
  assert.equal(s.types.clusters.items.size, 2);
});

test('snapshot file: every kind of problem comes with its JSON path', () => {
  assert.match(problems('{')[0] ?? '', /^\$: not JSON/);
  assert.deepEqual(problems('{"resources": {}}'), ['$.version: Invalid input: expected string, received undefined']);
  assert.deepEqual(problems('{"version": "v", "resources": {"clusterz": []}}'), ['$.resources: Unrecognized key: "clusterz"']);
  const wrongType = basicSnapshot('v');
  wrongType.resources.listeners = [{ '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name: 'x' }];
  assert.match(problems(JSON.stringify(wrongType))[0] ?? '', /^\$\.resources\.listeners\[0\]\.@type: must be "type\.googleapis\.com\/envoy\.config\.listener\.v3\.Listener"/);
  const deep = basicSnapshot('v');
  deep.resources.endpoints = [{ '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment', cluster_name: 'a', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { port_value: 'eighty' } } } }] }] }];
  assert.deepEqual(problems(JSON.stringify(deep)), ['$.resources.endpoints[0].endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: expected an unsigned 32-bit integer, got "eighty"']);
  const dangling = basicSnapshot('v');
  dangling.resources.routes = [];
  assert.match(problems(JSON.stringify(dangling))[0] ?? '', /^\$\.listeners\["l"\]\.filter_chains\[0\]\.filters\[0\]\.typed_config\.rds\.route_config_name: route configuration "r" is not in the snapshot/);
});

test('snapshot file: a missing file is an error naming it', () => {
  assert.throws(() => loadSnapshotFile('/nonexistent/snap.json'), (e: unknown) => isXdsError(e, 'MESHD_XDS_SNAPSHOT_FILE') && e.message.startsWith('/nonexistent/snap.json: cannot read'));
});

test('watchSnapshotFile: reloads on replace, reports a bad edit, skips unchanged content', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-xds-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 's.json');
  writeFileSync(file, JSON.stringify(basicSnapshot('v1')));
  const events: string[] = [];
  let wake: () => void = () => {};
  const w = watchSnapshotFile(
    file,
    (s: Snapshot) => {
      events.push(`ok ${s.version}`);
      wake();
    },
    (e) => {
      events.push(`bad ${e.problems[0] ?? ''}`);
      wake();
    },
    { debounceMs: 20 },
  );
  t.after(() => w.close());
  const next = (): Promise<void> => new Promise((res) => (wake = res));
  const replace = (text: string): void => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  let p = next();
  replace(JSON.stringify(basicSnapshot('v2')));
  await p;
  p = next();
  replace('{"version": 1}');
  await p;
  p = next();
  writeFileSync(file, JSON.stringify(basicSnapshot('v3')));
  await p;
  assert.deepEqual(events, ['ok v2', 'bad $.version: Invalid input: expected string, received number', 'ok v3']);
});
