/**
 * `npm run bench:datapath -- --nodes 2 [--json] [--duration S] [--rounds N]`:
 * pod to pod across two nodes, each node a network namespace on an underlay
 * bridge (its own namespace), a pod namespace behind a veth in each node.
 * Three paths, side by side in alternating rounds of one run:
 *   plain   routed namespaces without meshd (`<other pod CIDR> via <other node>`);
 *   native  the same routes, meshd's endpoint programs on both pods' host veths
 *           (default-deny L3/L4 policy allowing the bench's ports, no L7) and
 *           meshd_from_netdev on each node's eth0, as the agent has them;
 *   tunnel  meshd's programs plus its VXLAN tunnel (identity in the VNI), pods
 *           at the tunnel MTU (underlay MTU - 50).
 * Measures the request/response rate (bench/datapath-rr.c, 1-byte messages on
 * one connection) and TCP throughput (iperf3, one stream). Each node's datapath
 * is set up by bench/datapath-nodes-peer.ts inside the node's namespace.
 *
 * Writes docs/benchmarks/datapath-nodes.md; with --json the last stdout line is
 * {"native": {"rr_ratio": …, "gbps_ratio": …}, "tunnel": {…}, …} (ratios of medians against plain).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { run } from '../src/util/exec.js';
import { repoPath } from '../src/util/paths.js';
import { Sandbox } from '../src/devcluster/netns.js';
import type { BenchArgs } from './args.js';
import { median } from './stats.js';

type Path = 'plain' | 'native' | 'tunnel';
const PATHS: readonly Path[] = ['plain', 'native', 'tunnel'];
const PORTS = { rr: 7000, iperf: 5201 } as const;
const TUNNEL_PORT = 8472;
const UNDERLAY_MTU = 1500;
const TUNNEL_MTU = UNDERLAY_MTU - 50;
const PEER_JS = repoPath('dist', 'bench', 'datapath-nodes-peer.js');
/** The 1-, 5- and 15-minute load averages when the bench started (written into the doc). */
const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(', ');

interface BenchNode {
  ns: string;
  ip: string;
  pod: string;
  podIp: string;
  podCidr: string;
  hostIf: string;
  identity: number;
  pinDir: string;
}

const IperfResult = z.object({ end: z.object({ sum_received: z.object({ bits_per_second: z.number() }) }) });

async function nsRun(ns: string, cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return (await run('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], { timeoutMs })).stdout;
}

/** The world: underlay, two nodes, a pod in each; plain routes between the pod CIDRs. */
async function build(sb: Sandbox): Promise<[BenchNode, BenchNode]> {
  const underlay = await sb.netns('ul');
  await run('ip', ['-n', underlay, 'link', 'add', 'br0', 'mtu', String(UNDERLAY_MTU), 'type', 'bridge']);
  await run('ip', ['-n', underlay, 'link', 'set', 'br0', 'up']);
  const nodes: BenchNode[] = [];
  for (const i of [1, 2]) {
    const ns = await sb.netns(`n${i}`);
    const pod = await sb.netns(`p${i}`);
    const n: BenchNode = { ns, ip: `192.168.78.${10 + i}`, pod, podIp: `10.203.${i}.2`, podCidr: `10.203.${i}.0/24`, hostIf: `lxcbench${i}`, identity: 500 + i, pinDir: `/sys/fs/bpf/meshd-bench-nodes-${process.pid}-${i}` };
    const [a, b] = [sb.name(`a${i}`), sb.name(`b${i}`)];
    await run('ip', ['link', 'add', a, 'mtu', String(UNDERLAY_MTU), 'type', 'veth', 'peer', 'name', b]);
    await run('ip', ['link', 'set', a, 'netns', ns]);
    await run('ip', ['link', 'set', b, 'netns', underlay]);
    await run('ip', ['-n', ns, 'link', 'set', a, 'name', 'eth0']);
    await run('ip', ['-n', ns, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', underlay, 'link', 'set', b, 'master', 'br0', 'up']);
    await nsRun(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    // the pod: eth0 with a /24 of its own behind the node's veth
    await run('ip', ['-n', ns, 'link', 'add', n.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod]);
    await run('ip', ['-n', ns, 'addr', 'add', `10.203.${i}.1/24`, 'dev', n.hostIf]);
    await run('ip', ['-n', ns, 'link', 'set', n.hostIf, 'up']);
    await run('ip', ['-n', pod, 'addr', 'add', `${n.podIp}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', pod, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', pod, 'route', 'add', 'default', 'via', `10.203.${i}.1`]);
    nodes.push(n);
  }
  const [n1, n2] = nodes;
  if (!n1 || !n2) throw new Error('two nodes expected');
  return [n1, n2];
}

/** Routes and MTUs of a path: plain and native route via the node, tunnel through the device at the tunnel MTU. */
async function routeFor(path: Path, n: BenchNode, other: BenchNode): Promise<void> {
  const via = path === 'tunnel' ? ['dev', 'meshd_tunnel'] : ['via', other.ip];
  await run('ip', ['-n', n.ns, 'route', 'replace', other.podCidr, ...via]);
  const mtu = String(path === 'tunnel' ? TUNNEL_MTU : UNDERLAY_MTU);
  await run('ip', ['-n', n.ns, 'link', 'set', n.hostIf, 'mtu', mtu]);
  await run('ip', ['-n', n.pod, 'link', 'set', 'eth0', 'mtu', mtu]);
}

/** Starts a node's datapath (bench/datapath-nodes-peer.ts) and resolves once it is ready; the returned function undoes it. */
async function startPeer(path: Exclude<Path, 'plain'>, n: BenchNode, other: BenchNode, role: 'client' | 'server'): Promise<() => Promise<void>> {
  const spec = {
    pinDir: n.pinDir,
    mode: path,
    ifname: n.hostIf,
    identity: n.identity,
    ip: n.podIp,
    peer: { identity: other.identity, ip: other.podIp },
    role,
    ports: [PORTS.rr, PORTS.iperf],
    ...(path === 'tunnel' ? { tunnel: { cidr: other.podCidr, endpoint: other.ip, port: TUNNEL_PORT, mtu: TUNNEL_MTU } } : {}),
  };
  const child: ChildProcess = spawn('nsenter', [`--net=/run/netns/${n.ns}`, process.execPath, PEER_JS, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.value !== 'ready') throw new Error(`datapath peer on ${n.ns}: ${String(first.value)}`);
  return async () => {
    child.stdin?.end();
    await lines.next();
    await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
  };
}

export async function nodesBench(a: BenchArgs): Promise<void> {
  const duration = a.num('--duration', 3);
  const rounds = a.num('--rounds', 3);
  const tmp = mkdtempSync(join(tmpdir(), 'meshd-bench-nodes-'));
  const bin = join(tmp, 'datapath-rr');
  await run('gcc', ['-O2', '-pthread', '-o', bin, repoPath('bench', 'datapath-rr.c')]);
  const sb = new Sandbox('bnd');
  const rr: Record<Path, number[]> = { plain: [], native: [], tunnel: [] };
  const gbps: Record<Path, number[]> = { plain: [], native: [], tunnel: [] };
  try {
    const [n1, n2] = await build(sb);
    const rrServer = spawn('ip', ['netns', 'exec', n2.pod, bin, 'server', String(PORTS.rr)]);
    const iperfServer = spawn('ip', ['netns', 'exec', n2.pod, 'iperf3', '-s', '-p', String(PORTS.iperf)], { stdio: 'ignore' });
    sb.defer(async () => {
      rrServer.kill('SIGKILL');
      iperfServer.kill('SIGKILL');
    });
    await new Promise<void>((resolve, reject) => {
      rrServer.stdout.once('data', () => resolve());
      rrServer.once('exit', (c) => reject(new Error(`rr server exited (${c})`)));
    });
    for (let r = 0; r < rounds; r += 1) {
      for (const path of PATHS) {
        // The peers first: in tunnel mode they create the device the routes name.
        const stops = path === 'plain' ? [] : [await startPeer(path, n1, n2, 'client'), await startPeer(path, n2, n1, 'server')];
        try {
          await routeFor(path, n1, n2);
          await routeFor(path, n2, n1);
          const out = (await run('ip', ['netns', 'exec', n1.pod, bin, 'client', n2.podIp, String(PORTS.rr), String(duration)], { timeoutMs: (duration + 20) * 1000 })).stdout;
          const [count, ns] = out.trim().split(' ').map(Number);
          if (!count || !ns) throw new Error(`rr client (${path}): unexpected output "${out}"`);
          rr[path].push(count / (ns / 1e9));
          const ip = await run('ip', ['netns', 'exec', n1.pod, 'iperf3', '-c', n2.podIp, '-p', String(PORTS.iperf), '-t', String(duration), '-J'], { timeoutMs: (duration + 30) * 1000 });
          gbps[path].push(IperfResult.parse(JSON.parse(ip.stdout)).end.sum_received.bits_per_second / 1e9);
        } finally {
          for (const stop of stops.reverse()) await stop();
        }
        a.log(`round ${r + 1} ${path}: ${rr[path].at(-1)?.toFixed(0)} rr/s, ${gbps[path].at(-1)?.toFixed(2)} Gbit/s`);
      }
    }
  } finally {
    await sb.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }
  const ratio = (p: Path) => ({ rr_ratio: Number((median(rr[p]) / median(rr.plain)).toFixed(3)), gbps_ratio: Number((median(gbps[p]) / median(gbps.plain)).toFixed(3)) });
  const summary = {
    native: ratio('native'),
    tunnel: ratio('tunnel'),
    rr_per_s: Object.fromEntries(PATHS.map((p) => [p, Math.round(median(rr[p]))])),
    gbps: Object.fromEntries(PATHS.map((p) => [p, Number(median(gbps[p]).toFixed(2))])),
  };
  const row = (p: Path) => `| ${p} | ${median(rr[p]).toFixed(0)} | ${rr[p].map((x) => x.toFixed(0)).join(', ')} | ${median(gbps[p]).toFixed(2)} | ${gbps[p].map((x) => x.toFixed(2)).join(', ')} |`;
  const md = `# Datapath across two nodes

Produced by \`npm run bench:datapath -- --nodes 2\` (bench/datapath-nodes.ts) on ${new Date().toISOString().slice(0, 10)},
kernel ${(await run('uname', ['-r'])).stdout.trim()}; ${rounds} alternating rounds of ${duration} s per path and measure.
${process.argv.includes('--dev-run') ? '**Development run on a shared, busy machine: not the figures to quote; to be re-run on a quiet machine.**' : `Load average at the start ${loadAtStart}; the figures of the code at this commit.`}

Two nodes as network namespaces on an underlay bridge (MTU ${UNDERLAY_MTU}), a pod behind a veth in each.
plain: routed namespaces without meshd. native: meshd's endpoint programs on both pods' host veths
(default-deny L3/L4 policy allowing the flow) and meshd_from_netdev on each node's eth0, routed natively. tunnel: the same programs plus meshd's VXLAN
encapsulation in eBPF (source identity in the VNI), pods at MTU ${TUNNEL_MTU}.

| path | request/response (median, round trips/s) | rounds | TCP throughput (median, Gbit/s) | rounds |
| --- | ---: | --- | ---: | --- |
${PATHS.map(row).join('\n')}

native / plain: rr **${summary.native.rr_ratio}**, throughput **${summary.native.gbps_ratio}** (targets ≥ 0.9).
tunnel / plain: rr **${summary.tunnel.rr_ratio}**, throughput **${summary.tunnel.gbps_ratio}** (targets ≥ 0.8).
`;
  writeFileSync(repoPath('docs', 'benchmarks', 'datapath-nodes.md'), md);
  a.log('wrote docs/benchmarks/datapath-nodes.md');
  if (a.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else a.log(JSON.stringify(summary, null, 2));
}
