import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { bootstrapHash, instanceRecordSchema, processAlive, procStat } from './supervisor-process.js';
import { withReusePort } from './steering.js';

test('procStat and processAlive: a pid is the same process only with the same start time, and not once it exited', async () => {
  const me = procStat(process.pid);
  assert.ok(me && /^\d+$/.test(me.startTime));
  assert.equal(processAlive({ pid: process.pid, startTime: me.startTime }), true);
  assert.equal(processAlive({ pid: process.pid, startTime: String(Number(me.startTime) + 1) }), false, 'a reused pid');
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { stdio: 'ignore' });
  assert.ok(child.pid);
  const st = procStat(child.pid);
  assert.ok(st);
  const rec = { pid: child.pid, startTime: st.startTime };
  assert.equal(processAlive(rec), true);
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.equal(processAlive(rec), false);
  assert.equal(procStat(2 ** 22 + 7), null);
});

test('instance records: a record that is not of the schema is refused field by field', () => {
  const good = {
    id: 'e3',
    pid: 42,
    startTime: '123',
    binary: '/usr/bin/envoy',
    bootstrapHash: bootstrapHash({ node: { id: 'n/e3' } }),
    adminSocket: '/run/meshd/envoy/e3-admin.sock',
    bootstrapPath: '/run/meshd/envoy/e3.bootstrap.json',
    nodeId: 'n/e3',
    startedAt: '2026-01-01T00:00:00.000Z',
  };
  assert.deepEqual(instanceRecordSchema.parse(good), good);
  const bad = instanceRecordSchema.safeParse({ ...good, id: '../x', pid: -1 });
  assert.equal(bad.success, false);
  assert.deepEqual(bad.error?.issues.map((i) => i.path.join('.')).sort(), ['id', 'pid']);
  assert.notEqual(bootstrapHash({ a: 1 }), bootstrapHash({ a: 2 }));
});

test('withReusePort: every listener binds with SO_REUSEPORT, the rest unchanged', () => {
  assert.deepEqual(withReusePort([{ name: 'a', port: 1 }, { name: 'b' }]), [
    { name: 'a', port: 1, enable_reuse_port: true },
    { name: 'b', enable_reuse_port: true },
  ]);
});
