/**
 * Map operations by fd on the real kernel: single-entry update flags, batch
 * update/delete (batched where the map type has it, looped where not), dump,
 * key iteration, pin/open/unpin.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BPF_EXIST, BPF_NOEXIST, BpfMap, isBpfError, native, openObject, u32 } from '../../native/index.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { requirePrivileges } from '../helpers/privileged.js';

const u64v = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const lpmKey = (prefixlen: number, a: number, b: number, c: number, d: number): Buffer => {
  const k = Buffer.alloc(8);
  k.writeUInt32LE(prefixlen, 0);
  k.set([a, b, c, d], 4);
  return k;
};

async function loadKit(t: { after: (fn: () => void) => void }) {
  const pins = tempPinDir('maps');
  const obj = openObject(bpfObjectPath('tests/addon_kit'), { pinRoot: pins.path });
  t.after(() => {
    obj.close();
    pins.cleanup();
  });
  await obj.load();
  return { obj, pins };
}

test('update honours BPF_ANY/NOEXIST/EXIST, delete says whether the key existed, sizes are checked', async (t) => {
  requirePrivileges();
  const { obj } = await loadKit(t);
  const m = BpfMap.fromObject(obj, 'kit_hash');
  assert.equal(m.lookup(u32(7)), null);
  assert.throws(() => m.update(u32(7), u64v(1), BPF_EXIST), (e: unknown) => isBpfError(e) && e.code === 'ENOENT');
  m.update(u32(7), u64v(1), BPF_NOEXIST);
  assert.throws(() => m.update(u32(7), u64v(2), BPF_NOEXIST), (e: unknown) => isBpfError(e) && e.code === 'EEXIST');
  m.update(u32(7), u64v(3), BPF_EXIST);
  assert.deepEqual(m.lookup(u32(7)), u64v(3));
  m.update(u32(7), u64v(4));
  assert.deepEqual(m.lookup(u32(7)), u64v(4));
  assert.equal(m.delete(u32(7)), true);
  assert.equal(m.delete(u32(7)), false);
  assert.throws(() => m.update(Buffer.alloc(2), u64v(1)), (e: unknown) => isBpfError(e) && e.code === 'EINVAL' && /key is 2 bytes, map wants 4/.test(e.message));
  assert.throws(() => m.update(u32(1), Buffer.alloc(4)), (e: unknown) => isBpfError(e) && /value is 4 bytes, map wants 8/.test(e.message));
});

test('batch update and delete on a hash map use the batch syscalls; absent keys are skipped on delete', async (t) => {
  requirePrivileges();
  const { obj } = await loadKit(t);
  const m = BpfMap.fromObject(obj, 'kit_hash');
  const keys = Array.from({ length: 500 }, (_, i) => u32(1000 + i));
  const vals = keys.map((_, i) => u64v(i * 10));
  assert.deepEqual(m.updateBatch(keys, vals), { count: 500, batched: true });
  const dump = m.dump();
  assert.equal(dump.length, 500);
  const seen = new Map(dump.map(([k, v]) => [k.readUInt32LE(), v.readBigUInt64LE()]));
  assert.equal(seen.get(1000 + 123), 1230n);
  assert.throws(() => m.updateBatch(keys.slice(0, 2), vals.slice(0, 1)), (e: unknown) => isBpfError(e) && e.code === 'EINVAL');
  assert.throws(() => m.updateBatch(keys.slice(0, 1), vals.slice(0, 1), BPF_NOEXIST), (e: unknown) => isBpfError(e) && e.code === 'EEXIST');
  // delete 100 present keys interleaved with 50 absent ones
  const del: Buffer[] = [];
  for (let i = 0; i < 100; i++) {
    del.push(u32(1000 + i));
    if (i % 2 === 0) del.push(u32(90000 + i));
  }
  assert.equal(m.deleteBatch(del), 100);
  assert.equal(m.dump().length, 400);
  assert.equal(m.lookup(u32(1000)), null);
  assert.notEqual(m.lookup(u32(1100)), null);
  assert.equal(m.deleteBatch([]), 0);
});

test('an LPM trie takes batch updates and longest-prefix lookups; iteration and batch delete work', async (t) => {
  requirePrivileges();
  const { obj } = await loadKit(t);
  const m = BpfMap.fromObject(obj, 'kit_lpm');
  assert.equal(m.info.typeName, 'lpm_trie');
  const keys = [lpmKey(8, 10, 0, 0, 0), lpmKey(16, 10, 1, 0, 0), lpmKey(24, 10, 1, 2, 0)];
  assert.equal(m.updateBatch(keys, [u32(8), u32(16), u32(24)]).count, 3);
  // longest prefix match through lookup with a /32 key
  assert.deepEqual(m.lookup(lpmKey(32, 10, 1, 2, 3)), u32(24));
  assert.deepEqual(m.lookup(lpmKey(32, 10, 1, 9, 9)), u32(16));
  assert.deepEqual(m.lookup(lpmKey(32, 10, 9, 9, 9)), u32(8));
  // iterate with get-next-key
  const walked: string[] = [];
  for (let k = m.nextKey(null); k; k = m.nextKey(k)) walked.push(k.toString('hex'));
  assert.deepEqual(walked.sort(), keys.map((k) => k.toString('hex')).sort());
  assert.equal(m.deleteBatch([keys[0] ?? Buffer.alloc(0), lpmKey(8, 11, 0, 0, 0)]), 1);
  assert.equal(m.dump().length, 2);
});

test('a map type without batch syscalls (devmap hash) falls back to one call per entry', async (t) => {
  requirePrivileges();
  const { obj } = await loadKit(t);
  const m = BpfMap.fromObject(obj, 'kit_devmap');
  // value: an ifindex (1 = lo)
  assert.deepEqual(m.updateBatch([u32(1), u32(2), u32(3)], [u32(1), u32(1), u32(1)]), { count: 3, batched: false });
  assert.equal(m.dump().length, 3);
  assert.equal(m.deleteBatch([u32(1), u32(9), u32(3)]), 2);
  assert.deepEqual(m.dump().map(([k]) => k.readUInt32LE()), [2]);
});

test('an array map takes batch updates; iteration visits every index', async (t) => {
  requirePrivileges();
  const { obj } = await loadKit(t);
  const m = BpfMap.fromObject(obj, 'kit_array');
  const r = m.updateBatch([u32(1), u32(5)], [u64v(11), u64v(55)]);
  assert.equal(r.count, 2);
  const d = m.dump();
  assert.equal(d.length, 8);
  assert.deepEqual(d[5]?.[1], u64v(55));
});

test('maps pin, reopen by path and unpin; mapInfo describes a map by fd', async (t) => {
  requirePrivileges();
  const { obj, pins } = await loadKit(t);
  const fd = obj.mapFd('kit_array');
  const path = `${pins.path}/arr`;
  native.objPin(fd, path);
  assert.throws(() => native.objPin(fd, path), (e: unknown) => isBpfError(e) && e.code === 'EEXIST');
  const again = BpfMap.fromPin(path);
  try {
    assert.deepEqual(
      [again.info.name, again.info.typeName, again.keySize, again.valueSize, again.info.maxEntries],
      ['kit_array', 'array', 4, 8, 8],
    );
    again.update(u32(2), u64v(22));
    assert.deepEqual(BpfMap.fromObject(obj, 'kit_array').lookup(u32(2)), u64v(22));
    assert.ok(again.info.id === native.mapInfo(fd).id);
  } finally {
    again.close();
  }
  assert.equal(native.objUnpin(path), true);
  assert.equal(native.objUnpin(path), false);
  assert.throws(() => BpfMap.fromPin(path), (e: unknown) => isBpfError(e) && e.code === 'ENOENT');
});
