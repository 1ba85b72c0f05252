/**
 * npm run bench:lb-ipam [-- --json] [--services N] [--lease-ms MS] [--failovers N] [--reach-services N] [--dev-run]
 *                        [--reach-only] [--timelines FILE]
 *
 * Two figures of LoadBalancer Services on a bare-metal segment, against a
 * real API server (the test harness' kube-apiserver and etcd):
 *
 *   assign    time from a Service's creation (its POST answered) to its
 *             address in status.loadBalancer.ingress as a watch sees it,
 *             for N Services (default 100) created one after another by a
 *             client while the LB IPAM controller (this process, the Lease
 *             holder) allocates from a /24 pool: p50 and p99;
 *   failover  two node namespaces and a client on one bridge
 *             (test/helpers/l2-segment.ts), an L2 announcer per node: time
 *             from the holder's announcer going away without giving its
 *             Lease up (as a dead node) until the client's TCP connection to
 *             the address is answered by the other node; the median of
 *             --failovers runs (default 3) with leaseDuration --lease-ms
 *             (default 3000; the target is under leaseDuration + 2 s);
 *   reach     an agent on this host (Kubernetes mode, nodePort on a veth,
 *             the L2 announcer on it) and a client namespace at the veth's
 *             other end: time from a Service's creation (its POST and its
 *             EndpointSlice's answered) until the client, resolving the
 *             address by ARP, gets an answer from the backend pod through
 *             it (bpf/nodeport.c), for --reach-services N (default 100, as the assign figure)
 *             Services one after another: p50 and p99. The client (PROBER)
 *             starts when the address is in the status and measures when
 *             the address first answers (see PROBER for what it leaves out).
 *             Each Service's timeline is logged as p50/p99 per step —
 *             status written (LB IPAM) and seen, Lease held, address
 *             placed (L2 announcer), frontend programmed (the agent's LB
 *             maps), client's first try, answer — and written whole to
 *             --timelines FILE (JSON); --reach-only runs only this figure
 *             and writes no docs/benchmarks file.
 *
 * Writes docs/benchmarks/lb-ipam.md; with --json the last stdout line is
 * {"assign_p50_ms","assign_p99_ms","failover_s","lease_duration_s","services","reach_p50_ms","reach_p99_ms","reach_services"}.
 * Needs root (namespaces) and the Kubernetes binaries (scripts/k8s-binaries.sh).
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { KubeClient, resolveKubeConfig } from '../src/k8s/client.js';
import { LB_IP_POOLS_PATH } from '../src/k8s/cilium-lb-ip-pool.js';
import { L2_POLICIES_PATH } from '../src/k8s/cilium-l2-announcement-policy.js';
import { Reflector } from '../src/k8s/reflector.js';
import { L2Announcer } from '../src/l2announce/announcer.js';
import { IpHostNet } from '../src/l2announce/host-net.js';
import { LbIpamController } from '../src/lbipam/controller.js';
import { LbServiceSchema, serviceKey } from '../src/lbipam/lb-service.js';
import { repoPath } from '../src/util/paths.js';
import { startKubeCluster, type KubeCluster } from '../src/devcluster/kube-cluster.js';
import { FAST_SOURCE, installMeshd, KubeNode } from '../test/helpers/kube-nodes.js';
import { AgentNode } from '../test/helpers/agent-node.js';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { run } from '../src/util/exec.js';
import { l2Segment } from '../test/helpers/l2-segment.js';
import { Sandbox } from '../src/devcluster/netns.js';
import { z } from 'zod';
import { benchArgs } from './args.js';

const { json, num, log } = benchArgs();
const devRun = process.argv.includes('--dev-run');
const services = num('--services', 100);
const leaseMs = num('--lease-ms', 3_000);
const failovers = num('--failovers', 3);
const reachServices = num('--reach-services', 100);
const reachOnly = process.argv.includes('--reach-only');
const timelineIdx = process.argv.indexOf('--timelines');
const timelineFile = timelineIdx >= 0 ? process.argv[timelineIdx + 1] : undefined;
const FAST = { backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };

const after: Array<() => Promise<void> | void> = [];
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN;
};

async function clients(kube: KubeCluster): Promise<{ client: KubeClient; admin: KubeClient }> {
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  const client = new KubeClient(resolveKubeConfig({ kubeconfigPath: sa.kubeconfigPath }).kubeConfig);
  const admin = new KubeClient(resolveKubeConfig({ kubeconfigPath: kube.kubeconfigPath }).kubeConfig);
  after.push(() => client.close(), () => admin.close());
  return { client, admin };
}

async function assignLatencies(kube: KubeCluster): Promise<number[]> {
  const { client, admin } = await clients(kube);
  const ctl = new LbIpamController({ client, holder: 'bench', namespace: 'kube-system', retryMs: 200, ...FAST });
  after.push(() => ctl.stop());
  ctl.start();
  await admin.send('POST', LB_IP_POOLS_PATH, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'bench' }, spec: { blocks: [{ cidr: '10.60.0.0/24' }], serviceSelector: { matchLabels: { bench: 'assign' } } } });
  while (!ctl.isLeader()) await new Promise((r) => setTimeout(r, 50));
  const seen = new Map<string, number>();
  const watcher = new Reflector(
    { client: admin, path: '/api/v1/services', ...FAST },
    {
      onList: () => undefined,
      onEvent: (_type, obj) => {
        const r = LbServiceSchema.safeParse(obj);
        if (r.success && (r.data.status?.loadBalancer?.ingress ?? []).length > 0 && !seen.has(serviceKey(r.data))) seen.set(serviceKey(r.data), performance.now());
      },
      onMissing: () => undefined,
      onError: () => undefined,
      onHealthy: () => undefined,
    },
  );
  watcher.start();
  after.push(() => watcher.stop());
  await new Promise((r) => setTimeout(r, 500));
  const created = new Map<string, number>();
  for (let i = 0; i < services; i++) {
    const name = `svc-${i}`;
    await admin.send('POST', '/api/v1/namespaces/default/services', { apiVersion: 'v1', kind: 'Service', metadata: { name, labels: { bench: 'assign' } }, spec: { type: 'LoadBalancer', ports: [{ port: 80 }] } });
    created.set(`default/${name}`, performance.now());
  }
  const deadline = performance.now() + 60_000;
  while (seen.size < services && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (seen.size < services) throw new Error(`only ${seen.size} of ${services} Services got an address within 60 s`);
  return [...created].map(([k, t]) => (seen.get(k) ?? NaN) - t);
}

async function failoverSeconds(kube: KubeCluster): Promise<number[]> {
  const sb = new Sandbox('l2b');
  after.push(() => sb.cleanup());
  const seg = await l2Segment(sb, { nodes: ['node-a', 'node-b'], subnet: '10.78.0' });
  const { client, admin } = await clients(kube);
  await admin.send('POST', LB_IP_POOLS_PATH, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'segment' }, spec: { blocks: [{ cidr: '10.78.0.200/32' }], serviceSelector: { matchLabels: { l2: 'yes' } } } });
  await admin.send('POST', L2_POLICIES_PATH, { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumL2AnnouncementPolicy', metadata: { name: 'eth0' }, spec: { interfaces: ['^eth0$'], loadBalancerIPs: true, serviceSelector: { matchLabels: { l2: 'yes' } } } });
  await admin.send('POST', '/api/v1/namespaces/default/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'l2', labels: { l2: 'yes' } }, spec: { type: 'LoadBalancer', ports: [{ port: 8080 }] } });
  const start = (i: number) => {
    const n = seg.nodes[i];
    if (!n) throw new Error('no such node');
    const a = new L2Announcer({ client, nodeName: n.name, namespace: 'kube-system', net: new IpHostNet({ netns: n.netns }), leaseDurationMs: leaseMs, retryMs: Math.max(100, Math.floor(leaseMs / 6)), ...FAST });
    a.start();
    after.push(() => a.stop());
    return a;
  };
  const announcers = [start(0), start(1)];
  const out: number[] = [];
  for (let run = 0; run < failovers; run++) {
    let holder = -1;
    const until = performance.now() + 30_000;
    for (;;) {
      holder = announcers.findIndex((a) => a.held().includes('default/l2'));
      if (holder >= 0 && (await seg.whoAnswers('10.78.0.200')) === seg.nodes[holder]?.name) break;
      if (performance.now() > until) throw new Error('10.78.0.200 is not answered by the node holding default/l2');
      await new Promise((r) => setTimeout(r, 100));
    }
    const other = seg.nodes[1 - holder]?.name;
    const t0 = performance.now();
    await announcers[holder]?.stop({ release: false });
    while ((await seg.whoAnswers('10.78.0.200', 300)) !== other) {
      if (performance.now() - t0 > leaseMs + 30_000) throw new Error('no fail-over within leaseDuration + 30 s');
    }
    out.push((performance.now() - t0) / 1_000);
    log(`  fail-over ${run + 1}: ${out.at(-1)?.toFixed(2)} s`);
    announcers[holder] = start(holder);
  }
  return out;
}

/** In the backend pod: answers every connection with a line. */
const ANSWER = "require('net').createServer((s) => { s.on('error', () => {}); s.end('backend'); }).listen(8080, '0.0.0.0', () => console.log('ready'));";
/**
 * In the client namespace: for each address on stdin, opens a connection
 * to it every 50 ms until one is answered by the backend, then prints one
 * JSON line (times on Date.now()'s clock): when it first tried, when it was
 * answered, how many connections it opened and how the others ended. Each
 * connection waits up to 1 s, as a client's first SYN does before TCP
 * retransmits it. So what is measured is when the address first answers,
 * to within 50 ms: a connection refused or unanswered (no frontend yet) is
 * followed by the next 50 ms later, not by TCP's 1-s retransmit; a SYN
 * waiting for the client's ARP resolution goes out the moment the address
 * is resolved — by the node's answer to the client's ARP request or by the
 * announcer's gratuitous ARP — not when the client's ARP retransmit timer
 * (1 s) fires. The connections add no ARP traffic of their own: the client's
 * kernel sends one request per retransmit interval, however many SYNs wait.
 */
const PROBER = `
const net = require('net');
require('readline').createInterface({ input: process.stdin }).on('line', (ip) => {
  const first = Date.now();
  const open = new Set();
  const errors = {};
  let attempts = 0;
  let done = false;
  const attempt = () => {
    if (done || open.size >= 20) return;
    attempts++;
    const s = net.connect({ host: ip, port: 80 });
    open.add(s);
    let d = '';
    const end = (why) => {
      if (!open.delete(s)) return;
      s.destroy();
      if (why && !done) errors[why] = (errors[why] || 0) + 1;
    };
    s.setTimeout(1000, () => end('timeout'));
    s.on('data', (c) => (d += c));
    s.on('end', () => {
      if (d !== 'backend' || done) return end('no answer');
      done = true;
      clearInterval(tick);
      console.log(JSON.stringify({ ip, first, at: Date.now(), attempts, errors }));
      for (const o of [...open]) end();
    });
    s.on('error', (e) => end(e.code || 'error'));
  };
  const tick = setInterval(attempt, 50);
  attempt();
});`;

/** One Service's way to a reachable address, each time in ms after its creation was sent (Date.now()). */
interface ReachTimeline {
  name: string;
  ip: string;
  /** The Service's POST answered; its EndpointSlice's POST answered. */
  created: number;
  slice: number;
  /** LB IPAM wrote the address (the agent's log), and the bench's watch saw it. */
  statusWritten: number;
  statusSeen: number;
  /** The announcer holds the Service's Lease; it put the address on the interface (the kernel answers ARP from then). */
  leaseHeld: number;
  addressPlaced: number;
  /** The datapath has the address:port frontend with the backend (the agent's LB maps). */
  frontend: number;
  /** The client's first attempt, and the answer from the backend. */
  probeStart: number;
  reached: number;
  attempts: number;
  errors: Record<string, number>;
}

async function reachLatencies(kube: KubeCluster): Promise<ReachTimeline[]> {
  const { admin } = await clients(kube);
  // The fail-over phase's policy names ^eth0$: gone before an announcer runs in this (the host's) namespace.
  await admin.send('DELETE', `${L2_POLICIES_PATH}/eth0`).catch(() => undefined);
  const sb = new Sandbox('reach');
  after.push(() => sb.cleanup());
  const hostIf = sb.name('h');
  const clientNs = await sb.netns('cl');
  await sb.vethToHost(clientNs, { hostIf, podIf: 'eth0', hostIp: '10.79.0.1/24', podIp: '10.79.0.2/24', defaultRoute: true });
  await run('sysctl', ['-qw', `net.ipv4.conf.${hostIf}.forwarding=1`]);
  const agent = new AgentNode({ nodeName: 'bench-node', devices: [hostIf], 'l2announcements.enabled': true, 'l2announcements.leaseDuration': '3s', 'l2announcements.leaseRetryPeriod': '500ms' }, 5);
  mkdirSync(agent.manifests, { recursive: true });
  after.push(() => agent.cleanup());
  await kube.ensureDefaultServiceAccount('default');
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  await agent.start({ standaloneDir: undefined, kubeconfigPath: sa.kubeconfigPath, kubeSource: FAST_SOURCE });
  const node = new KubeNode('bench-node', agent, kube);
  after.push(() => node.kubelet.cleanup());
  const pod = await node.kubelet.runPod('reach-backend', { labels: { app: 'reach' }, containerPorts: [8080] });
  const server = spawn('ip', ['netns', 'exec', pod.ns, process.execPath, '-e', ANSWER], { stdio: ['ignore', 'pipe', 'inherit'] });
  after.push(() => void server.kill('SIGKILL'));
  await new Promise((r) => server.stdout.once('data', r));
  const prober = spawn('ip', ['netns', 'exec', clientNs, process.execPath, '-e', PROBER], { stdio: ['pipe', 'pipe', 'inherit'] });
  after.push(() => void prober.kill('SIGKILL'));
  const ProbeLine = z.object({ ip: z.string(), first: z.number(), at: z.number(), attempts: z.number(), errors: z.record(z.string(), z.number()) });
  const answered = new Map<string, z.infer<typeof ProbeLine>>();
  createInterface({ input: prober.stdout }).on('line', (line) => {
    const r = ProbeLine.parse(JSON.parse(line));
    answered.set(r.ip, r);
  });
  // The bench's own watch: when a Service's address is in its status (as a client's kubectl would see it).
  const statusSeen = new Map<string, { ip: string; at: number }>();
  const watcher = new Reflector(
    { client: admin, path: '/api/v1/namespaces/default/services', ...FAST },
    {
      onList: () => undefined,
      onEvent: (_type, obj) => {
        const r = LbServiceSchema.safeParse(obj);
        const ip = r.success ? r.data.status?.loadBalancer?.ingress?.[0]?.ip : undefined;
        if (r.success && ip && !statusSeen.has(r.data.metadata.name)) statusSeen.set(r.data.metadata.name, { ip, at: Date.now() });
      },
      onMissing: () => undefined,
      onError: () => undefined,
      onHealthy: () => undefined,
    },
  );
  watcher.start();
  after.push(() => watcher.stop());
  const running = agent.running;
  const l2 = running?.loadBalancers?.l2;
  if (!running || !l2) throw new Error('the agent runs no L2 announcer');
  // What the agent logged (JSON lines with an ISO time), by message and Service.
  const logged = (msg: string, service: string): number => {
    for (const l of agent.logs) {
      if (!l.includes(msg) || !l.includes(`"${service}"`)) continue;
      const t = z.object({ time: z.string() }).safeParse(JSON.parse(l));
      if (t.success) return Date.parse(t.data.time);
    }
    return NaN;
  };

  await admin.send('POST', LB_IP_POOLS_PATH, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'reach' }, spec: { blocks: [{ cidr: '10.79.0.128/25' }], serviceSelector: { matchLabels: { reach: 'yes' } } } });
  await admin.send('POST', L2_POLICIES_PATH, { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumL2AnnouncementPolicy', metadata: { name: 'reach' }, spec: { interfaces: [`^${hostIf}$`], loadBalancerIPs: true, serviceSelector: { matchLabels: { reach: 'yes' } } } });
  const out: ReachTimeline[] = [];
  for (let i = 0; i < reachServices; i++) {
    const name = `reach-${i}`;
    const key = `default/${name}`;
    const t0 = Date.now();
    // Sampled every 2 ms in this process (the agent runs in it): when the Lease is held and the frontend is programmed.
    let leaseHeld = NaN;
    let frontend = NaN;
    let ip: string | undefined;
    const sampler = setInterval(() => {
      if (Number.isNaN(leaseHeld) && l2.held().includes(key)) leaseHeld = Date.now();
      if (ip && Number.isNaN(frontend) && (running.agent.serviceManager()?.backendsOf(ip, 80)?.length ?? 0) > 0) frontend = Date.now();
    }, 2);
    try {
      await admin.send('POST', '/api/v1/namespaces/default/services', { apiVersion: 'v1', kind: 'Service', metadata: { name, labels: { reach: 'yes' } }, spec: { type: 'LoadBalancer', loadBalancerClass: 'io.cilium/l2-announcer', ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
      const created = Date.now();
      await admin.send('POST', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${name}-1`, labels: { 'kubernetes.io/service-name': name } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [pod.ip], nodeName: 'bench-node', conditions: { ready: true } }],
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      });
      const slice = Date.now();
      while (!(ip = statusSeen.get(name)?.ip)) {
        if (Date.now() - t0 > 30_000) throw new Error(`${name} got no address within 30 s`);
        await new Promise((r) => setTimeout(r, 2));
      }
      prober.stdin.write(`${ip}\n`);
      let probe: z.infer<typeof ProbeLine> | undefined;
      while (!(probe = answered.get(ip))) {
        if (Date.now() - t0 > 30_000) throw new Error(`${name} (${ip}) not reached within 30 s`);
        await new Promise((r) => setTimeout(r, 2));
      }
      while (Number.isNaN(frontend) || Number.isNaN(leaseHeld)) {
        if (Date.now() - t0 > 30_000) throw new Error(`${name}: reached, but its Lease or frontend not seen within 30 s`);
        await new Promise((r) => setTimeout(r, 2));
      }
      const placed = l2.takeovers.find((t) => t.service === key && t.ip === ip)?.at ?? NaN;
      out.push({
        name,
        ip,
        created: created - t0,
        slice: slice - t0,
        statusWritten: logged('LB IPAM: service addresses', key) - t0,
        statusSeen: (statusSeen.get(name)?.at ?? NaN) - t0,
        leaseHeld: leaseHeld - t0,
        addressPlaced: placed - t0,
        frontend: frontend - t0,
        probeStart: probe.first - t0,
        reached: probe.at - t0,
        attempts: probe.attempts,
        errors: probe.errors,
      });
    } finally {
      clearInterval(sampler);
    }
  }
  return out;
}

/** p50 and p99 of each step of the reach timelines, as a table for the log. */
function reachBreakdown(ts: readonly ReachTimeline[]): string[] {
  const steps: Array<keyof ReachTimeline> = ['created', 'slice', 'statusWritten', 'statusSeen', 'leaseHeld', 'addressPlaced', 'frontend', 'probeStart', 'reached'];
  const lines = steps.map((k) => {
    const xs = ts.map((t) => Number(t[k]));
    return `  ${k.padEnd(14)} p50 ${quantile(xs, 0.5).toFixed(0).padStart(6)} ms  p99 ${quantile(xs, 0.99).toFixed(0).padStart(6)} ms  max ${Math.max(...xs).toFixed(0).padStart(6)} ms`;
  });
  const errs = new Map<string, number>();
  for (const t of ts) for (const [k, n] of Object.entries(t.errors)) errs.set(k, (errs.get(k) ?? 0) + n);
  lines.push(`  client attempts p50 ${quantile(ts.map((t) => t.attempts), 0.5)} max ${Math.max(...ts.map((t) => t.attempts))}; failed attempts: ${[...errs].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
  return lines;
}

async function main(): Promise<void> {
  const kube = await startKubeCluster({ t: { after: (fn) => void after.push(fn) } });
  await installMeshd(kube);
  if (reachOnly) {
    log(`reach: ${reachServices} Services through the agent's nodePort and L2 announcer`);
    const timelines = await reachLatencies(kube);
    for (const l of reachBreakdown(timelines)) log(l);
    if (timelineFile) writeFileSync(timelineFile, `${JSON.stringify(timelines, null, 1)}\n`);
    const reach = timelines.map((t) => t.reached);
    const result = { reach_p50_ms: Number(quantile(reach, 0.5).toFixed(1)), reach_p99_ms: Number(quantile(reach, 0.99).toFixed(1)), reach_services: reachServices };
    log(`  p50 ${result.reach_p50_ms} ms, p99 ${result.reach_p99_ms} ms (docs/benchmarks/lb-ipam.md not written: --reach-only)`);
    if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  log(`assign: ${services} Services, one after another`);
  const lat = await assignLatencies(kube);
  const p50 = quantile(lat, 0.5);
  const p99 = quantile(lat, 0.99);
  log(`  p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
  log(`failover: leaseDuration ${leaseMs} ms, ${failovers} runs`);
  const fo = await failoverSeconds(kube);
  const failover = quantile(fo, 0.5);
  log(`reach: ${reachServices} Services through the agent's nodePort and L2 announcer`);
  const timelines = await reachLatencies(kube);
  for (const l of reachBreakdown(timelines)) log(l);
  if (timelineFile) writeFileSync(timelineFile, `${JSON.stringify(timelines, null, 1)}\n`);
  const reach = timelines.map((t) => t.reached);
  const result = {
    assign_p50_ms: Number(p50.toFixed(1)),
    assign_p99_ms: Number(p99.toFixed(1)),
    failover_s: Number(failover.toFixed(2)),
    lease_duration_s: leaseMs / 1_000,
    services,
    reach_p50_ms: Number(quantile(reach, 0.5).toFixed(1)),
    reach_p99_ms: Number(quantile(reach, 0.99).toFixed(1)),
    reach_services: reachServices,
  };
  log(`  p50 ${result.reach_p50_ms} ms, p99 ${result.reach_p99_ms} ms`);
  const md = [
    '# LB IPAM and L2 announcements',
    '',
    '`npm run bench:lb-ipam -- --json` (bench/lb-ipam.ts) against a real kube-apiserver and etcd; the L2 segment is a bridge with two node namespaces and a client namespace.',
    '',
    devRun ? `**Development run** on a shared, busy machine (${cpus().length} cores); to be re-run on a quiet machine before the figures are quoted.` : `Machine: ${cpus().length} cores.`,
    '',
    '| figure | value | target |',
    '| --- | --- | --- |',
    `| Service creation → address in status, p50 (${services} Services) | ${result.assign_p50_ms} ms | |`,
    `| Service creation → address in status, p99 (${services} Services) | ${result.assign_p99_ms} ms | < 1000 ms |`,
    `| fail-over of an L2-announced address (median of ${failovers}; leaseDuration ${leaseMs / 1_000} s) | ${result.failover_s} s | < ${leaseMs / 1_000 + 2} s |`,
    `| Service creation → a client on the segment answered by the backend pod through the address, p50 (${reachServices} Services) | ${result.reach_p50_ms} ms | |`,
    `| Service creation → a client on the segment answered by the backend pod through the address, p99 (${reachServices} Services) | ${result.reach_p99_ms} ms | < 1000 ms |`,
    '',
    'Reach is the whole path of a client outside the cluster: LB IPAM writes the address, the agent (nodePort on the veth, its L2 announcer) programs the frontend and answers ARP for it, and the client gets its answer from the backend pod through bpf/nodeport.c. The client starts when the address is in the Service\'s status (as a watch sees it) and opens a connection every 50 ms, each waiting up to 1 s, until one is answered: the figure is when the address first answers, to within 50 ms, without TCP\'s 1-s SYN retransmit or the client\'s 1-s ARP retransmit in it (a SYN waiting for ARP goes out when the node answers or its gratuitous ARP arrives).',
    '',
    'Fail-over is measured from the holder\'s announcer going away without giving up its Lease (as a node that died) until a TCP connection from the client to the address is answered by the other node; it is bounded by leaseDuration (the Lease must lapse) plus leaseRetryPeriod (the other node\'s next try) plus the gratuitous ARP. No alternative ran side by side: MetalLB cannot be installed here without downloads.',
    '',
  ].join('\n');
  writeFileSync(repoPath('docs', 'benchmarks', 'lb-ipam.md'), md);
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
}

try {
  await main();
} finally {
  for (const fn of after.reverse()) await Promise.resolve().then(fn).catch((e: unknown) => process.stderr.write(`cleanup: ${String(e)}\n`));
}
