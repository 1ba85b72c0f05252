/**
 * The `meshd agent` process's proxy (startNodeProxy): with the default
 * proxy.stopOnShutdown=false a stopping agent leaves its Envoy serving and
 * the next agent adopts it (same pid, same listeners); with
 * proxy.stopOnShutdown=true it stops it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stopProcesses } from '../../envoy/orphans.js';
import { configSchema, DEFAULTS } from '../../src/agent/config.js';
import { startNodeProxy, startProxy } from '../../src/agent/start-proxy.js';
import { envoysOfWorkDir } from '../../src/proxy/supervisor-process.js';
import { createLogger } from '../../src/util/log.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { holdSharedProxyRouting } from '../helpers/shared-proxy-routing.js';

test('startNodeProxy: a stopping agent leaves its Envoy for the next one, unless proxy.stopOnShutdown', { timeout: 120_000 }, async (t) => {
  requirePrivileges();
  const stateDir = mkdtempSync(join(tmpdir(), 'meshd-chn-'));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  t.after(() => stopProcesses(envoysOfWorkDir(join(stateDir, 'envoy'))));
  const routing = holdSharedProxyRouting();
  t.after(() => routing.release());
  const pins = tempPinDir('chn');
  t.after(() => pins.cleanup());
  const port = 16400 + (process.pid % 50) * 10;
  const cfg = (stop: boolean) =>
    configSchema.parse({ ...DEFAULTS, nodeName: `chn-${process.pid}`, stateDir, 'bpf.root': pins.path, 'proxy.portRange': `${port}-${port + 9}`, 'proxy.stopOnShutdown': stop });
  const log = createLogger({ test: 'chn' }, { level: 'warn' });
  const pidOf = (p: { status(): { envoy: { pid: number | null } } }) => p.status().envoy.pid;

  const first = await startNodeProxy(cfg(false), log);
  const pid = pidOf(first);
  assert.ok(pid);
  await first.stop();
  assert.deepEqual(envoysOfWorkDir(join(stateDir, 'envoy')), [pid], 'the Envoy outlived the agent');

  const second = await startNodeProxy(cfg(true), log);
  assert.equal(pidOf(second), pid, 'adopted');
  assert.deepEqual(second.status().envoy.instances?.map((i) => i.adopted), [true]);
  await second.stop();
  assert.deepEqual(envoysOfWorkDir(join(stateDir, 'envoy')), [], 'proxy.stopOnShutdown=true stops it');
  assert.throws(() => process.kill(pid, 0));

  // startProxy (embedding, tests) always stops its Envoys.
  const third = await startProxy(cfg(false), log);
  assert.notEqual(pidOf(third), pid);
  await third.stop();
  assert.deepEqual(envoysOfWorkDir(join(stateDir, 'envoy')), []);
});
