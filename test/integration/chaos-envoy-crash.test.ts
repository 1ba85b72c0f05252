/**
 * Envoy crashes under load. With proxy.replicas=2, one Envoy SIGKILLed:
 * the new connections go to the survivor from the next connect (the killed
 * one's listener sockets leave the steering map and the reuseport group as
 * the kernel closes them); no new connection made after the crash fails.
 * The keep-alive and HTTP/2 loads lose the requests on connections to the
 * killed Envoy (counted);
 * the supervisor brings a second Envoy back. With one replica, the time
 * without a live Envoy after a SIGKILL is measured (the new connections
 * meanwhile wait in SYN retransmission; the datapath never lets one past).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedOutside, failedStartedIn, startLoad, stopLoads } from '../helpers/chaos-load.js';
import { CHAOS_FULL, startChaosWorld, totals } from '../helpers/chaos-world.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { procStat } from '../../src/proxy/supervisor-process.js';

async function waitLive(w: { proxy: { instances(): unknown[] } }, n: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (w.proxy.instances().length < n) {
    assert.ok(Date.now() < deadline, `${n} Envoys live again`);
    await sleep(50);
  }
}

test('chaos: one of two Envoys SIGKILLed under load: the survivor takes the new connections, a replacement comes back', { timeout: CHAOS_FULL ? 1_800_000 : 240_000 }, async (t) => {
  requirePrivileges();
  const w = await startChaosWorld(t, { tag: 'chc', octet: 93, portBase: 25000, replicas: 2 });
  assert.equal(w.proxy.instances().length, 2);
  const base = { url: w.apiUrl, allowPath: '/api/v1/users', denyPath: '/admin', concurrency: 3, denyEvery: 10 };
  const fresh = await startLoad(w.sb, w.pod('client').ns, { ...base, mode: 'h1-new-conn' });
  const kept = [await startLoad(w.sb, w.pod('client').ns, { ...base, mode: 'h1-keepalive' }), await startLoad(w.sb, w.pod('client').ns, { ...base, mode: 'h2' })];
  const kills = CHAOS_FULL ? 6 : 2;
  const killedAt: number[] = [];
  const goneAt: number[] = [];
  const seenAt: number[] = [];
  for (let i = 0; i < kills; i++) {
    await sleep(500);
    const [victim] = w.proxy.instances();
    assert.ok(victim);
    const lastExit = w.proxy.status().envoy.lastExit?.at;
    killedAt.push(Date.now());
    process.kill(victim.pid, 'SIGKILL');
    // The kernel tears the process down (main thread first; memory, then sockets, with the last thread).
    for (let st = procStat(victim.pid); st !== null && st.state !== 'Z'; st = procStat(victim.pid)) await sleep(1);
    goneAt.push(Date.now());
    // The supervisor sees the exit (and takes the Envoy out of the steering) within its 10 ms poll.
    for (let at = w.proxy.status().envoy.lastExit?.at; at === lastExit; at = w.proxy.status().envoy.lastExit?.at) await sleep(1);
    seenAt.push(Date.parse(w.proxy.status().envoy.lastExit?.at ?? ''));
    await waitLive(w, 2);
  }
  await sleep(500);
  const freshSummary = await fresh.stop();
  const keptSummary = await stopLoads(kept);
  t.diagnostic(`new connections: ${JSON.stringify(freshSummary)}; kept connections: ${JSON.stringify(keptSummary)}`);
  assert.ok(freshSummary.requests > 50, JSON.stringify(freshSummary));
  // Each crash lasts from the SIGKILL until the agent saw the exit (the Envoy is out of the steering then).
  // A request outstanding during a crash (in flight on the killed Envoy, or made during it) may fail: counted.
  // A connection made between two crashes must not fail.
  const crashes = killedAt.map((k, i) => [k, Math.max(k, seenAt[i] ?? k)] as const);
  const afterSeen = failedOutside(freshSummary, crashes);
  assert.deepEqual(afterSeen, [], 'no new connection made after the agent saw the crash fails');
  // Between the main thread's exit and the agent seeing it (one poll, ≤ 10 ms plus event-loop delay) a new
  // connection can still be handed to the dying Envoy; it moves on when the kernel closes the listener
  // (tcp_migrate_req), rarely not (docs/reliability.md). Counted, not a target.
  const afterGone = failedStartedIn(freshSummary, goneAt.map((g, i) => [g, seenAt[i] ?? g] as const)).length;
  const duringTeardown = failedStartedIn(freshSummary, crashes).length;
  const k = totals(keptSummary);
  // Kept connections (keep-alive, HTTP/2 sessions) on the killed Envoy die with it: their requests
  // in flight, or the first one sent before the client saw the reset, fail. Counted, not a target.
  t.diagnostic(
    `failed new connections after the agent saw the crash: ${afterSeen.length}, made after the main thread exited, before the agent saw it: ${afterGone} (seen ${seenAt.map((x, i) => x - (goneAt[i] ?? x)).join(', ')} ms later); in flight on the killed Envoys: ${freshSummary.failed - duringTeardown} new-connection requests (${duringTeardown} more connected during its teardown), ${k.failed} on kept connections; teardown took ${goneAt.map((g, i) => g - (killedAt[i] ?? g)).join(', ')} ms`,
  );
  assert.equal(freshSummary.wronglyAllowed + k.wronglyAllowed, 0, 'the denied path stays denied');
  assert.equal(freshSummary.wronglyDenied + k.wronglyDenied, 0);
  assert.ok(w.proxy.status().envoy.restarts >= kills);
  const steering = w.proxy.status().envoy.steering;
  t.diagnostic(`steering: ${JSON.stringify(steering)}`);
  assert.equal(steering?.path, 'socket-map');
  assert.deepEqual(steering.ports.map((p) => p.instances.length), steering.ports.map(() => 2), 'both live Envoys steered to');
});

test('chaos: the only Envoy SIGKILLed: time without a live Envoy measured, nothing let past', { timeout: CHAOS_FULL ? 1_800_000 : 240_000 }, async (t) => {
  requirePrivileges();
  const w = await startChaosWorld(t, { tag: 'chs', octet: 94, portBase: 26000, replicas: 1 });
  const fresh = await startLoad(w.sb, w.pod('client').ns, { url: w.apiUrl, allowPath: '/api/v1/users', denyPath: '/admin', mode: 'h1-new-conn', concurrency: 3, denyEvery: 10 });
  const [victim] = w.proxy.instances();
  assert.ok(victim);
  const before = w.proxy.status().envoy.unavailableMs;
  process.kill(victim.pid, 'SIGKILL');
  await sleep(200);
  await waitLive(w, 1);
  const unavailableMs = w.proxy.status().envoy.unavailableMs - before;
  await sleep(500);
  const r = await fresh.stop();
  t.diagnostic(`one replica: no live Envoy for ${unavailableMs} ms; load ${JSON.stringify(r)}`);
  assert.ok(unavailableMs > 0 && unavailableMs < 30_000, String(unavailableMs));
  assert.equal(r.wronglyAllowed, 0, 'the denied path stays denied');
  assert.equal(r.wronglyDenied, 0);
});
