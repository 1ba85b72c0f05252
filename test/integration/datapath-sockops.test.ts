/**
 * sockops + sk_msg short-circuit between two local TCP sockets in a test
 * cgroup (a dual-stack server, an IPv4 client): off by default, data intact
 * and redirected when on.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { SockShortcut } from '../../src/datapath/sock-shortcut.js';
import { run } from '../../src/util/exec.js';
import { tempCgroup, tempPinDir } from '../helpers/bpffs.js';
import { PEER } from '../helpers/datapath-peer.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('sk_msg short-circuits local TCP data only with the flag on, and the data arrives intact', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('dpsk');
  const cg = tempCgroup('dpsk');
  t.after(() => cg.cleanup());
  t.after(() => EndpointManager.destroyPins(pins.path));
  const dp = await EndpointManager.open({ pinDir: pins.path });
  t.after(() => dp.close());
  const sc = await SockShortcut.attach({ pinDir: pins.path, cgroupPath: cg.path });
  t.after(() => sc.detach());
  // below the ephemeral range (32768-60999), where a client socket of another test could hold the port
  const port = 12000 + (process.pid % 8000);
  const inCgroup = (args: string[]) => ['-c', `echo $$ > ${cg.path}/cgroup.procs && exec python3 -u ${PEER} ${args.join(' ')}`];
  // Both ends in the cgroup: the sockops program sees sockets by cgroup.
  const srv = spawn('sh', inCgroup(['serve', 'S', String(port)]));
  t.after(() => srv.kill('SIGKILL'));
  let srvErr = '';
  srv.stderr.setEncoding('utf8').on('data', (d: string) => (srvErr += d));
  await new Promise<void>((resolve, reject) => {
    srv.stdout.once('data', () => resolve());
    srv.once('exit', (c) => reject(new Error(`server exited (${c}): ${srvErr}`)));
  });

  const bulk = () => run('sh', inCgroup(['bulk', '127.0.0.1', String(port), '2000']), { timeoutMs: 60_000 });

  assert.equal((await bulk()).stdout.trim(), 'ok 2000');
  assert.equal(sc.stats().inserted, 0n, 'flag off: nothing inserted');
  assert.equal(sc.stats().redirected, 0n);

  dp.setConfig({ sockmapShortcut: true });
  assert.equal((await bulk()).stdout.trim(), 'ok 2000');
  const on = sc.stats();
  assert.ok(on.inserted >= 2n, `both ends inserted (${on.inserted})`);
  assert.ok(on.redirected >= 2000n, `messages redirected (${on.redirected})`);

  dp.setConfig({ sockmapShortcut: false });
  const before = sc.stats();
  assert.equal((await bulk()).stdout.trim(), 'ok 2000');
  assert.equal(sc.stats().inserted, before.inserted, 'flag off again: no new sockets');
});
