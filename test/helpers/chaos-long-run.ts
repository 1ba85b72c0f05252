/**
 * The long run of the chaos suite and benchmark: steady loads on a chaos
 * world and one policy change a second (each through the agent's order:
 * translate → Envoy's ACK → datapath, then a second's pause) for `seconds`
 * of wall time, with the resident set size of the agent side and of Envoy
 * sampled throughout.
 *
 *   const r = await longRun(w, { seconds: 1800, warmS: 30 });
 *   r.agent.pct, r.envoy.pct   // (RSS at the end − RSS after the warm-up) / RSS after the warm-up × 100
 *
 * "Agent" is this process: it runs the agent's long-lived parts (policy
 * engine, ProxyManager with its xDS and access-log servers and the steering,
 * the datapath's EndpointManager); the loads and the api server run in
 * processes of their own. "Envoy" is the one Envoy that was live after the
 * warm-up; the run fails if it was replaced meanwhile (its growth would
 * compare two processes). The baseline is taken after the warm-up changes,
 * so first allocations (code compiled, pools filled) do not count as growth.
 *
 * With MESHD_CHAOS_HEAP_SNAPSHOTS=<dir> the run writes a V8 heap snapshot of
 * this process at the baseline and at the end (`base.heapsnapshot`,
 * `end.heapsnapshot`), to compare what grew (scripts/heap-diff.mjs).
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeHeapSnapshot } from 'node:v8';
import { type ChaosWorld, churnPolicy, rssBytes } from './chaos-world.js';
import { policyDocs } from './l7-world.js';

export interface RssGrowth {
  /** Bytes after the warm-up, at the end, and the most seen in between. */
  start: number;
  end: number;
  max: number;
  pct: number;
}

export interface LongRunResult {
  changes: number;
  elapsedS: number;
  envoyPid: number;
  agent: RssGrowth;
  envoy: RssGrowth;
  /** One sample every `sampleEveryS`: seconds since the baseline, agent RSS, agent V8 heap used, Envoy RSS (MiB). */
  samples: Array<[number, number, number, number]>;
}

const MiB = 1024 * 1024;

function growth(series: readonly number[]): RssGrowth {
  const start = series[0] ?? 0;
  const end = series[series.length - 1] ?? 0;
  return { start, end, max: Math.max(...series), pct: start > 0 ? ((end - start) / start) * 100 : NaN };
}

export async function longRun(w: ChaosWorld, o: { seconds: number; warmS: number; sampleEveryS?: number }): Promise<LongRunResult> {
  const every = o.sampleEveryS ?? 10;
  let n = 0;
  const change = async () => {
    for (const d of policyDocs(churnPolicy(n))) await w.engine.upsertPolicy(d);
    await w.sync();
    n += 1;
    await sleep(1000);
  };
  for (let i = 0; i < o.warmS; i++) await change();
  const [envoy] = w.proxy.instances();
  if (!envoy) throw new Error('long run: no live Envoy after the warm-up');
  const agentRss: number[] = [];
  const envoyRss: number[] = [];
  const samples: LongRunResult['samples'] = [];
  const t0 = Date.now();
  const sample = () => {
    const m = process.memoryUsage();
    const e = rssBytes(envoy.pid);
    agentRss.push(m.rss);
    envoyRss.push(e);
    samples.push([Math.round((Date.now() - t0) / 1000), +(m.rss / MiB).toFixed(1), +(m.heapUsed / MiB).toFixed(1), +(e / MiB).toFixed(1)]);
  };
  const snapshotDir = process.env.MESHD_CHAOS_HEAP_SNAPSHOTS;
  if (snapshotDir) writeHeapSnapshot(join(snapshotDir, 'base.heapsnapshot'));
  sample();
  const first = n;
  let next = Date.now() + every * 1000;
  // Wall time, not a count of changes: each change waits for Envoy's ACK, so a loaded machine makes fewer.
  while (Date.now() - t0 < o.seconds * 1000) {
    await change();
    if (Date.now() >= next) {
      sample();
      next += every * 1000;
    }
  }
  sample();
  if (snapshotDir) writeHeapSnapshot(join(snapshotDir, 'end.heapsnapshot'));
  const still = w.proxy.instances().map((i) => i.pid);
  if (!still.includes(envoy.pid) || envoyRss.includes(0)) throw new Error(`long run: Envoy ${envoy.pid} was replaced or exited during the run (live now: ${still.join(',')}): its RSS growth would mean nothing`);
  return { changes: n - first, elapsedS: Math.round((Date.now() - t0) / 1000), envoyPid: envoy.pid, agent: growth(agentRss), envoy: growth(envoyRss), samples };
}

/** One line for reports: growth, start → end (max) in MiB. */
export function formatGrowth(g: RssGrowth): string {
  return `${g.pct.toFixed(1)} % (${(g.start / MiB).toFixed(1)} → ${(g.end / MiB).toFixed(1)} MiB, max ${(g.max / MiB).toFixed(1)})`;
}
