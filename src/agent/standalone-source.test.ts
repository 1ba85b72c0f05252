import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ResourceEvent, SourceProblem } from './resource-source.js';
import { StandaloneSource } from './standalone-source.js';

const pod = (name: string, app: string) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: default\n  labels: {app: ${app}}\n`;

function harness(t: { after(fn: () => Promise<void> | void): void }, onBatch: (e: ResourceEvent[]) => void = () => undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-standalone-'));
  const batches: ResourceEvent[][] = [];
  const problems: SourceProblem[][] = [];
  const src = new StandaloneSource({ dir, rescanMs: 60_000, debounceMs: 20 });
  t.after(async () => {
    await src.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const start = () =>
    src.start({
      onBatch: (e) => {
        batches.push(e);
        onBatch(e);
      },
      onProblems: (p) => void problems.push(p),
    });
  return { dir, src, batches, problems, start };
}

const summary = (b: ResourceEvent[] | undefined) => (b ?? []).map((e) => `${e.type} ${e.key}`);
const where = (ps: SourceProblem[] | undefined) => (ps ?? []).map((p) => ({ origin: p.origin, document: p.document, path: p.path, code: p.code }));

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('initial scan, edit, removal of an object and of a file become minimal typed events', async (t) => {
  const h = harness(t);
  writeFileSync(join(h.dir, 'pods.yaml'), `${pod('a', 'web')}---\n${pod('b', 'api')}`);
  writeFileSync(join(h.dir, 'ns.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ops' } }));
  await h.start();
  assert.deepEqual(summary(h.batches[0]).sort(), ['upsert Namespace/ops', 'upsert Pod/default/a', 'upsert Pod/default/b']);

  // Parsed objects: defaults applied, typed by kind.
  const a = h.batches[0]?.find((e) => e.key === 'Pod/default/a')?.object;
  assert.ok(a?.kind === 'Pod');
  assert.deepEqual(a.metadata.labels, { app: 'web' });
  assert.deepEqual(a.spec.containers, []);
  const ns = h.batches[0]?.find((e) => e.key === 'Namespace/ops')?.object;
  assert.ok(ns?.kind === 'Namespace');
  assert.deepEqual(ns.metadata.labels, {});

  writeFileSync(join(h.dir, 'pods.yaml'), `${pod('a', 'web')}---\n${pod('b', 'api2')}`);
  await h.src.rescan();
  assert.deepEqual(summary(h.batches[1]), ['upsert Pod/default/b']);

  writeFileSync(join(h.dir, 'pods.yaml'), pod('a', 'web'));
  await h.src.rescan();
  assert.deepEqual(summary(h.batches[2]), ['delete Pod/default/b']);
  // A delete carries the last version delivered.
  const gone = h.batches[2]?.[0]?.object;
  assert.ok(gone?.kind === 'Pod');
  assert.deepEqual(gone.metadata.labels, { app: 'api2' });

  unlinkSync(join(h.dir, 'ns.json'));
  await h.src.rescan();
  assert.deepEqual(summary(h.batches[3]), ['delete Namespace/ops']);
  assert.deepEqual(h.problems, []);
});

test('a broken file is reported with file, document, object and field path, and its last good objects stay', async (t) => {
  const h = harness(t);
  const f = join(h.dir, 'pods.yaml');
  writeFileSync(f, `${pod('a', 'web')}---\n${pod('b', 'api')}`);
  await h.start();
  assert.equal(h.batches.length, 1);

  // A YAML error in document 1, a missing name in document 0: nothing applied.
  writeFileSync(f, `apiVersion: v1\nkind: Pod\nmetadata: {namespace: default}\n---\nkind: [unclosed\n`);
  await h.src.rescan();
  assert.equal(h.batches.length, 1, 'no events from a broken file');
  assert.deepEqual(where(h.problems[0]), [
    { origin: 'pods.yaml', document: 0, path: ['metadata', 'name'], code: 'WRONG_TYPE' },
    ...(h.problems[0] ?? []).slice(1).map(() => ({ origin: 'pods.yaml', document: 1, path: [], code: 'YAML_SYNTAX' })),
  ]);
  assert.ok((h.problems[0] ?? []).length > 1, 'the YAML error is reported too');

  // Reported once per edit, not on every rescan.
  await h.src.rescan();
  assert.equal(h.problems.length, 1);

  // A field the kind's schema refuses, deep in the object: the path is data, and the object is named.
  writeFileSync(f, `${pod('a', 'web')}spec:\n  containers:\n    - name: c\n      ports: [{containerPort: 70000}]\n`);
  await h.src.rescan();
  assert.deepEqual(where(h.problems[1]), [{ origin: 'pods.yaml', document: 0, path: ['spec', 'containers', 0, 'ports', 0, 'containerPort'], code: 'INVALID_VALUE' }]);
  assert.deepEqual(h.problems[1]?.[0]?.ref, { kind: 'Pod', namespace: 'default', name: 'a' });

  // Fixed: the diff is against the last good version (a and b), so b is deleted and a unchanged.
  writeFileSync(f, pod('a', 'web'));
  await h.src.rescan();
  assert.deepEqual(summary(h.batches[1]), ['delete Pod/default/b']);
});

test('every kind is parsed by its own module: unknown kinds, wrong apiVersions and semantic checks reject the file', async (t) => {
  const h = harness(t);
  await h.start();
  const cases: Array<[string, SourceProblem['path'], SourceProblem['code']]> = [
    ['apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n', ['kind'], 'UNKNOWN_KIND'],
    ['apiVersion: apps/v1\nkind: Pod\nmetadata: {name: x}\n', ['apiVersion'], 'INVALID_VALUE'],
    ['apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}, {port: 80}]}\n', ['spec', 'ports', 1], 'DUPLICATE_PORT'],
    ['apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec: {endpointSelector: {}, egress: [{toCIDR: [nope]}]}\n', ['spec', 'egress', 0, 'toCIDR', 0], 'INVALID_CIDR'],
  ];
  for (const [i, [text, path, code]] of cases.entries()) {
    writeFileSync(join(h.dir, `c${i}.yaml`), text);
    await h.src.rescan();
    assert.deepEqual(
      (h.problems[i] ?? []).map((p) => [p.path, p.code]),
      [[path, code]],
      `case ${i}`,
    );
  }
  assert.equal(h.batches.length, 0, 'nothing applied');
});

test('an object defined in two files is a conflict: the later file is rejected', async (t) => {
  const h = harness(t);
  writeFileSync(join(h.dir, 'a.yaml'), pod('x', 'one'));
  writeFileSync(join(h.dir, 'b.yaml'), pod('x', 'two'));
  await h.start();
  assert.deepEqual(summary(h.batches[0]), ['upsert Pod/default/x']);
  const first = h.batches[0]?.[0]?.object;
  assert.ok(first?.kind === 'Pod');
  assert.deepEqual(first.metadata.labels, { app: 'one' });
  assert.deepEqual(
    (h.problems[0] ?? []).map((p) => [p.origin, p.code, p.ref]),
    [['b.yaml', 'DUPLICATE_OBJECT', { kind: 'Pod', namespace: 'default', name: 'x' }]],
  );
});

test('the directory is watched: an edit is picked up without an explicit rescan', async (t) => {
  const h = harness(t);
  await h.start();
  writeFileSync(join(h.dir, 'p.yaml'), pod('w', 'watched'));
  await until(() => h.batches.length > 0, 'the watched edit');
  assert.deepEqual(summary(h.batches[0]), ['upsert Pod/default/w']);
});

test('a batch handler that throws is reported and later scans still run, explicit or watched', async (t) => {
  let failNext = false;
  const h = harness(t, () => {
    if (!failNext) return;
    failNext = false;
    throw new Error('handler broke');
  });
  writeFileSync(join(h.dir, 'a.yaml'), pod('a', 'one'));
  await h.start();

  // An explicit rescan whose handler throws rejects, and the failure is reported as a problem.
  failNext = true;
  writeFileSync(join(h.dir, 'b.yaml'), pod('b', 'two'));
  await assert.rejects(h.src.rescan(), /handler broke/);
  assert.deepEqual(where(h.problems.at(-1)), [{ origin: h.dir, document: undefined, path: [], code: 'SCAN_FAILED' }]);

  // The next explicit scan runs.
  writeFileSync(join(h.dir, 'c.yaml'), pod('c', 'three'));
  await h.src.rescan();
  assert.deepEqual(summary(h.batches.at(-1)), ['upsert Pod/default/c']);

  // A scan started by the watcher fails the same way; the one after it still delivers.
  failNext = true;
  const before = h.batches.length;
  writeFileSync(join(h.dir, 'd.yaml'), pod('d', 'four'));
  await until(() => h.batches.length > before && !failNext, 'the failing watched scan');
  const failures = () => h.problems.filter((ps) => ps.some((p) => p.code === 'SCAN_FAILED')).length;
  await until(() => failures() === 2, 'its report');
  writeFileSync(join(h.dir, 'e.yaml'), pod('e', 'five'));
  await until(() => h.batches.some((b) => summary(b).includes('upsert Pod/default/e')), 'the watched edit after the failure');
});
