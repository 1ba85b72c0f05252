/**
 * Policy churn under load: a second policy on the api's L7 port is edited
 * back to back (up to 1,000 edits a minute), each edit through the agent's
 * order (translate → Envoy ACK → datapath). The edits never change the
 * verdict of the loaded requests (they allow other paths), so no request may
 * fail, no allowed one may be denied and the denied path stays denied.
 * In the full suite (MESHD_CHAOS_FULL=1) a long run follows: mixed load and
 * one policy change a second for MESHD_CHAOS_LONG_S seconds (default 1800),
 * with the RSS growth of the agent (this process) and of Envoy
 * (test/helpers/chaos-long-run.ts says how it is measured).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { stopLoads } from '../helpers/chaos-load.js';
import { formatGrowth, longRun } from '../helpers/chaos-long-run.js';
import { CHAOS_FULL, churnPolicy, startChaosWorld, totals } from '../helpers/chaos-world.js';
import { policyDocs } from '../helpers/l7-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('chaos: policy churn under load (up to 1,000 edits a minute): no request wrongly denied or failed', { timeout: CHAOS_FULL ? 1_800_000 : 240_000 }, async (t) => {
  requirePrivileges();
  const w = await startChaosWorld(t, { tag: 'chp', octet: 95, portBase: 27000 });
  const loads = await w.startLoads();
  const durationMs = CHAOS_FULL ? 60_000 : 10_000;
  const minGapMs = 60; // at most 1,000 a minute
  const start = Date.now();
  let edits = 0;
  while (Date.now() - start < durationMs) {
    const t0 = Date.now();
    for (const d of policyDocs(churnPolicy(edits))) await w.engine.upsertPolicy(d);
    await w.sync();
    edits += 1;
    const left = minGapMs - (Date.now() - t0);
    if (left > 0) await sleep(left);
  }
  const perMinute = Math.round((edits * 60_000) / (Date.now() - start));
  const r = await stopLoads(loads);
  const sum = totals(r);
  t.diagnostic(`${edits} edits (${perMinute}/min); loads: ${JSON.stringify(r)}`);
  assert.ok(edits >= 20, `edits: ${edits}`);
  assert.ok(sum.requests > 100 && sum.denied > 0, JSON.stringify(sum));
  assert.deepEqual({ failed: sum.failed, wronglyAllowed: sum.wronglyAllowed, wronglyDenied: sum.wronglyDenied }, { failed: 0, wronglyAllowed: 0, wronglyDenied: 0 }, JSON.stringify(r));
});

const LONG_S = Number(process.env.MESHD_CHAOS_LONG_S ?? '1800');

test('chaos (full suite only): long mixed load with a policy change a second: RSS growth of agent and Envoy', { skip: !CHAOS_FULL && 'long run: npm run test:chaos', timeout: (LONG_S + 900) * 1000 }, async (t) => {
  requirePrivileges();
  const w = await startChaosWorld(t, { tag: 'chl', octet: 96, portBase: 28000 });
  const loads = await w.startLoads();
  const r = await longRun(w, { seconds: LONG_S, warmS: 30 });
  const res = await stopLoads(loads);
  const sum = totals(res);
  t.diagnostic(`RSS growth over ${r.elapsedS} s (${r.changes} policy changes): agent ${formatGrowth(r.agent)}, envoy ${formatGrowth(r.envoy)}; loads ${JSON.stringify(sum)}`);
  t.diagnostic(`samples [s, agent RSS MiB, agent heap used MiB, envoy RSS MiB]: ${JSON.stringify(r.samples)}`);
  assert.deepEqual({ failed: sum.failed, wronglyAllowed: sum.wronglyAllowed, wronglyDenied: sum.wronglyDenied }, { failed: 0, wronglyAllowed: 0, wronglyDenied: 0 }, JSON.stringify(res));
  assert.ok(r.agent.pct < 10, `agent RSS growth ${formatGrowth(r.agent)}`);
  assert.ok(r.envoy.pct < 10, `envoy RSS growth ${formatGrowth(r.envoy)}`);
});
