/**
 * BpfObject: read-only globals set before load, maps pinned by name under a
 * pin root and reused (with their contents) by the next load.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { BpfMap, isBpfError, native, openObject, u32, u64 } from '../../native/index.js';
import { syntheticFrame } from '../../src/datapath/probe.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { requirePrivileges } from '../helpers/privileged.js';

const KIT = bpfObjectPath('tests/addon_kit');
const key0 = (): Buffer => u32(0);

test('globals are listed from BTF and set before load; wrong size, unknown name and after-load fail clearly', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('obj');
  t.after(() => pins.cleanup());
  const obj = openObject(KIT, { pinRoot: pins.path });
  t.after(() => obj.close());
  const globals = obj.globals().filter((g) => g.name.startsWith('kit_'));
  assert.deepEqual(
    globals.map((g) => [g.name, g.section, g.size]).sort(),
    [
      ['kit_mult', '.rodata', 4],
      ['kit_tag', '.rodata', 8],
    ],
  );
  assert.throws(() => obj.setGlobal('kit_tag', u32(1)), (e: unknown) => isBpfError(e) && e.code === 'EINVAL' && /8 bytes/.test(e.message));
  assert.throws(() => obj.setGlobal('no_such', u32(1)), (e: unknown) => isBpfError(e) && e.code === 'ENOENT');
  obj.setGlobal('kit_mult', u32(3));
  obj.setGlobal('kit_tag', u64(0xabcn));
  await obj.load();
  assert.throws(() => obj.setGlobal('kit_mult', u32(1)), (e: unknown) => isBpfError(e) && e.code === 'EBUSY');
  assert.throws(() => obj.programFd('nope'), (e: unknown) => isBpfError(e) && e.code === 'ENOENT');
  assert.throws(() => obj.mapFd('nope'), (e: unknown) => isBpfError(e) && e.code === 'ENOENT');

  const prog = obj.programFd('kit_tc');
  native.progTestRun(prog, syntheticFrame());
  native.progTestRun(prog, syntheticFrame());
  const hash = BpfMap.fromObject(obj, 'kit_hash');
  // first packet inserts 1, the second adds kit_mult (3): the program saw the global we set
  assert.equal(hash.lookup(key0())?.readBigUInt64LE(), 4n);
});

test('a map pinned by name survives the object and is reused, contents included, by the next load', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('obj');
  t.after(() => pins.cleanup());

  const first = openObject(KIT, { pinRoot: pins.path });
  try {
    const before = first.maps().find((m) => m.name === 'kit_hash');
    assert.equal(before?.pinPath, `${pins.path}/kit_hash`);
    await first.load();
    const after = first.maps().find((m) => m.name === 'kit_hash');
    assert.equal(after?.pinned, true);
    assert.equal(first.maps().find((m) => m.name === 'kit_array')?.pinned, false);
    native.progTestRun(first.programFd('kit_tc'), syntheticFrame(), { repeat: 5 });
  } finally {
    first.close();
  }

  // The object is gone; the pin holds the map.
  const pinned = BpfMap.fromPin(`${pins.path}/kit_hash`);
  try {
    assert.equal(pinned.info.name, 'kit_hash');
    assert.equal(pinned.lookup(key0())?.readBigUInt64LE(), 5n);
  } finally {
    pinned.close();
    pinned.close();
  }

  const second = openObject(KIT, { pinRoot: pins.path });
  try {
    await second.load();
    native.progTestRun(second.programFd('kit_tc'), syntheticFrame(), { repeat: 2 });
    assert.equal(BpfMap.fromObject(second, 'kit_hash').lookup(key0())?.readBigUInt64LE(), 7n);
  } finally {
    second.close();
  }
});

test('a pinned map that no longer matches the object fails the load with libbpf saying why', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('obj');
  t.after(() => pins.cleanup());
  const a = openObject(KIT, { pinRoot: pins.path });
  a.setMaxEntries('kit_hash', 2048);
  await a.load();
  a.close();
  const b = openObject(KIT, { pinRoot: pins.path });
  try {
    await assert.rejects(b.load(), (e: unknown) => isBpfError(e) && e.code === 'EINVAL' && /kit_hash/.test(e.libbpfLog));
  } finally {
    b.close();
  }
});

test('without a pinRoot nothing is pinned, not even maps declared LIBBPF_PIN_BY_NAME', async (t) => {
  requirePrivileges();
  const obj = openObject(KIT);
  t.after(() => obj.close());
  assert.equal(obj.maps().find((m) => m.name === 'kit_hash')?.pinPath, null);
  await obj.load();
  assert.equal(obj.maps().find((m) => m.name === 'kit_hash')?.pinned, false);
  assert.equal(existsSync('/sys/fs/bpf/kit_hash'), false);
});

test('host facts: netns cookie, ifindex, possible CPUs', () => {
  requirePrivileges();
  const c = native.netnsCookie();
  assert.equal(typeof c, 'bigint');
  assert.ok(c > 0n);
  assert.equal(native.netnsCookie(), c);
  assert.equal(native.ifNameToIndex('lo'), 1);
  assert.throws(() => native.ifNameToIndex('meshd-none0'), (e: unknown) => isBpfError(e) && e.code === 'ENODEV');
  assert.ok(native.numPossibleCpus() >= 1);
});
