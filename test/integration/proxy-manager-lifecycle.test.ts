/**
 * ProxyManager across its own end and the next agent's start, with the real
 * Envoy: the saved snapshot carries the SDS secrets, so an Envoy that a
 * restarted agent starts serves TLS interception from the start (before the
 * agent's first apply); a stopping manager brings no exited Envoy back (not
 * even for an apply that still waits for an ACK); a supervisor whose state
 * directory was removed under it does not restart Envoys into it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { stopProcesses } from '../../envoy/orphans.js';
import { removePolicyRouting } from '../../src/proxy/policy-routing.js';
import { ProxyManager } from '../../src/proxy/proxy-manager.js';
import type { SecretData } from '../../src/proxy/sds.js';
import { envoysOfWorkDir, processAlive, procStat } from '../../src/proxy/supervisor-process.js';
import { isMeshdError } from '../../src/util/errors.js';
import { createLogger } from '../../src/util/log.js';
import { repoPath } from '../../src/util/paths.js';
import { startL7World } from '../helpers/l7-world.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { makePki, startTlsServer, tlsPeer } from '../helpers/tls-peer.js';

const POLICY = readFileSync(repoPath('examples', 'policies', 'l7-tls-interception.yaml'), 'utf8');

async function gone(pid: number): Promise<void> {
  for (let st = procStat(pid); st !== null && st.state !== 'Z'; st = procStat(pid)) await sleep(5);
}

test('the saved snapshot carries the SDS secrets: an Envoy started by a restarted agent intercepts TLS before the first apply', { timeout: 180_000 }, async (t) => {
  requirePrivileges();
  const upstream = await makePki('lcup');
  t.after(() => upstream.remove());
  const intercept = await makePki('lcin');
  t.after(() => intercept.remove());
  const serverCert = await upstream.leaf('api', 'api server', ['api.example.com']);
  const proxyCert = await intercept.leaf('proxy1', 'intercept-1', ['api.example.com']);
  const pem = (f: string) => readFileSync(f, 'utf8');
  const secrets: SecretData = new Map<string, Record<string, string>>([
    ['default/intercept', { 'tls.crt': pem(proxyCert.crt), 'tls.key': pem(proxyCert.key) }],
    ['default/upstream-ca', { 'ca.crt': pem(upstream.ca.crt) }],
  ]);
  const w = await startL7World(t, { tag: 'plc', octet: 97, portBase: 27000, pods: [['client', 0], ['api', 4]], policies: POLICY });
  const api = w.pod('api');
  await startTlsServer(api.ns, serverCert.crt, serverCert.key, [8443], (fn) => w.sb.defer(fn));
  await w.sync(w.proxy, { secrets });
  const get = () => tlsPeer(w.pod('client').ns, ['get', api.ip, '8443', 'api.example.com', '/allowed', intercept.ca.crt]);
  assert.equal((await get()).peerCN, 'intercept-1');

  const saved = z
    .object({ secrets: z.array(z.object({ name: z.string() }).passthrough()) })
    .parse(JSON.parse(readFileSync(join(w.stateDir, 'proxy-snapshot.json'), 'utf8')));
  assert.ok(saved.secrets.length >= 2, JSON.stringify(saved.secrets.map((s) => s.name)));

  // The agent goes; its Envoy dies while no agent runs; the next agent starts a new one and applies nothing yet.
  const [old] = w.proxy.instances();
  assert.ok(old);
  await w.proxy.detach();
  process.kill(old.pid, 'SIGKILL');
  await gone(old.pid);
  const next = await w.restartProxy();
  const [fresh] = next.instances();
  assert.ok(fresh && fresh.pid !== old.pid, 'a new Envoy');
  const dump = await next.adminRequest('/config_dump?resource=dynamic_active_secrets');
  for (const s of saved.secrets) assert.ok(dump.body.includes(`"${s.name}"`), `secret ${s.name} in the new Envoy`);
  assert.deepEqual(await get(), { ok: true, status: 200, body: `https GET /allowed api.example.com from ${w.net(5)}`, peerCN: 'intercept-1' });
});

test('a stopping ProxyManager restarts no exited Envoy, and one whose state directory is gone restarts none into it', { timeout: 120_000 }, async (t) => {
  requirePrivileges();
  const log = createLogger({ test: 'plc2' }, { level: 'error' });
  const routing = { mark: 0xb00, mask: 0xf00, table: 40000 + ((process.pid + 7) % 20000), priority: 8000 + ((process.pid + 7) % 1000) };
  t.after(() => removePolicyRouting(routing));
  const portBase = 28000 + (process.pid % 1000) * 10;
  const start = (stateDir: string) =>
    ProxyManager.start({ nodeName: `plc2-${process.pid}`, stateDir, portRange: [portBase, portBase + 9], xdsMode: 'delta', log, routing, ackTimeoutMs: 10_000 });
  const dirs: string[] = [];
  t.after(async () => {
    for (const d of dirs) {
      await stopProcesses(envoysOfWorkDir(join(d, 'envoy')));
      rmSync(d, { recursive: true, force: true });
    }
  });
  const newDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'meshd-plc2-'));
    dirs.push(d);
    return d;
  };

  // Stopped while an apply waits for an ACK that only a restarted Envoy could give: the apply gives up, nothing restarts.
  const a = await start(newDir());
  t.after(() => a.stop());
  const [e1] = a.instances();
  assert.ok(e1);
  process.kill(e1.pid, 'SIGKILL');
  await gone(e1.pid);
  while (a.status().envoy.state !== 'backoff') await sleep(5);
  const applying = a.apply({ endpoints: [], identityIps: new Map([[9, ['10.9.9.9/32']]]) }).then(
    () => null,
    (e: unknown) => e,
  );
  const t0 = Date.now();
  await a.stop();
  const err = await applying;
  assert.ok(isMeshdError(err, 'MESHD_PROXY_STOPPED'), String(err));
  assert.ok(Date.now() - t0 < 5_000, 'the stop did not wait out the ACK timeout');
  assert.equal(a.status().envoy.restarts, 0);
  assert.deepEqual(envoysOfWorkDir(join(dirs[0] ?? '', 'envoy')), []);

  // The state directory removed under a running manager (uninstall, a test's teardown), then its Envoy killed.
  const dir = newDir();
  const b = await start(dir);
  t.after(() => b.stop());
  const [e2] = b.instances();
  assert.ok(e2);
  rmSync(dir, { recursive: true, force: true });
  process.kill(e2.pid, 'SIGKILL');
  await gone(e2.pid);
  await sleep(1_500); // several restart back-offs (200, 400, 800 ms)
  assert.equal(b.status().envoy.restarts, 0);
  assert.equal(b.status().envoy.instances.filter((i) => processAlive({ pid: i.pid, startTime: procStat(i.pid)?.startTime ?? '' })).length, 0);
});
