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
 *             (default 3000; the target is under leaseDuration + 2 s).
 *
 * Writes docs/benchmarks/lb-ipam.md; with --json the last stdout line is
 * {"assign_p50_ms","assign_p99_ms","failover_s","lease_duration_s","services"}.
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
import { startKubeCluster, type KubeCluster } from '../test/helpers/kube-cluster.js';
import { installMeshd } from '../test/helpers/kube-nodes.js';
import { l2Segment } from '../test/helpers/l2-segment.js';
import { Sandbox } from '../test/helpers/netns.js';
import { benchArgs } from './args.js';

const { json, num, log } = benchArgs();
const devRun = process.argv.includes('--dev-run');
const services = num('--services', 100);
const leaseMs = num('--lease-ms', 3_000);
const failovers = num('--failovers', 3);
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
  const result = { assign_p50_ms: Number(p50.toFixed(1)), assign_p99_ms: Number(p99.toFixed(1)), failover_s: Number(failover.toFixed(2)), lease_duration_s: leaseMs / 1_000, services };
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
