import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { isMeshdError } from './errors.js';
import { readStateFile, writeStateFile } from './state-file.js';

const schema = z.object({ version: z.literal(1), names: z.array(z.string()) });

function dir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'meshd-state-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('missing, good and written-back files', (t) => {
  const file = join(dir(t), 'sub', 'state.json');
  assert.deepEqual(readStateFile(file, schema), { state: 'missing' });
  writeStateFile(file, { version: 1, names: ['a'] });
  assert.deepEqual(readStateFile(file, schema), { state: 'ok', data: { version: 1, names: ['a'] } });
  assert.deepEqual(readdirSync(join(file, '..')), ['state.json'], 'no temporary file left');
});

test('a damaged file is moved aside, named in a coded report, and never read again', (t) => {
  const d = dir(t);
  const file = join(d, 'state.json');
  writeFileSync(file, '{"version": 1, "names": [');
  const first = readStateFile(file, schema);
  assert.equal(first.state, 'corrupt');
  if (first.state !== 'corrupt') return;
  assert.ok(isMeshdError(first.problem, 'MESHD_STATE_FILE_CORRUPT'));
  assert.ok(first.problem.message.includes(file) && first.problem.message.includes(first.problem.movedTo));
  assert.equal(first.salvaged, undefined);
  assert.deepEqual(readStateFile(file, schema), { state: 'missing' }, 'the damaged file is no longer where it was');

  writeFileSync(file, JSON.stringify({ version: 2, names: ['x'] }));
  const second = readStateFile(file, schema, () => undefined);
  assert.ok(second.state === 'corrupt' && second.problem.detail.startsWith('version: '), 'the detail names the field');
  const aside = readdirSync(d).filter((n) => n.startsWith('state.json.corrupt-')).sort();
  assert.equal(aside.length, 2, 'each damaged copy is kept');
  assert.equal(readFileSync(join(d, aside[0] ?? ''), 'utf8'), '{"version": 1, "names": [', 'the first copy is the oldest');
});
