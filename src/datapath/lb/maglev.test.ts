import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAGLEV_M } from './lb-maps.js';
import { maglevBytes, maglevTable } from './maglev.js';

const backends = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `10.0.${i >> 8}.${i & 255}:8080`, id: i + 1 }));

test('every slot gets a backend and each backend about M/N slots', () => {
  const t = maglevTable(backends(10));
  assert.equal(t.length, MAGLEV_M);
  const counts = new Map<number, number>();
  for (const id of t) counts.set(id, (counts.get(id) ?? 0) + 1);
  assert.equal(counts.size, 10);
  assert.ok(!counts.has(0));
  for (const c of counts.values()) assert.ok(c >= 100 && c <= 105, `share ${c}`);
});

test('the table depends on backend names, not on their order', () => {
  const a = backends(5);
  assert.deepEqual(maglevTable(a), maglevTable([...a].reverse()));
});

test('removing one of N backends moves few slots beyond the ones it held', () => {
  const all = backends(20);
  const before = maglevTable(all);
  const gone = all[7]?.id;
  const after = maglevTable(all.filter((b) => b.id !== gone));
  let held = 0;
  let moved = 0;
  for (let i = 0; i < MAGLEV_M; i++) {
    if (before[i] === gone) held += 1;
    else if (before[i] !== after[i]) moved += 1;
  }
  assert.ok(held > 0);
  assert.ok(moved < MAGLEV_M * 0.05, `${moved} slots of surviving backends moved`);
  assert.ok(!after.includes(gone ?? -1));
});

test('no backends: all zero; bytes are little-endian u32s', () => {
  assert.ok(maglevTable([]).every((x) => x === 0));
  const b = maglevBytes(maglevTable([{ name: 'x', id: 0x01020304 }]));
  assert.equal(b.length, MAGLEV_M * 4);
  assert.deepEqual([...b.subarray(0, 4)], [4, 3, 2, 1]);
});
