/**
 * RingBufferReader: records the kernel commits reach a JS callback, in order,
 * while the event loop keeps running; close() is idempotent and final.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { isBpfError, native, openObject, u64 } from '../../native/index.js';
import { syntheticFrame } from '../../src/datapath/probe.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('events from a ring buffer arrive in order in JS without blocking the event loop', async (t) => {
  requirePrivileges();
  const obj = openObject(bpfObjectPath('tests/addon_kit'));
  t.after(() => obj.close());
  obj.setGlobal('kit_tag', u64(0x5eedn));
  await obj.load();
  const events: Buffer[] = [];
  let batches = 0;
  const reader = new native.RingBufferReader(obj.mapFd('kit_events'), (batch) => {
    batches += 1;
    events.push(...batch);
  });
  t.after(() => reader.close());

  let ticks = 0;
  const timer = setInterval(() => (ticks += 1), 1);
  const want = 300;
  for (let i = 0; i < want / 3; i++) native.progTestRun(obj.programFd('kit_tc'), syntheticFrame(80), { repeat: 3 });
  for (let i = 0; i < 200 && events.length < want; i++) await sleep(5);
  clearInterval(timer);

  assert.equal(events.length, want);
  assert.ok(batches >= 1 && batches <= want);
  assert.ok(ticks > 0, 'timers fired while the reader was running');
  events.forEach((e, i) => {
    assert.equal(e.length, 16);
    assert.equal(e.readBigUInt64LE(0), 0x5eedn);
    assert.equal(e.readUInt32LE(8), 80);
    assert.equal(e.readUInt32LE(12), i, 'in order');
  });
  assert.equal(reader.delivered(), want);
  assert.equal(reader.lost(), 0);

  reader.close();
  reader.close();
  native.progTestRun(obj.programFd('kit_tc'), syntheticFrame(80));
  await sleep(50);
  assert.equal(events.length, want, 'no callback after close');
});

test('a ring buffer reader on a map that is not a ring buffer fails with errno', async (t) => {
  requirePrivileges();
  const obj = openObject(bpfObjectPath('tests/addon_kit'));
  t.after(() => obj.close());
  await obj.load();
  assert.throws(
    () => new native.RingBufferReader(obj.mapFd('kit_hash'), () => undefined),
    (e: unknown) => isBpfError(e) && e.code === 'EINVAL' && /ring_buffer__new/.test(e.message),
  );
});

test('when the JS side is not keeping up, records are counted as lost instead of blocking the reader', async (t) => {
  requirePrivileges();
  const obj = openObject(bpfObjectPath('tests/addon_kit'));
  t.after(() => obj.close());
  await obj.load();
  let calls = 0;
  // maxPending 0: no batch may wait for the JS thread, so every record is "lost"
  const reader = new native.RingBufferReader(obj.mapFd('kit_events'), () => (calls += 1), { maxPending: 0 });
  t.after(() => reader.close());
  reader.unref(); // must not keep the process alive; ref() undoes it
  reader.ref();
  native.progTestRun(obj.programFd('kit_tc'), syntheticFrame(), { repeat: 10 });
  for (let i = 0; i < 100 && reader.lost() < 10; i++) await sleep(5);
  assert.equal(reader.lost(), 10);
  assert.equal(reader.delivered(), 0);
  assert.equal(calls, 0);
});
