/**
 * npm run bench:dns [-- --json] [--duration S] [--rounds N]
 *
 * DNS queries per second and latency (p50/p99) from a pod to the cluster
 * resolver (the real dnsmasq in a kube-system pod), side by side in one run,
 * at 1,000 and 10,000 queries per second offered (open loop, bench/dns-load.ts):
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
import { writeFileSync } from 'node:fs';
import { repoPath } from '../src/util/paths.js';
import { DnsWorld } from '../test/helpers/dns-world.js';
import { benchArgs } from './args.js';

const { json, num, log } = benchArgs();
const duration = num('--duration', 5);
const rounds = num('--rounds', 3);
const RATES = [1000, 10000];
const NAME = 'www.example.com';

interface Load {
  sent: number;
  answered: number;
  lost: number;
  qps: number;
  p50_ms: number;
  p99_ms: number;
}

function load(ns: string, server: string, qps: number): Promise<Load> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, repoPath('dist', 'bench', 'dns-load.js'), server, NAME, String(qps), String(duration)], { stdio: ['ignore', 'pipe', 'inherit'] });
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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

const cleanups: Array<() => Promise<void>> = [];
try {
  const w = await DnsWorld.create({ after: (fn) => cleanups.push(fn) }, { 'log.level': 'warn' });
  await w.dnsmasq({ ttl: 300 });
  // Warm both paths (and learn the name's addresses once).
  for (const pod of ['web', 'other'] as const) await (await w.client(pod)).call({ op: 'query', server: w.resolver, name: NAME });
  const results: Record<number, Record<'direct' | 'proxy', Load[]>> = {};
  for (const rate of RATES) {
    results[rate] = { direct: [], proxy: [] };
    for (let r = 0; r < rounds; r++) {
      for (const path of r % 2 === 0 ? (['direct', 'proxy'] as const) : (['proxy', 'direct'] as const)) {
        const pod = path === 'direct' ? w.pods.other : w.pods.web;
        const res = await load(pod.ns, w.resolver, rate);
        results[rate]?.[path].push(res);
        log(`${rate} qps offered, round ${r + 1}, ${path}: ${JSON.stringify(res)}`);
      }
    }
  }
  const summary = (list: Load[]) => ({ p50_ms: median(list.map((x) => x.p50_ms)), p99_ms: median(list.map((x) => x.p99_ms)), qps: median(list.map((x) => x.qps)), lost: median(list.map((x) => x.lost)) });
  const at = (rate: number) => ({ direct: summary(results[rate]?.direct ?? []), proxy: summary(results[rate]?.proxy ?? []), qps: rate });
  const out = { ...at(1000), at_10000: at(10000) };
  const row = (rate: number, path: 'direct' | 'proxy') => {
    const s = summary(results[rate]?.[path] ?? []);
    return `| ${rate} | ${path} | ${s.qps} | ${s.p50_ms} | ${s.p99_ms} | ${s.lost} |`;
  };
  const added = (rate: number, k: 'p50_ms' | 'p99_ms') => (at(rate).proxy[k] - at(rate).direct[k]).toFixed(3);
  writeFileSync(
    repoPath('docs', 'benchmarks', 'dns.md'),
    [
      '# DNS proxy benchmark',
      '',
      '`npm run bench:dns` (bench/dns.ts): queries from a pod to the cluster resolver (dnsmasq in a kube-system pod), open loop at a fixed offered rate',
      `(bench/dns-load.ts), ${duration} s per round, ${rounds} rounds alternating the paths; medians over rounds. \`direct\`: a pod without DNS rules`,
      '(the kernel forwards its queries). `proxy`: a pod under examples/policies/l7-dns.yaml, every query through the agent\'s DNS proxy.',
      '',
      `Run: ${new Date().toISOString()}, ${process.env.MESHD_BENCH_NOTE ?? '2 vCPUs, the figures of the code at this commit'}.`,
      '',
      '| offered qps | path | answered qps | p50 ms | p99 ms | lost |',
      '| --- | --- | --- | --- | --- | --- |',
      row(1000, 'direct'),
      row(1000, 'proxy'),
      row(10000, 'direct'),
      row(10000, 'proxy'),
      '',
      `Added by the proxy: p50 ${added(1000, 'p50_ms')} ms, p99 ${added(1000, 'p99_ms')} ms at 1,000 qps; p50 ${added(10000, 'p50_ms')} ms, p99 ${added(10000, 'p99_ms')} ms at 10,000 qps.`,
      '',
    ].join('\n'),
  );
  log(`written docs/benchmarks/dns.md`);
  if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else log(JSON.stringify(out, null, 2));
} finally {
  for (const fn of cleanups.reverse()) await fn().catch((e: unknown) => process.stderr.write(`cleanup: ${String(e)}\n`));
}
