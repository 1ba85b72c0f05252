import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { claim } from './claim.js';

const kind = `unit-${process.pid}`;
const dir = join(tmpdir(), `meshd-test-claims-${kind}`);

test('claims: distinct within a process and across processes, a dead holder taken over, a release frees', (t) => {
  t.after(() => spawnSync('rm', ['-rf', dir]));
  const a = claim(kind, 3);
  assert.equal(a.others(), false);
  const b = claim(kind, 3);
  assert.notEqual(a.index, b.index);
  assert.equal(a.others(), true, 'another claim of this process counts');
  // another (live) process holds the third: nothing is left
  const third = [0, 1, 2].find((i) => i !== a.index && i !== b.index) ?? -1;
  writeFileSync(join(dir, String(third)), String(process.ppid)); // the test runner: alive
  assert.throws(() => claim(kind, 3), /no free unit-\d+ among 3/);
  // a holder that has exited is taken over
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  writeFileSync(join(dir, String(third)), dead);
  const c = claim(kind, 3);
  assert.equal(c.index, third);
  assert.equal(readFileSync(join(dir, String(third)), 'utf8'), String(process.pid));
  a.release();
  assert.equal(existsSync(join(dir, String(a.index))), false);
  b.release();
  assert.equal(c.others(), false, 'released claims do not count');
  assert.equal(claim(kind, 3).index, a.index);
});
