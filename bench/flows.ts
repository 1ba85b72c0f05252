/**
 * npm run bench:flows [-- --json] [--duration S] [--from FLOWS_PER_S] [--rounds N] [--wrk-duration S] [--pipeline-only | --l7-only] [--dev-run]
 *
 * Two questions about flow observability, answered in one run:
 *
 * 1. flows_per_s: the highest rate (flows/s) the node's flow pipeline sustains
 *    with no loss, into the store and to one follower: datapath records are
 *    offered in batches of 64 (as the ring-buffer reader delivers them) at a
 *    rising target rate, each one parsed into a Hubble flow (identity labels,
 *    pods, policy decision from a real policy engine), stored, counted by the
 *    flow metrics, and streamed over the observer API's unix socket to a
 *    follower in another process (GetFlows follow, as `meshd observe -f`). A
 *    step passes when the follower received every flow and no LostEvent, and
 *    the offered rate was actually reached.
 * 2. l7_p50_ratio_on_off: the cost on the L7 path. A whole agent (the test
 *    helper's AgentNode: meshd-cni pods, the node Envoy, the demo's HTTP
 *    policy) in three modes: off (hubble.enabled=false, which also leaves
 *    the access log out of Envoy's configuration), on (flows, every
 *    flow metric and the agent metrics, as a node runs by default) and
 *    follow (on, plus `meshd observe -f -o json` following every flow on the
 *    same 2 cores); wrk from the client pod to the api pod through Envoy;
 *    rounds with the modes in rotating order; the ratio of the median p50s,
 *    on / off (the target) and follow / off (l7_p50_ratio_follow_off); and
 *    the agent's CPU time per request in each mode (agent_cpu_us_per_request).
 *
 * Writes docs/benchmarks/flows.md; with --json the last stdout line is
 * {"flows_per_s": …, "l7_p50_ratio_on_off": …, …}.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type { FlowRecord } from '../src/datapath/endpoint/flow-events.js';
import { hubbleSocketPath } from '../src/observe/hubble.js';
import { FlowMetrics } from '../src/observe/metrics.js';
import { FlowObserver } from '../src/observe/observer.js';
import { ObserverServer } from '../src/observe/observer-server.js';
import { FlowParser } from '../src/observe/parser.js';
import { HUBBLE_CHANNEL_OPTIONS, loadHubbleProtos } from '../src/observe/protos.js';
import { AgentResolver } from '../src/observe/resolver.js';
import { loadPolicyDocuments } from '../src/policy/api/loader.js';
import { PolicyEngine } from '../src/policy/index.js';
import { describeError } from '../src/util/errors.js';
import { CommandError, run } from '../src/util/exec.js';
import { repoPath } from '../src/util/paths.js';
import { AgentNode } from '../test/helpers/agent-node.js';
import { benchArgs } from './args.js';

/** --dev-run: the doc says the figures are from a loaded development machine. */
const DEV_RUN = process.argv.includes('--dev-run');
const LOAD_AT_START = loadavg().map((l) => l.toFixed(2)).join(', ');
import { median } from './stats.js';

async function main(): Promise<void> {
  const { json, num, log } = benchArgs();
  const duration = num('--duration', 2);
  const rounds = num('--rounds', 3);
  const wrkDuration = num('--wrk-duration', 5);

  // --from N: the first target rate of the rising steps (default 5,000 flows/s).
  const pipeline = process.argv.includes('--l7-only') ? { sustained: NaN, steps: [] } : await pipelineBench(duration, num('--from', 5_000), log);
  const l7 = process.argv.includes('--pipeline-only') ? null : await l7Bench(rounds, wrkDuration, log);
  const result = {
    flows_per_s: pipeline.sustained,
    l7_p50_ratio_on_off: l7 ? ratio(l7.p50_ms.on, l7.p50_ms.off) : null,
    l7_p50_ratio_follow_off: l7 ? ratio(l7.p50_ms.follow, l7.p50_ms.off) : null,
    l7_p50_ms: l7?.p50_ms ?? null,
    agent_cpu_us_per_request: l7?.agent_cpu_us_per_request ?? null,
    steps: pipeline.steps,
  };
  writeFileSync(repoPath('docs', 'benchmarks', 'flows.md'), report(result, { duration, rounds, wrkDuration }));
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else log(JSON.stringify(result, null, 2));
}

interface Step {
  target: number;
  offered_per_s: number;
  delivered: number;
  lost: number;
  ok: boolean;
  /** CPU time (user + system) per flow of the node's side (parse, store, metrics, encode, send) and of the follower (receive, decode). */
  node_cpu_us_per_flow: number;
  follower_cpu_us_per_flow: number;
}

function records(n: number): FlowRecord[] {
  const out: FlowRecord[] = [];
  for (let i = 0; i < n; i += 1) {
    out.push({
      monotonicNs: process.hrtime.bigint(),
      type: i % 10 === 0 ? 'drop' : 'verdict',
      ...(i % 10 === 0 ? { dropReason: 'POLICY_DEFAULT_DENY' } : { verdict: 'ALLOW' as const }),
      direction: 'ingress',
      endpointNumericId: 2,
      ifindex: 9,
      srcIdentity: 0,
      dstIdentity: 0,
      family: 4,
      protocol: 6,
      src: { ip: `10.9.0.${2 + (i % 2)}`, port: 30000 + (i % 20000) },
      dst: { ip: '10.9.0.10', port: 8080 },
    });
  }
  return out;
}

const TARGETS = [5_000, 10_000, 25_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000];

async function pipelineBench(duration: number, from: number, log: (l: string) => void): Promise<{ sustained: number; steps: Step[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bench-flows-'));
  const engine = new PolicyEngine();
  await engine.upsertNamespace('default');
  await engine.upsertEndpoint({ namespace: 'default', name: 'client-1', labels: { app: 'client' }, ips: ['10.9.0.2'] });
  await engine.upsertEndpoint({ namespace: 'default', name: 'client-2', labels: { app: 'client' }, ips: ['10.9.0.3'] });
  await engine.upsertEndpoint({ namespace: 'default', name: 'api', labels: { app: 'api' }, ips: ['10.9.0.10'] });
  const loaded = loadPolicyDocuments([
    {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'api', namespace: 'default' },
      spec: { endpointSelector: { matchLabels: { app: 'api' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }] },
    },
  ]);
  const doc = loaded.policies[0];
  if (!doc) throw new Error('bench policy invalid');
  await engine.upsertPolicy(doc.document);
  engine.flush();
  const steps: Step[] = [];
  let sustained = 0;
  try {
    for (const target of TARGETS.filter((t) => t >= from)) {
      const obs = new FlowObserver({ capacity: 4095, nodeName: 'bench', version: 'bench' });
      const parser = new FlowParser({ nodeName: 'bench', resolver: new AgentResolver({ engine }) });
      const metrics = new FlowMetrics(['flow', 'drop', 'port-distribution', 'httpV2']);
      obs.onFlows((fs) => metrics.process(fs));
      const socket = join(dir, `hubble-${target}.sock`);
      const server = new ObserverServer({ observer: obs, socketPath: socket });
      await server.listen();
      const follower = fork(fileURLToPath(import.meta.url), ['--follower', socket], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      await new Promise<void>((r) => follower.once('message', () => r()));
      // Attached when a probe flow reaches it; its count so far is the baseline.
      let baseline = 0;
      for (let i = 0; i < 300 && baseline === 0; i += 1) {
        obs.add(records(1).map((r) => parser.fromDatapath(r)));
        await new Promise((r) => setTimeout(r, 100));
        baseline = (await ask(follower)).flows;
      }
      if (baseline === 0) throw new Error('the follower did not attach');
      const batch = records(64);
      const followerCpu0 = (await ask(follower)).cpuUs;
      const cpu0 = process.cpuUsage();
      const start = process.hrtime.bigint();
      const end = start + BigInt(Math.round(duration * 1e9));
      let sent = 0;
      // Offer batches at the target rate: each tick sends what the elapsed time allows.
      let maxTickMs = 0;
      let tickAt = performance.now();
      while (process.hrtime.bigint() < end) {
        const t = performance.now();
        if (t - tickAt > maxTickMs) maxTickMs = t - tickAt;
        tickAt = t;
        const due = Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * target);
        while (sent + 64 <= due) {
          for (const r of batch) r.monotonicNs = process.hrtime.bigint();
          obs.add(batch.map((r) => parser.fromDatapath(r)));
          sent += 64;
        }
        await new Promise((r) => setImmediate(r));
      }
      const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
      // Let the follower drain: until it has everything, or it made no progress for 2 s.
      let total = await ask(follower);
      for (let still = 0; total.flows - baseline < sent && still < 8; ) {
        await new Promise((r) => setTimeout(r, 250));
        const next = await ask(follower);
        still = next.flows === total.flows ? still + 1 : 0;
        total = next;
      }
      const cpu = process.cpuUsage(cpu0);
      const got = { flows: total.flows - baseline, lost: total.lost };
      log(`pipeline: longest event-loop turn while offering ${maxTickMs.toFixed(1)} ms; the follower's longest pause between two messages ${total.maxGapMs.toFixed(1)} ms`);
      // SIGTERM: the follower exits normally (a --cpu-prof run writes its profile).
      follower.kill('SIGTERM');
      await server.close();
      const offered = sent / elapsed;
      const ok = got.lost === 0 && got.flows === sent && offered >= target * 0.95;
      const nodeCpu = Math.round(((cpu.user + cpu.system) / sent) * 100) / 100;
      const followerCpuPerFlow = Math.round(((total.cpuUs - followerCpu0) / Math.max(1, got.flows)) * 100) / 100;
      steps.push({ target, offered_per_s: Math.round(offered), delivered: got.flows, lost: got.lost, ok, node_cpu_us_per_flow: nodeCpu, follower_cpu_us_per_flow: followerCpuPerFlow });
      log(`pipeline: target ${target}/s offered ${Math.round(offered)}/s sent ${sent} delivered ${got.flows} lost ${got.lost} ${ok ? 'ok' : 'FAILED'}; CPU per flow: node ${nodeCpu} µs, follower ${followerCpuPerFlow} µs`);
      if (!ok) break;
      sustained = Math.round(offered);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { sustained, steps };
}

function ask(child: ChildProcess): Promise<{ flows: number; lost: number; maxGapMs: number; cpuUs: number }> {
  return new Promise((resolve) => {
    const on = (m: unknown) => {
      const o = typeof m === 'object' && m !== null ? m : {};
      if (!('flows' in o)) return;
      child.off('message', on);
      resolve({ flows: Number(Reflect.get(o, 'flows') ?? 0), lost: Number(Reflect.get(o, 'lost') ?? 0), maxGapMs: Number(Reflect.get(o, 'maxGapMs') ?? 0), cpuUs: Number(Reflect.get(o, 'cpuUs') ?? 0) });
    };
    child.on('message', on);
    child.send('report');
  });
}

const SERVER = `require('http').createServer((q, s) => s.end('api ' + q.method + ' ' + q.url)).listen(8080, '0.0.0.0', () => console.log('ready'));`;

function p50Of(out: string): number {
  const m = /^\s+50%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  if (!m || non2xx) throw new Error(`unexpected wrk output:\n${out}`);
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
}

/** One agent with the demo's pods and HTTP policy; wrk's p50 through the node Envoy. */
type L7Mode = 'off' | 'on' | 'follow';

/** "12345 requests in 5.00s" → 12345. */
function requestsOf(out: string): number {
  const m = /(\d+) requests in /.exec(out);
  if (!m) throw new Error(`unexpected wrk output:\n${out}`);
  return Number(m[1]);
}

/** wrk's p50, and the agent's CPU time per request (this process runs the agent: user + system µs). */
async function l7Round(mode: L7Mode, wrkDuration: number, slot: number): Promise<{ p50: number; cpuUsPerReq: number }> {
  const on = mode !== 'off';
  const node = new AgentNode(
    {
      'envoy.enabled': true,
      'proxy.portRange': '16300-16399',
      'hubble.enabled': on,
      ...(on ? { 'hubble.metrics.enabled': ['flow', 'drop', 'tcp', 'port-distribution', 'httpV2'], 'hubble.metrics.port': 19965, 'prometheus.enabled': true, 'prometheus.port': 19962 } : {}),
    },
    slot,
  );
  let server: ChildProcess | null = null;
  let follower: ChildProcess | null = null;
  try {
    mkdirSync(node.manifests, { recursive: true });
    copyFileSync(repoPath('examples', 'demo', 'pods.yaml'), join(node.manifests, 'pods.yaml'));
    copyFileSync(repoPath('examples', 'demo', 'api-policy.yaml'), join(node.manifests, 'api-policy.yaml'));
    await node.start();
    const client = await node.addPod('client');
    const api = await node.addPod('api');
    server = spawn('ip', ['netns', 'exec', api.ns, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => server?.stdout?.once('data', () => resolve()));
    if (mode === 'follow') {
      follower = spawn(process.execPath, [repoPath('bin', 'meshd.mjs'), 'observe', '--server', `unix://${hubbleSocketPath(node.config)}`, '-f', '-o', 'json'], { stdio: ['ignore', 'ignore', 'inherit'] });
      await new Promise((r) => setTimeout(r, 1000));
    }
    const url = `http://${api.ip}:8080/api/v1/users`;
    // Warm-up: Envoy's listener and the first connections.
    await run('ip', ['netns', 'exec', client.ns, 'wrk', '-t1', '-c4', '-d1s', url], { timeoutMs: 30_000 });
    const cpu = process.cpuUsage();
    const out = await run('ip', ['netns', 'exec', client.ns, 'wrk', '-t1', '-c4', `-d${wrkDuration}s`, '--latency', url], { timeoutMs: (wrkDuration + 30) * 1000 });
    const used = process.cpuUsage(cpu);
    return { p50: p50Of(out.stdout), cpuUsPerReq: (used.user + used.system) / requestsOf(out.stdout) };
  } finally {
    follower?.kill('SIGKILL');
    server?.kill('SIGKILL');
    await node.cleanup();
  }
}

/**
 * A round again when its agent could not start because the node-wide proxy routing rule was held
 * at that moment (another agent with a proxy on the same machine); up to three more times, 10 s apart.
 */
async function retried<T>(fn: () => Promise<T>, log: (l: string) => void): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (e) {
      // `ip rule add` refused with EEXIST (the kernel's "File exists" on stderr): someone else's rule.
      if (attempt > 3 || !(e instanceof CommandError && e.argv.includes('rule') && /File exists/.test(e.stderr))) throw e;
      log(`l7: agent start failed (${describeError(e)}); again in 10 s`);
      await new Promise((r) => setTimeout(r, 10_000));
    }
  }
}

function ratio(a: number, b: number): number {
  return Math.round((a / b) * 1000) / 1000;
}

interface L7Result {
  p50_ms: Record<L7Mode, number>;
  agent_cpu_us_per_request: Record<L7Mode, number>;
}

async function l7Bench(rounds: number, wrkDuration: number, log: (l: string) => void): Promise<L7Result> {
  const p50s: Record<L7Mode, number[]> = { off: [], on: [], follow: [] };
  const cpus: Record<L7Mode, number[]> = { off: [], on: [], follow: [] };
  const modes: L7Mode[] = ['off', 'on', 'follow'];
  for (let i = 0; i < rounds; i += 1) {
    // Rotate the order so that no mode always runs first (or last) in a round.
    for (const m of [...modes.slice(i % 3), ...modes.slice(0, i % 3)]) {
      const { p50, cpuUsPerReq } = await retried(() => l7Round(m, wrkDuration, 3), log);
      p50s[m].push(p50);
      cpus[m].push(cpuUsPerReq);
      log(`l7 round ${i + 1}: ${m.padEnd(6)} p50 ${p50.toFixed(3)} ms, agent CPU ${cpuUsPerReq.toFixed(1)} µs/request`);
    }
  }
  const med = (x: Record<L7Mode, number[]>) => ({ off: median(x.off), on: median(x.on), follow: median(x.follow) });
  return { p50_ms: med(p50s), agent_cpu_us_per_request: med(cpus) };
}

function report(
  r: {
    flows_per_s: number;
    l7_p50_ratio_on_off: number | null;
    l7_p50_ratio_follow_off: number | null;
    l7_p50_ms: Record<L7Mode, number> | null;
    agent_cpu_us_per_request: Record<L7Mode, number> | null;
    steps: Step[];
  },
  o: { duration: number; rounds: number; wrkDuration: number },
): string {
  const l7 = r.l7_p50_ms;
  const cpu = r.agent_cpu_us_per_request;
  return [
    '# Flow observability: throughput and cost (`npm run bench:flows`)',
    '',
    DEV_RUN
      ? '**Development run on a shared, loaded 2-core machine: not final figures; to be re-run on a quiet machine.**'
      : `Run ${new Date().toISOString().slice(0, 10)}, 2 cores, load average at the start ${LOAD_AT_START}; the figures of the code at this commit.`,
    '',
    `Pipeline (datapath records → Hubble flows → store (4095) → flow metrics → one follower over the unix socket, in another process), ${o.duration} s per step, batches of 64:`,
    '',
    '| target flows/s | offered/s | delivered | lost | step passed | node CPU µs/flow | follower CPU µs/flow |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...r.steps.map(
      (s) =>
        `| ${s.target} | ${s.offered_per_s} | ${s.delivered} | ${s.lost} | ${s.ok ? 'yes' : s.lost > 0 ? 'no: flows lost' : s.offered_per_s < s.target * 0.95 ? 'no: the target rate was not offered' : 'no: flows missing'} | ${s.node_cpu_us_per_flow} | ${s.follower_cpu_us_per_flow} |`,
    ),
    '',
    r.steps.length === 0 ? 'Pipeline: not measured in this run (--l7-only).' : `Sustained without loss: **${r.flows_per_s} flows/s** (target: at least 100,000).`,
    '',
    l7 === null
      ? 'L7 path: not measured in this run (--pipeline-only).'
      : [
          `L7 path (wrk -t1 -c4, ${o.wrkDuration} s, through the node Envoy with the demo's HTTP policy; a whole agent per round, ${o.rounds} rounds of each mode in rotating order, medians of the p50s):`,
          '',
          '| mode | p50 (ms) | ratio to off | agent CPU per request (µs) |',
          '| --- | --- | --- | --- |',
          `| off: hubble.enabled=false (no access log in Envoy) | ${l7.off.toFixed(3)} | 1 | ${cpu?.off.toFixed(1)} |`,
          `| on: flows, every flow metric, agent metrics | ${l7.on.toFixed(3)} | **${r.l7_p50_ratio_on_off}** (target: at most 1.05) | ${cpu?.on.toFixed(1)} |`,
          `| follow: on, and \`meshd observe -f -o json\` on the same cores | ${l7.follow.toFixed(3)} | ${r.l7_p50_ratio_follow_off} | ${cpu?.follow.toFixed(1)} (the follower's own process not counted) |`,
          '',
          "The agent's CPU per request (user + system time of the process running the agent, over the measured wrk run, divided by the requests) is steadier than the p50 on a busy machine.",
        ].join('\n'),
    '',
  ].join('\n');
}

// ---- the follower (a child process) ----------------------------------------------------
if (process.argv[2] === '--follower') {
  const socket = process.argv[3] ?? '';
  const { Observer } = loadHubbleProtos();
  const c = new Observer(`unix:${socket}`, grpc.credentials.createInsecure(), HUBBLE_CHANNEL_OPTIONS);
  const m = c.getFlows;
  if (typeof m !== 'function') throw new Error('no GetFlows');
  const s: grpc.ClientReadableStream<{ response_types?: string; lost_events?: { num_events_lost?: string } }> = m.call(c, { follow: true });
  let flows = 0;
  let lost = 0;
  let last = 0;
  let maxGapMs = 0;
  s.on('data', (d: { response_types?: string; lost_events?: { num_events_lost?: string } }) => {
    const now = performance.now();
    if (last > 0 && now - last > maxGapMs) maxGapMs = now - last;
    last = now;
    if (d.response_types === 'flow') flows += 1;
    else if (d.response_types === 'lost_events') lost += Number(d.lost_events?.num_events_lost ?? 0);
  });
  s.on('error', () => undefined);
  process.on('message', () => {
    const c = process.cpuUsage();
    process.send?.({ flows, lost, maxGapMs, cpuUs: c.user + c.system });
    maxGapMs = 0;
  });
  process.on('SIGTERM', () => process.exit(0));
  setTimeout(() => process.send?.({ ready: true }), 300);
} else {
  await main();
}
