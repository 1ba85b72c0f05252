/**
 * npm run bench:dns [-- --json] [--duration S] [--rounds N] [--only-1000]
 *
 * DNS queries per second and latency (p50/p99) from a pod to the cluster
 * resolver (the real dnsmasq in a kube-system pod), side by side in one run,
 * at 1,000 and 10,000 queries per second offered (open loop, bench/dns-load.c,
 * compiled here with gcc: the same generator for both paths):
 *
 *   direct  a pod whose egress has no DNS rules: the kernel forwards its
 *           queries to the resolver (meshd's datapath attached, no proxy);
 *   proxy   a pod under examples/policies/l7-dns.yaml: every query is
 *           redirected to the agent's DNS proxy, parsed, judged against the
 *           rules, forwarded with the pod's identity in its mark, and the
 *           answer checked and sent back from the resolver's address.
 *
 * The whole node runs as in the DNS tests (the agent in this process,
 * standalone, on the shipped examples; pods through meshd-cni). Rounds
 * alternate the two paths; the medians over rounds are reported. Writes
 * docs/benchmarks/dns.md; with --json the last stdout line is
 * {"direct": {"p50_ms","p99_ms","qps"}, "proxy": {…}, "qps": 1000, "at_10000": {"direct": {…}, "proxy": {…}, "qps": 10000}}.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { STAGES } from '../src/dns/proxy.js';
import type { WorkerStageReport } from '../src/dns/proxy-messages.js';
import { run } from '../src/util/exec.js';
import { repoPath } from '../src/util/paths.js';
import { DnsWorld } from '../test/helpers/dns-world.js';
import { benchArgs } from './args.js';
import { median, spread } from './stats.js';

const { json, num, log } = benchArgs();
const duration = num('--duration', 5);
const rounds = num('--rounds', 3);
const RATES = process.argv.includes('--only-1000') ? [1000] : [1000, 10000];
const NAME = 'www.example.com';

interface Load {
  sent: number;
  answered: number;
  lost: number;
  qps: number;
  p50_ms: number;
  p99_ms: number;
  /** How late the generator sent on its schedule (p99). */
  loop_p99_ms: number;
  /** Proxy rounds: datagrams the kernel dropped on the proxy's UDP sockets (receive buffers full) during the round. */
  proxy_receive_drops?: number;
}

/** What the agent process did while the proxy path ran at 1,000 qps: its stages, its event-loop delay, its GC pauses. */
interface AgentSide {
  /** The proxy's stages and its worker thread's loop delay and GC pauses. */
  stages: WorkerStageReport | null;
  loop_p99_ms: number;
  loop_max_ms: number;
  gc_pauses: number;
  gc_max_ms: number;
  gc_total_ms: number;
}

/** Times the agent while `fn` runs: the proxy's stages, this process's event-loop delay and GC pauses. */
async function agentSide<T>(proxy: { traceStages(): Promise<void>; stageReport(): Promise<WorkerStageReport | null> } | undefined, fn: () => Promise<T>): Promise<[T, AgentSide]> {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const gcs: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push(e.duration);
  });
  obs.observe({ entryTypes: ['gc'] });
  loop.enable();
  await proxy?.traceStages();
  try {
    const r = await fn();
    const ms = (ns: number) => Number((ns / 1e6).toFixed(3));
    return [r, { stages: (await proxy?.stageReport()) ?? null, loop_p99_ms: ms(loop.percentile(99)), loop_max_ms: ms(loop.max), gc_pauses: gcs.length, gc_max_ms: Number(Math.max(0, ...gcs).toFixed(3)), gc_total_ms: Number(gcs.reduce((a, b) => a + b, 0).toFixed(3)) }];
  } finally {
    loop.disable();
    obs.disconnect();
  }
}

function load(bin: string, ns: string, server: string, qps: number): Promise<Load> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', ns, bin, server, NAME, String(qps), String(duration)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`dns-load exited ${code}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as Load);
      } catch (e) {
        reject(e);
      }
    });
  });
}

const cleanups: Array<() => Promise<void>> = [];
try {
  const tmp = mkdtempSync(join(tmpdir(), 'meshd-bench-dns-'));
  cleanups.push(async () => rmSync(tmp, { recursive: true, force: true }));
  const bin = join(tmp, 'dns-load');
  await run('gcc', ['-O2', '-Wall', '-pthread', '-o', bin, repoPath('bench', 'dns-load.c')]);
  // The agent rescans its manifest directory at the production interval (the tests' 500 ms would be agent work the bench measures).
  const w = await DnsWorld.create({ after: (fn) => cleanups.push(fn) }, { 'log.level': 'warn' }, { rescanMs: 2000 });
  await w.dnsmasq({ ttl: 300 });
  // Warm both paths (and learn the name's addresses once).
  for (const pod of ['web', 'other'] as const) await (await w.client(pod)).call({ op: 'query', server: w.resolver, name: NAME });
  const results: Record<number, Record<'direct' | 'proxy', Load[]>> = {};
  const sides: Record<'direct' | 'proxy', AgentSide[]> = { direct: [], proxy: [] };
  for (const rate of RATES) {
    results[rate] = { direct: [], proxy: [] };
    for (let r = 0; r < rounds; r++) {
      for (const path of r % 2 === 0 ? (['direct', 'proxy'] as const) : (['proxy', 'direct'] as const)) {
        const pod = path === 'direct' ? w.pods.other : w.pods.web;
        const proxy = w.node.running?.agent.dnsService()?.proxy;
        const dropsBefore = (await proxy?.stats())?.receiveDrops ?? 0;
        const [res, side] = await agentSide(path === 'proxy' && rate === 1000 ? proxy : undefined, () => load(bin, pod.ns, w.resolver, rate));
        if (path === 'proxy') res.proxy_receive_drops = ((await proxy?.stats())?.receiveDrops ?? 0) - dropsBefore;
        results[rate]?.[path].push(res);
        if (rate === 1000) sides[path].push(side);
        log(`  agent side: ${JSON.stringify(side)}`);
        log(`${rate} qps offered, round ${r + 1}, ${path}: ${JSON.stringify(res)}`);
      }
    }
  }
  const summary = (list: Load[]) => ({ p50_ms: median(list.map((x) => x.p50_ms)), p99_ms: median(list.map((x) => x.p99_ms)), qps: median(list.map((x) => x.qps)), lost: median(list.map((x) => x.lost)) });
  const at = (rate: number) => ({ direct: summary(results[rate]?.direct ?? []), proxy: summary(results[rate]?.proxy ?? []), qps: rate });
  const out = { ...at(1000), at_10000: at(10000) };
  const row = (rate: number, path: 'direct' | 'proxy') => {
    const list = results[rate]?.[path] ?? [];
    const s = summary(list);
    return `| ${rate} | ${path} | ${s.qps} | ${spread(list.map((x) => x.p50_ms), 3)} | ${spread(list.map((x) => x.p99_ms), 3)} | ${s.lost} |`;
  };
  const added = (rate: number, k: 'p50_ms' | 'p99_ms') => (at(rate).proxy[k] - at(rate).direct[k]).toFixed(3);
  const med = (xs: number[]) => Number(median(xs).toFixed(3));
  const stageRows = STAGES.map((st) => {
    const v = (k: 'p50_ms' | 'p99_ms' | 'max_ms') => med(sides.proxy.map((x) => x.stages?.stages[st][k] ?? Number.NaN));
    return `| proxy: ${st} | ${v('p50_ms')} | ${v('p99_ms')} | ${v('max_ms')} |`;
  });
  const sideRow = (label: string, path: 'direct' | 'proxy') =>
    `| ${label} | gc pauses ${med(sides[path].map((x) => x.gc_pauses))}, max ${med(sides[path].map((x) => x.gc_max_ms))} ms | loop delay p99 ${med(sides[path].map((x) => x.loop_p99_ms))} | max ${med(sides[path].map((x) => x.loop_max_ms))} |`;
  const workerRow = () => {
    const v = (k: 'loop_p99_ms' | 'loop_max_ms' | 'gc_pauses' | 'gc_max_ms') => med(sides.proxy.map((x) => x.stages?.worker[k] ?? Number.NaN));
    return `| proxy worker thread | gc pauses ${v('gc_pauses')}, max ${v('gc_max_ms')} ms | loop delay p99 ${v('loop_p99_ms')} | max ${v('loop_max_ms')} |`;
  };
  const genRow = (path: 'direct' | 'proxy') => `| load generator (${path} rounds): sends late on its schedule | | ${med((results[1000]?.[path] ?? []).map((x) => x.loop_p99_ms))} | |`;
  // A hand-written section after the generated part (the before/after of the latency work) is kept.
  const docFile = repoPath('docs', 'benchmarks', 'dns.md');
  const kept = existsSync(docFile) ? (/\n(## Where the time goes[\s\S]*)$/.exec(readFileSync(docFile, 'utf8'))?.[1] ?? '') : '';
  writeFileSync(
    docFile,
    [
      '# DNS proxy benchmark',
      '',
      '`npm run bench:dns` (bench/dns.ts): queries from a pod to the cluster resolver (dnsmasq in a kube-system pod), open loop at a fixed offered rate',
      `(bench/dns-load.c: a sender thread on absolute deadlines, answers timed by their kernel receive stamp), ${duration} s per round, ${rounds} rounds alternating the paths; medians over rounds (min–max in brackets). \`direct\`: a pod without DNS rules`,
      '(the kernel forwards its queries). `proxy`: a pod under examples/policies/l7-dns.yaml, every query through the agent\'s DNS proxy.',
      '',
      `Run: ${new Date().toISOString()}, ${process.env.MESHD_BENCH_NOTE ?? '2 vCPUs, the figures of the code at this commit'}.`,
      '',
      '| offered qps | path | answered qps | p50 ms | p99 ms | lost |',
      '| --- | --- | --- | --- | --- | --- |',
      ...RATES.flatMap((r) => [row(r, 'direct'), row(r, 'proxy')]),
      '',
      RATES.includes(10000)
        ? `Added by the proxy: p50 ${added(1000, 'p50_ms')} ms, p99 ${added(1000, 'p99_ms')} ms at 1,000 qps; p50 ${added(10000, 'p50_ms')} ms, p99 ${added(10000, 'p99_ms')} ms at 10,000 qps.`
        : `Added by the proxy: p50 ${added(1000, 'p50_ms')} ms, p99 ${added(1000, 'p99_ms')} ms at 1,000 qps.`,
      '',
      '### Inside the agent at 1,000 qps (this run, medians over rounds)',
      '',
      'Per allowed query, in the proxy: `judge` = parse + policy lookup; `send` = the upstream send; `upstream` = until the',
      "resolver's answer is read (includes the resolver and the kernel both ways); `enforce` = the toFQDNs path (cache,",
      'identities, maps; nothing to write for a name already learned); `reply` = the reply to the client. The agent process\'s',
      'event-loop delay and GC pauses while each path ran (the proxy runs in its own worker thread), and how late the load generator sent (both paths pay it).',
      '',
      '| stage | p50 ms | p99 ms | max ms |',
      '| --- | --- | --- | --- |',
      ...stageRows,
      sideRow('agent during direct rounds', 'direct'),
      sideRow('agent during proxy rounds', 'proxy'),
      workerRow(),
      genRow('direct'),
      genRow('proxy'),
      '',
      ...(kept ? [kept.trimEnd(), ''] : []),
    ].join('\n'),
  );
  log(`written docs/benchmarks/dns.md`);
  if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else log(JSON.stringify(out, null, 2));
} finally {
  for (const fn of cleanups.reverse()) await fn().catch((e: unknown) => process.stderr.write(`cleanup: ${String(e)}\n`));
}
