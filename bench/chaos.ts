/**
 * Chaos benchmark: the events of docs/reliability.md under steady HTTP load
 * (HTTP/1.1 keep-alive, HTTP/1.1 one connection per request, HTTP/2) through
 * the docs' L7 policy, with the real Envoy and the real kernel datapath, and
 * the failed requests of each:
 *
 *   npm run bench:chaos -- [--json] [--restarts N] [--agent-cycles N] [--kills N] [--churn-s S] [--long-s S]
 *
 * The last line with --json:
 *   {"proxy_restart_failed":…, "agent_restart_failed":…, "envoy_crash_failed_new_conns":…,
 *    "policy_churn_wrongly_denied":…, "rss_growth_pct":…, …}
 * Needs root (namespaces, BPF).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgentProcess } from '../test/helpers/chaos-agent.js';
import { failedOutside, failedStartedIn, type LoadSummary, startLoad, stopLoads } from '../test/helpers/chaos-load.js';
import { formatGrowth, type LongRunResult, longRun } from '../test/helpers/chaos-long-run.js';
import { type ChaosWorld, churnPolicy, startChaosWorld, totals } from '../test/helpers/chaos-world.js';
import { policyDocs } from '../test/helpers/l7-world.js';
import { procStat } from '../src/proxy/supervisor-process.js';
import { benchArgs } from './args.js';

const args = benchArgs();

/** A test context for the world helpers: cleanups run in reverse at the end. */
function scope(): { after(fn: () => unknown): void; close(): Promise<void> } {
  const fns: Array<() => unknown> = [];
  return {
    after: (fn) => void fns.push(fn),
    async close() {
      for (const fn of fns.reverse()) {
        try {
          await fn();
        } catch (e) {
          args.log(`cleanup: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    },
  };
}

async function inWorld<T>(o: Parameters<typeof startChaosWorld>[1], fn: (w: ChaosWorld) => Promise<T>): Promise<T> {
  const s = scope();
  try {
    const w = await startChaosWorld(s, o);
    return await fn(w);
  } finally {
    await s.close();
  }
}

interface EventResult {
  failed: number;
  wronglyAllowed: number;
  wronglyDenied: number;
  requests: number;
  detail: Record<string, LoadSummary>;
}

function result(r: Record<string, LoadSummary>): EventResult {
  const t = totals(r);
  return { failed: t.failed, wronglyAllowed: t.wronglyAllowed, wronglyDenied: t.wronglyDenied, requests: t.requests, detail: r };
}

async function proxyRestarts(n: number): Promise<EventResult & { unavailableMs: number; steering: string }> {
  return inWorld({ tag: 'bcr', octet: 101, portBase: 33000 }, async (w) => {
    const loads = await w.startLoads();
    for (let i = 0; i < n; i++) {
      await w.proxy.restart();
      await sleep(300);
    }
    const { unavailableMs, steering } = w.proxy.status().envoy;
    return { ...result(await stopLoads(loads)), unavailableMs, steering: steering?.path ?? 'socket-lookup' };
  });
}

async function agentRestarts(cycles: number): Promise<EventResult> {
  return inWorld({ tag: 'bca', octet: 102, portBase: 34000 }, async (w) => {
    const loads = await w.startLoads();
    await w.proxy.detach();
    for (let i = 0; i < cycles; i++) {
      for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
        const a = await startAgentProcess(w);
        await sleep(300);
        a.child.kill(sig);
        await a.exited;
        await sleep(300);
      }
    }
    const last = await w.restartProxy();
    await w.sync(last);
    return result(await stopLoads(loads));
  });
}

async function envoyCrashes(
  kills: number,
  replicas: number,
): Promise<{ newConns: LoadSummary; failedNewConns: number; failedBeforeSeen: number; kept: EventResult; unavailableMs: number }> {
  return inWorld({ tag: `bk${replicas}`, octet: 102 + replicas, portBase: 35000 + replicas * 1000 }, async (w) => {
    const base = { url: w.apiUrl, allowPath: '/api/v1/users', denyPath: '/admin', concurrency: 3, denyEvery: 10 };
    const fresh = await startLoad(w.sb, w.pod('client').ns, { ...base, mode: 'h1-new-conn' });
    const kept = [await startLoad(w.sb, w.pod('client').ns, { ...base, mode: 'h1-keepalive' }), await startLoad(w.sb, w.pod('client').ns, { ...base, mode: 'h2' })];
    const killedAt: number[] = [];
    const goneAt: number[] = [];
    const seenAt: number[] = [];
    for (let i = 0; i < kills; i++) {
      await sleep(500);
      const [victim] = w.proxy.instances();
      if (!victim) throw new Error('no live Envoy');
      const lastExit = w.proxy.status().envoy.lastExit?.at;
      killedAt.push(Date.now());
      process.kill(victim.pid, 'SIGKILL');
      for (let st = procStat(victim.pid); st !== null && st.state !== 'Z'; st = procStat(victim.pid)) await sleep(1);
      goneAt.push(Date.now());
      // The agent saw the exit (the Envoy left the steering): from here on a new connection must not fail.
      for (let at = lastExit; at === lastExit; at = w.proxy.status().envoy.lastExit?.at) await sleep(1);
      seenAt.push(Date.parse(w.proxy.status().envoy.lastExit?.at ?? ''));
      const deadline = Date.now() + 30_000;
      while (w.proxy.instances().length < replicas && Date.now() < deadline) await sleep(50);
    }
    await sleep(500);
    const unavailableMs = w.proxy.status().envoy.unavailableMs;
    const newConns = await fresh.stop();
    // Requests outstanding when the Envoy died are in flight; those started after the agent saw it gone are new
    // connections; those started between its main thread's exit and that moment are counted apart.
    const crashes = killedAt.map((k, i) => [k, Math.max(k, seenAt[i] ?? k)] as const);
    const failedNewConns = failedOutside(newConns, crashes).length;
    const failedBeforeSeen = failedStartedIn(newConns, goneAt.map((g, i) => [g, seenAt[i] ?? g] as const)).length;
    return { newConns, failedNewConns, failedBeforeSeen, kept: result(await stopLoads(kept)), unavailableMs };
  });
}

async function policyChurn(seconds: number): Promise<EventResult & { edits: number; perMinute: number }> {
  return inWorld({ tag: 'bcp', octet: 106, portBase: 38000 }, async (w) => {
    const loads = await w.startLoads();
    const start = Date.now();
    let edits = 0;
    while (Date.now() - start < seconds * 1000) {
      const t0 = Date.now();
      for (const d of policyDocs(churnPolicy(edits))) await w.engine.upsertPolicy(d);
      await w.sync();
      edits += 1;
      const left = 60 - (Date.now() - t0);
      if (left > 0) await sleep(left);
    }
    const perMinute = Math.round((edits * 60_000) / (Date.now() - start));
    return { ...result(await stopLoads(loads)), edits, perMinute };
  });
}

async function longRunIn(seconds: number): Promise<{ run: LongRunResult; result: EventResult }> {
  return inWorld({ tag: 'bcl', octet: 107, portBase: 39000 }, async (w) => {
    const loads = await w.startLoads();
    const run = await longRun(w, { seconds, warmS: Math.min(30, Math.max(5, Math.floor(seconds / 10))) });
    return { run, result: result(await stopLoads(loads)) };
  });
}

const restarts = args.num('--restarts', 10);
const cycles = args.num('--agent-cycles', 3);
const kills = args.num('--kills', 3);
const churnS = args.num('--churn-s', 20);
const longS = args.num('--long-s', 60);

args.log(`proxy restart ×${restarts} under load…`);
const pr = await proxyRestarts(restarts);
args.log(`  failed ${pr.failed} of ${pr.requests}; wrongly allowed ${pr.wronglyAllowed}`);
args.log(`agent SIGTERM+SIGKILL ×${cycles} under load…`);
const ar = await agentRestarts(cycles);
args.log(`  failed ${ar.failed} of ${ar.requests}; wrongly allowed ${ar.wronglyAllowed}`);
args.log(`one of two Envoys SIGKILLed ×${kills}…`);
const c2 = await envoyCrashes(kills, 2);
args.log(`  new connections failed ${c2.failedNewConns} of ${c2.newConns.requests} (${c2.newConns.failed - c2.failedNewConns} more in flight); kept connections failed ${c2.kept.failed}`);
args.log('the only Envoy SIGKILLed ×1…');
const c1 = await envoyCrashes(1, 1);
args.log(`  no live Envoy for ${c1.unavailableMs} ms; new connections failed ${c1.newConns.failed}, max latency ${c1.newConns.maxLatencyMs} ms`);
args.log(`policy churn for ${churnS} s…`);
const pc = await policyChurn(churnS);
args.log(`  ${pc.edits} edits (${pc.perMinute}/min); wrongly denied ${pc.wronglyDenied}; failed ${pc.failed}`);
args.log(`long run ${longS} s, a policy change a second…`);
const lr = await longRunIn(longS);
args.log(`  RSS growth over ${lr.run.elapsedS} s: agent ${formatGrowth(lr.run.agent)}, envoy ${formatGrowth(lr.run.envoy)}`);

const out = {
  proxy_restart_failed: pr.failed,
  agent_restart_failed: ar.failed,
  envoy_crash_failed_new_conns: c2.failedNewConns,
  policy_churn_wrongly_denied: pc.wronglyDenied,
  rss_growth_pct: Number(Math.max(lr.run.agent.pct, lr.run.envoy.pct).toFixed(2)),
  wrongly_allowed: pr.wronglyAllowed + ar.wronglyAllowed + c2.newConns.wronglyAllowed + c2.kept.wronglyAllowed + c1.newConns.wronglyAllowed + pc.wronglyAllowed + lr.result.wronglyAllowed,
  proxy_restarts: restarts,
  proxy_restart_requests: pr.requests,
  proxy_restart_unavailable_ms: pr.unavailableMs,
  /** How new connections reached the Envoys (src/proxy/steering.ts): socket-map (the agent's) or socket-lookup. */
  steering: pr.steering,
  agent_restart_cycles: cycles,
  agent_restart_requests: ar.requests,
  envoy_crash_kills: kills,
  envoy_crash_new_conn_requests: c2.newConns.requests,
  envoy_crash_failed_in_flight: c2.newConns.failed - c2.failedNewConns + c2.kept.failed,
  /** New connections made after the killed Envoy's main thread exited but before the agent saw it (part of in_flight). */
  envoy_crash_failed_before_seen: c2.failedBeforeSeen,
  single_replica_unavailable_ms: c1.unavailableMs,
  single_replica_failed_new_conns: c1.newConns.failed,
  single_replica_max_latency_ms: c1.newConns.maxLatencyMs,
  policy_churn_edits_per_minute: pc.perMinute,
  policy_churn_failed: pc.failed,
  long_run_s: longS,
  rss_growth_agent_pct: Number(lr.run.agent.pct.toFixed(2)),
  rss_growth_envoy_pct: Number(lr.run.envoy.pct.toFixed(2)),
  long_run_elapsed_s: lr.run.elapsedS,
  long_run_failed: lr.result.failed,
};
if (args.json) process.stdout.write(`${JSON.stringify(out)}\n`);
else console.log(out);
