/**
 * Agent restarts under load: the agent's proxy half runs as a process of its
 * own (test/helpers/chaos-agent-peer.ts) and is SIGTERMed and SIGKILLed in
 * turn; each new one adopts the running Envoy. The Envoy keeps its pid, its
 * listeners are never added, modified or removed again (its xDS stream
 * reconnects and receives the same content), and the loads see no failed
 * request while the denied path stays denied.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminRequest } from '../../src/proxy/supervisor-process.js';
import { startAgentProcess } from '../helpers/chaos-agent.js';
import { startHey } from '../helpers/chaos-hey.js';
import { stopLoads } from '../helpers/chaos-load.js';
import { CHAOS_FULL, startChaosWorld, totals } from '../helpers/chaos-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

/** listener_manager counters that move when Envoy's listeners change. */
async function listenerChanges(adminSocket: string): Promise<Record<string, number>> {
  const r = await adminRequest(adminSocket, '/stats?filter=^listener_manager\\.listener_(added|modified|removed|create_success)$');
  const out: Record<string, number> = {};
  for (const line of r.body.trim().split('\n')) {
    const [k, v] = line.split(': ');
    if (k && v) out[k] = Number(v);
  }
  return out;
}

test('chaos: agent SIGTERM and SIGKILL under load: the running Envoy is adopted, its listeners untouched, no failed request', { timeout: CHAOS_FULL ? 1_800_000 : 240_000 }, async (t) => {
  requirePrivileges();
  const w = await startChaosWorld(t, { tag: 'cha', octet: 92, portBase: 24000 });
  const [envoy] = w.proxy.instances();
  assert.ok(envoy);
  const baseline = await listenerChanges(envoy.adminSocket);
  assert.ok((baseline['listener_manager.listener_added'] ?? 0) > 0, JSON.stringify(baseline));

  const loads = await w.startLoads();
  const hey = [await startHey(w.sb, w.pod('client').ns, `${w.apiUrl}/api/v1/users`, { keepAlive: true }), await startHey(w.sb, w.pod('client').ns, `${w.apiUrl}/api/v1/users`, { keepAlive: false })];
  // The in-process agent leaves (as on SIGTERM); from here on agents are processes.
  await w.proxy.detach();

  const cycles = CHAOS_FULL ? 5 : 1;
  for (let i = 0; i < cycles; i++) {
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      const a = await startAgentProcess(w);
      assert.deepEqual(a.pids, [envoy.pid], 'the new agent adopted the running Envoy');
      await sleep(300);
      a.child.kill(sig);
      const code = await a.exited;
      if (sig === 'SIGTERM') assert.equal(code, 0);
      // Agent down: the Envoy keeps serving on its own.
      await sleep(300);
    }
  }
  // The last agent: adopts and, at the end of the test, stops everything.
  const last = await w.restartProxy();
  assert.deepEqual(last.instances().map((i) => i.pid), [envoy.pid]);
  await w.sync(last);
  await sleep(300);

  const r = await stopLoads(loads);
  const heyReports = [await hey[0]?.stop(), await hey[1]?.stop()];
  t.diagnostic(`hey: ${JSON.stringify(heyReports)}`);
  for (const h of heyReports) assert.deepEqual({ statuses: Object.keys(h?.statuses ?? {}), errors: h?.errors }, { statuses: ['200'], errors: 0 }, JSON.stringify(h));
  const sum = totals(r);
  t.diagnostic(`loads: ${JSON.stringify(r)}`);
  assert.deepEqual(await listenerChanges(envoy.adminSocket), baseline, 'no listener was added, modified or removed by the restarts');
  assert.ok(sum.requests > 100 && sum.denied > 0, JSON.stringify(sum));
  assert.deepEqual({ failed: sum.failed, wronglyAllowed: sum.wronglyAllowed, wronglyDenied: sum.wronglyDenied }, { failed: 0, wronglyAllowed: 0, wronglyDenied: 0 }, JSON.stringify(r));
});
