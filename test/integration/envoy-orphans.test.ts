import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { findEnvoy } from '../../envoy/binary.js';
import { findEnvoyProcesses, stopProcesses } from '../../envoy/orphans.js';

test('an Envoy running a given bootstrap is found by its command line and stopped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-orphan-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bootstrap = join(dir, 'bootstrap.json');
  writeFileSync(bootstrap, JSON.stringify({ node: { id: 'orphan', cluster: 'meshd' }, admin: { address: { pipe: { path: join(dir, 'admin.sock') } } } }));
  const child = spawn(findEnvoy().path, ['-c', bootstrap, '--use-dynamic-base-id', '--log-level', 'error'], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  assert.ok(child.pid);
  let found: number[] = [];
  for (let i = 0; i < 100 && found.length === 0; i++) {
    found = findEnvoyProcesses(bootstrap);
    if (found.length === 0) await sleep(20);
  }
  assert.deepEqual(found, [child.pid]);
  assert.deepEqual(findEnvoyProcesses(join(dir, 'other.json')), []);
  await stopProcesses(found);
  await exited;
  assert.deepEqual(findEnvoyProcesses(bootstrap), []);
});
