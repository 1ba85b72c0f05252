/**
 * Planned Envoy replacement under load: ProxyManager.restart() (what
 * `meshd proxy restart` asks the agent for) again and again, then an agent
 * that comes back with another Envoy binary path, then one with another
 * bootstrap (SotW instead of delta xDS). Each time the new Envoy is
 * configured and the agent's steering points new connections at it before
 * the old one drains; the loads (HTTP/1.1 keep-alive, HTTP/1.1 new
 * connection per request, HTTP/2, and Go's client with and without
 * keep-alive) see no failed request and the denied path stays denied
 * throughout.
 */
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { findEnvoy } from '../../envoy/binary.js';
import { startHey } from '../helpers/chaos-hey.js';
import { stopLoads } from '../helpers/chaos-load.js';
import { CHAOS_FULL, startChaosWorld, totals } from '../helpers/chaos-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('chaos: proxy restart, Envoy binary change and bootstrap change under load: no failed request, the denied path stays denied', { timeout: CHAOS_FULL ? 1_800_000 : 240_000 }, async (t) => {
  requirePrivileges();
  const w = await startChaosWorld(t, { tag: 'chr', octet: 91, portBase: 23000 });
  const loads = await w.startLoads();
  // hey (Go's HTTP client) as a second client: keep-alive and a new connection per request.
  const hey = [await startHey(w.sb, w.pod('client').ns, `${w.apiUrl}/api/v1/users`, { keepAlive: true }), await startHey(w.sb, w.pod('client').ns, `${w.apiUrl}/api/v1/users`, { keepAlive: false })];
  const timeline: string[] = [];
  const mark = (what: string) => timeline.push(`${new Date().toISOString()} ${what}`);
  const before = w.proxy.instances().map((i) => i.pid);
  const restarts = CHAOS_FULL ? 10 : 3;
  for (let i = 0; i < restarts; i++) {
    mark(`restart ${i}`);
    const r = await w.proxy.restart();
    mark(`restart ${i} done`);
    assert.equal(r.replaced, 1);
    await sleep(300);
  }
  const after = w.proxy.instances().map((i) => i.pid);
  assert.equal(after.length, 1);
  assert.ok(!before.includes(after[0] ?? 0), 'the Envoy was replaced');
  assert.equal(w.proxy.status().envoy.replacements, restarts);
  // The replaced Envoys' xDS status is forgotten (one entry per Envoy ever started would grow without bound).
  const liveNodes = w.proxy.instances().map((i) => i.nodeId).sort();
  for (const deadline = Date.now() + 10_000; w.proxy.xdsNodes().length > liveNodes.length && Date.now() < deadline; ) await sleep(50);
  assert.deepEqual(w.proxy.xdsNodes(), liveNodes, 'xDS nodes known after the restarts');

  // Another binary path (a wrapper around the same binary): the next agent replaces the running Envoy.
  const wrapper = join(w.stateDir, 'envoy-wrapper.sh');
  writeFileSync(wrapper, `#!/bin/sh\nexec '${findEnvoy().path}' "$@"\n`);
  chmodSync(wrapper, 0o755);
  mark('binary change');
  await w.proxy.detach();
  const p2 = await w.restartProxy('delta', { envoyBinaryPath: wrapper });
  await w.sync(p2);
  const viaWrapper = p2.instances().map((i) => i.pid);
  assert.equal(viaWrapper.length, 1);
  assert.ok(!after.includes(viaWrapper[0] ?? 0), 'another binary: a new Envoy');
  await sleep(500);

  // Another bootstrap (SotW xDS): replaced the same way.
  mark('bootstrap change');
  await p2.detach();
  const p3 = await w.restartProxy('sotw', { envoyBinaryPath: wrapper });
  await w.sync(p3);
  const viaSotw = p3.instances().map((i) => i.pid);
  assert.ok(!viaWrapper.includes(viaSotw[0] ?? 0), 'another bootstrap: a new Envoy');
  await sleep(500);

  mark('end');
  const r = await stopLoads(loads);
  const heyReports = [await hey[0]?.stop(), await hey[1]?.stop()];
  t.diagnostic(`hey: ${JSON.stringify(heyReports)}`);
  const [heyKept, heyNew] = heyReports;
  for (const h of heyReports) assert.ok(h && (h.statuses['200'] ?? 0) > 50, JSON.stringify(h));
  assert.deepEqual({ statuses: Object.keys(heyKept?.statuses ?? {}), errors: heyKept?.errors }, { statuses: ['200'], errors: 0 }, JSON.stringify(heyKept));
  // Go's client with a new connection per request: the steering moves new connections to the new Envoy
  // before the old one drains, so none lands on a closing listener.
  assert.deepEqual({ statuses: Object.keys(heyNew?.statuses ?? {}), errors: heyNew?.errors }, { statuses: ['200'], errors: 0 }, JSON.stringify(heyNew));
  const steering = p3.status().envoy.steering;
  t.diagnostic(`steering: ${JSON.stringify(steering)}`);
  assert.equal(steering?.path, 'socket-map', 'new connections are steered by the agent\'s map');
  assert.deepEqual(steering.ports.map((p) => p.instances), steering.ports.map(() => p3.instances().map((i) => i.id)));
  assert.ok(steering.counters.selected > 0 && steering.counters.tcMap > 0, JSON.stringify(steering.counters));
  const sum = totals(r);
  t.diagnostic(`loads: ${JSON.stringify(r)}`);
  t.diagnostic(`events: ${timeline.join('; ')}`);
  assert.ok(sum.requests > 100, `enough requests: ${sum.requests}`);
  assert.ok(sum.denied > 0, 'the denied path was asked');
  assert.deepEqual({ failed: sum.failed, wronglyAllowed: sum.wronglyAllowed, wronglyDenied: sum.wronglyDenied }, { failed: 0, wronglyAllowed: 0, wronglyDenied: 0 }, JSON.stringify(r));
});
