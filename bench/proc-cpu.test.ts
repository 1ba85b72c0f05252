import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpuMs } from './proc-cpu.js';

test('cpuMs: a busy child process accrues CPU time, an idle one next to nothing; a gone pid counts 0', async (t) => {
  // Each says "ready" once Node started (whose start-up costs CPU too); only then the busy one spins.
  const busy = spawn(process.execPath, ['-e', 'process.stdout.write("ready\\n", () => { const end = Date.now() + 60000; while (Date.now() < end); })']);
  const idle = spawn(process.execPath, ['-e', 'process.stdout.write("ready\\n"); setTimeout(() => {}, 60000)']);
  t.after(() => {
    busy.kill('SIGKILL');
    idle.kill('SIGKILL');
  });
  const pids = [busy.pid, idle.pid].map((p) => {
    assert.ok(p !== undefined);
    return p;
  });
  await Promise.all([once(busy.stdout, 'data'), once(idle.stdout, 'data')]);
  const [b0, i0] = pids.map((p) => cpuMs([p]));
  // Generous on a shared machine: the busy loop needs only 200 ms of CPU within 20 s.
  for (let i = 0; i < 200 && cpuMs([pids[0] as number]) - (b0 as number) < 200; i++) await sleep(100);
  const busySpent = cpuMs([pids[0] as number]) - (b0 as number);
  const idleSpent = cpuMs([pids[1] as number]) - (i0 as number);
  assert.ok(busySpent >= 200, `busy child spent ${busySpent} ms`);
  assert.ok(idleSpent < busySpent / 2, `idle child spent ${idleSpent} ms, busy ${busySpent} ms`);
  busy.kill('SIGKILL');
  await once(busy, 'exit');
  assert.equal(cpuMs([pids[0] as number]), 0);
});
