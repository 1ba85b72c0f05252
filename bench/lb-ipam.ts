/**
 * npm run bench:lb-ipam [-- --json] [--services N] [--lease-ms MS] [--failovers N] [--dev-run]
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
 *             Services one after another: p50 and p99.
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
import { benchArgs } from './args.js';

const { json, num, log } = benchArgs();
const devRun = process.argv.includes('--dev-run');
const services = num('--services', 100);
const leaseMs = num('--lease-ms', 3_000);
const failovers = num('--failovers', 3);
const reachServices = num('--reach-services', 100);
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
/** In the client namespace: for each address on stdin, connects every 20 ms until the backend answers, then prints it. */
const PROBER = `
const net = require('net');
require('readline').createInterface({ input: process.stdin }).on('line', (ip) => {
  const tryOnce = () => {
    const s = net.connect({ host: ip, port: 80 });
    let d = '';
    const retry = () => { s.destroy(); setTimeout(tryOnce, 20); };
    s.setTimeout(500, retry);
    s.on('data', (c) => (d += c));
    s.on('end', () => (d === 'backend' ? console.log(ip) : retry()));
    s.on('error', retry);
  };
  tryOnce();
});`;

async function reachLatencies(kube: KubeCluster): Promise<number[]> {
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
  const answered = new Map<string, number>();
  createInterface({ input: prober.stdout }).on('line', (ip) => answered.set(ip.trim(), performance.now()));

  await admin.send('POST', LB_IP_POOLS_PATH, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'reach' }, spec: { blocks: [{ cidr: '10.79.0.128/25' }], serviceSelector: { matchLabels: { reach: 'yes' } } } });
  await admin.send('POST', L2_POLICIES_PATH, { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumL2AnnouncementPolicy', metadata: { name: 'reach' }, spec: { interfaces: [`^${hostIf}$`], loadBalancerIPs: true, serviceSelector: { matchLabels: { reach: 'yes' } } } });
  const out: number[] = [];
  for (let i = 0; i < reachServices; i++) {
    const name = `reach-${i}`;
    const t0 = performance.now();
    await admin.send('POST', '/api/v1/namespaces/default/services', { apiVersion: 'v1', kind: 'Service', metadata: { name, labels: { reach: 'yes' } }, spec: { type: 'LoadBalancer', loadBalancerClass: 'io.cilium/l2-announcer', ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
    await admin.send('POST', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${name}-1`, labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4',
      endpoints: [{ addresses: [pod.ip], nodeName: 'bench-node', conditions: { ready: true } }],
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
    let ip: string | undefined;
    while (!(ip = LbServiceSchema.parse(await admin.getJson(`/api/v1/namespaces/default/services/${name}`)).status?.loadBalancer?.ingress?.[0]?.ip)) {
      if (performance.now() - t0 > 30_000) throw new Error(`${name} got no address within 30 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    prober.stdin.write(`${ip}\n`);
    while (!answered.has(ip)) {
      if (performance.now() - t0 > 30_000) throw new Error(`${name} (${ip}) not reached within 30 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    out.push((answered.get(ip) ?? NaN) - t0);
  }
  return out;
}

async function main(): Promise<void> {
  const kube = await startKubeCluster({ t: { after: (fn) => void after.push(fn) } });
  await installMeshd(kube);
  log(`assign: ${services} Services, one after another`);
  const lat = await assignLatencies(kube);
  const p50 = quantile(lat, 0.5);
  const p99 = quantile(lat, 0.99);
  log(`  p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
  log(`failover: leaseDuration ${leaseMs} ms, ${failovers} runs`);
  const fo = await failoverSeconds(kube);
  const failover = quantile(fo, 0.5);
  log(`reach: ${reachServices} Services through the agent's nodePort and L2 announcer`);
  const reach = await reachLatencies(kube);
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
    'Reach is the whole path of a client outside the cluster: LB IPAM writes the address, the agent (nodePort on the veth, its L2 announcer) programs the frontend and answers ARP for it, and the client, retrying every 20 ms, gets its answer from the backend pod through bpf/nodeport.c.',
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
