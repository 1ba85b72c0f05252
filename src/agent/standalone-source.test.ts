import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ResourceEvent, SourceProblem } from './resource-source.js';
import { StandaloneSource } from './standalone-source.js';

const pod = (name: string, app: string) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: default\n  labels: {app: ${app}}\n`;

function harness(t: { after(fn: () => Promise<void> | void): void }, validate?: ConstructorParameters<typeof StandaloneSource>[0]['validate']) {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-standalone-'));
  const batches: ResourceEvent[][] = [];
  const problems: SourceProblem[][] = [];
  const src = new StandaloneSource({ dir, rescanMs: 60_000, ...(validate ? { validate } : {}) });
  t.after(async () => {
    await src.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const start = () => src.start({ onBatch: (e) => void batches.push(e), onProblems: (p) => void problems.push(p) });
  return { dir, src, batches, problems, start };
}

const summary = (b: ResourceEvent[] | undefined) => (b ?? []).map((e) => `${e.type} ${e.key}`);

test('initial scan, edit, removal of an object and of a file become minimal events', async (t) => {
  const h = harness(t);
  writeFileSync(join(h.dir, 'pods.yaml'), `${pod('a', 'web')}---\n${pod('b', 'api')}`);
  writeFileSync(join(h.dir, 'ns.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ops' } }));
  await h.start();
  assert.deepEqual(summary(h.batches[0]).sort(), ['upsert Namespace/ops', 'upsert Pod/default/a', 'upsert Pod/default/b']);

  writeFileSync(join(h.dir, 'pods.yaml'), `${pod('a', 'web')}---\n${pod('b', 'api2')}`);
  await h.src.rescan();
  assert.deepEqual(summary(h.batches[1]), ['upsert Pod/default/b']);

  writeFileSync(join(h.dir, 'pods.yaml'), pod('a', 'web'));
  await h.src.rescan();
  assert.deepEqual(summary(h.batches[2]), ['delete Pod/default/b']);

  unlinkSync(join(h.dir, 'ns.json'));
  await h.src.rescan();
  assert.deepEqual(summary(h.batches[3]), ['delete Namespace/ops']);
  assert.deepEqual(h.problems, []);
});

test('a broken file is reported with file, document and field, and its last good objects stay', async (t) => {
  const h = harness(t, (obj) => (obj.kind === 'Pod' && typeof obj.spec === 'string' ? [{ path: 'spec', message: 'expected an object' }] : []));
  const f = join(h.dir, 'pods.yaml');
  writeFileSync(f, `${pod('a', 'web')}---\n${pod('b', 'api')}`);
  await h.start();
  assert.equal(h.batches.length, 1);

  // A YAML error in document 1, a missing name in document 0: nothing applied.
  writeFileSync(f, `apiVersion: v1\nkind: Pod\nmetadata: {namespace: default}\n---\nkind: [unclosed\n`);
  await h.src.rescan();
  assert.equal(h.batches.length, 1, 'no events from a broken file');
  const p = h.problems[0] ?? [];
  assert.ok(p.some((x) => x.file === 'pods.yaml' && x.document === 0 && x.path === 'metadata.name'), JSON.stringify(p));
  assert.ok(p.some((x) => x.file === 'pods.yaml' && x.document === 1), JSON.stringify(p));

  // Reported once per edit, not on every rescan.
  await h.src.rescan();
  assert.equal(h.problems.length, 1);

  // Validation of a field by the kind's validator.
  writeFileSync(f, `${pod('a', 'web')}spec: oops\n`);
  await h.src.rescan();
  assert.deepEqual(h.problems[1], [{ file: 'pods.yaml', document: 0, path: 'spec', message: 'expected an object' }]);

  // Fixed: the diff is against the last good version (a and b), so b is deleted and a unchanged.
  writeFileSync(f, pod('a', 'web'));
  await h.src.rescan();
  assert.deepEqual(summary(h.batches[1]), ['delete Pod/default/b']);
});

test('an object defined in two files is a conflict: the later file is rejected', async (t) => {
  const h = harness(t);
  writeFileSync(join(h.dir, 'a.yaml'), pod('x', 'one'));
  writeFileSync(join(h.dir, 'b.yaml'), pod('x', 'two'));
  await h.start();
  assert.deepEqual(summary(h.batches[0]), ['upsert Pod/default/x']);
  const first = h.batches[0]?.[0];
  assert.ok(first?.type === 'upsert');
  assert.deepEqual((first.object.metadata as { labels: unknown }).labels, { app: 'one' });
  assert.match(h.problems[0]?.[0]?.message ?? '', /Pod\/default\/x is already defined in a\.yaml/);
});

test('the directory is watched: an edit is picked up without an explicit rescan', async (t) => {
  const h = harness(t);
  await h.start();
  writeFileSync(join(h.dir, 'p.yaml'), pod('w', 'watched'));
  const deadline = Date.now() + 5_000;
  while (h.batches.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(summary(h.batches[0]), ['upsert Pod/default/w']);
});
