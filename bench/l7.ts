/**
 * npm run bench:l7 [-- --json] [--duration S] [--rounds N] [--connections N]
 *
 * HTTP requests/s and p50/p99 latency (wrk, keep-alive, from pod A's
 * namespace to a server in pod B's namespace, both on veths with meshd's
 * datapath attached) for three paths, measured in alternating rounds of one run:
 *
 *   direct       A → B:8081, L4 allow in the kernel, no proxy;
 *   per_node     A → B:8080 with an HTTP allow rule: the datapath redirects the
 *                connection to meshd's node Envoy (ProxyManager, xDS-configured,
 *                RBAC + access logs over gRPC), which forwards it to B marked with
 *                A's identity;
 *   sidecar_pair A → B:8082 through two Envoys in the sidecar arrangement: one in
 *                A's namespace (outbound, iptables nat OUTPUT REDIRECT, as Istio's
 *                init container sets up) and one in B's namespace (inbound,
 *                PREROUTING REDIRECT) applying the same RBAC rule; each parses
 *                HTTP, as Istio's sidecars do.
 *
 * Every Envoy runs with --concurrency 1. Beside latency, each round records
 * the CPU time every process on the path spent per request (Envoys, the
 * server, and this process, which hosts meshd's xDS and access-log servers):
 * on a loaded machine latency is mostly waiting for a core, CPU per request
 * is what the path itself costs.
 *
 * Targets (issue #22), as same-run ratios: per_node p50 ≤ 0.5 × sidecar_pair
 * p50, per_node p50 ≤ 2.5 × direct p50, per_node p99 ≤ sidecar_pair p99.
 *
 * Writes docs/benchmarks/l7.md; with --json the last stdout line is
 * {"direct": {"rps", "p50_ms", "p99_ms", "cpu_us": {"envoy", "server", "agent"}}, "per_node": {…}, "sidecar_pair": {…}}.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findEnvoy } from '../envoy/binary.js';
import { EndpointManager } from '../src/datapath/endpoint/endpoint-manager.js';
import type { EndpointPolicy, PolicyEntry } from '../src/policy/types.js';
import { buildHttpConnectionManager } from '../src/proxy/http-connection-manager.js';
import { removePolicyRouting } from '../src/proxy/policy-routing.js';
import { ProxyManager } from '../src/proxy/proxy-manager.js';
import { ProxySupervisor } from '../src/proxy/supervisor.js';
import { envoysOfWorkDir } from '../src/proxy/supervisor-process.js';
import { buildRbac } from '../src/proxy/rbac.js';
import { run } from '../src/util/exec.js';
import { createLogger } from '../src/util/log.js';
import { repoPath } from '../src/util/paths.js';
import { tempPinDir } from '../test/helpers/bpffs.js';
import { startHttpServer } from '../test/helpers/l7-peers.js';
import { Sandbox } from '../src/devcluster/netns.js';
import { benchArgs } from './args.js';
import { cpuMs, pidsInNetns } from './proc-cpu.js';
import { median } from './stats.js';

const { json, num, log } = benchArgs();
const duration = num('--duration', 5);
const rounds = num('--rounds', 3);
const connections = num('--connections', 4);

const ID_A = 1001;
const ID_B = 1002;
const A_IP = '10.231.0.2';
const B_IP = '10.231.0.6';
const PORT = { per_node: 8080, direct: 8081, sidecar_pair: 8082 } as const;
type Case = keyof typeof PORT;
const CASES: Case[] = ['direct', 'per_node', 'sidecar_pair'];
const PATH = '/api/v1/users';
/** Sidecar ports and the mark that lets the outbound sidecar's own upstream skip the redirect (as Istio's uid match). */
const OUTBOUND = 15001;
const INBOUND = 15006;
const SIDECAR_MARK = 0x1337;

interface Result {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  requests: number;
}

/** CPU µs per request of the processes on a path: its Envoy(s), the server in B, this process (meshd's xDS and ALS servers). */
interface CpuPerRequest {
  envoy: number;
  server: number;
  agent: number;
}
const PARTS: Array<keyof CpuPerRequest> = ['envoy', 'server', 'agent'];

/** Targets of issue #22, as same-run ratios. */
const TARGET = { perNodeOverSidecarP50: 0.5, perNodeOverDirectP50: 2.5 } as const;

const toMs = (v: string, unit: string): number => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);

function parseWrk(out: string): Result {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const requests = /^\s*(\d+) requests in /m.exec(out);
  if (!rps || !p50 || !p99 || !requests) throw new Error(`unexpected wrk output:\n${out}`);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} non-2xx answers (a rule or a path is wrong):\n${out}`);
  return { rps: Number(rps[1]), p50_ms: toMs(p50[1] ?? '', p50[2] ?? ''), p99_ms: toMs(p99[1] ?? '', p99[2] ?? ''), requests: Number(requests[1]) };
}

function sidecarBootstrap(o: { admin: string; port: number; rbac?: Record<string, unknown>; mark?: number }): Record<string, unknown> {
  const hcm = buildHttpConnectionManager({ statPrefix: 'sidecar', rbac: o.rbac ? [o.rbac] : [], cluster: 'original-dst' });
  // The sidecars use iptables REDIRECT, so the original destination comes from SO_ORIGINAL_DST (original_dst filter).
  const route = ((hcm.route_config as { virtual_hosts: Array<{ routes: Array<Record<string, unknown>> }> }).virtual_hosts[0]?.routes[0] ?? {}) as Record<string, unknown>;
  delete route.request_headers_to_add;
  const cluster: Record<string, unknown> = { name: 'original-dst', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '2s' };
  if (o.mark !== undefined) cluster.upstream_bind_config = { socket_options: [{ level: 1, name: 36, int_value: o.mark, state: 'STATE_PREBIND' }] };
  return {
    node: { id: `sidecar-${o.port}`, cluster: 'bench' },
    admin: { address: { pipe: { path: o.admin } } },
    static_resources: {
      listeners: [
        {
          name: 'sidecar',
          address: { socket_address: { address: '0.0.0.0', port_value: o.port } },
          listener_filters: [{ name: 'envoy.filters.listener.original_dst', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst' } }],
          filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }],
        },
      ],
      clusters: [cluster],
    },
  };
}

/** An Envoy in a namespace (static bootstrap, no xDS), run by the node proxy's supervisor through a two-line wrapper. */
async function sidecar(sb: Sandbox, dir: string, ns: string, name: string, bootstrap: (admin: string) => Record<string, unknown>): Promise<ProxySupervisor> {
  const wrapper = join(dir, `${name}.sh`);
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} ${findEnvoy().path} "$@"\n`);
  chmodSync(wrapper, 0o755);
  const adminSocket = join(dir, `${name}-admin.sock`);
  const sup = new ProxySupervisor({
    workDir: join(dir, name),
    replicas: 1,
    instance: () => ({ bootstrap: bootstrap(adminSocket), nodeId: name, adminSocket }),
    // The bootstrap is the whole configuration: ready is configured.
    configured: () => Promise.resolve(),
    binaryPath: wrapper,
    concurrency: 1,
    drainTimeS: 0,
    drainTimeoutMs: 0,
  });
  sb.defer(() => sup.stop());
  await sup.start();
  return sup;
}

async function main(): Promise<void> {
  const sb = new Sandbox('bl7');
  const pins = tempPinDir('bl7');
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bench-l7-'));
  const routing = { mark: 0xb00, mask: 0xf00, table: 40000 + (process.pid % 20000), priority: 8000 + (process.pid % 1000) };
  let dp: EndpointManager | undefined;
  let proxy: ProxyManager | undefined;
  try {
    const nsA = await sb.netns('a');
    const nsB = await sb.netns('b');
    const hA = sb.name('ha');
    const hB = sb.name('hb');
    await sb.vethToHost(nsA, { hostIf: hA, podIf: 'eth0', hostIp: '10.231.0.1/30', podIp: `${A_IP}/30`, defaultRoute: true });
    await sb.vethToHost(nsB, { hostIf: hB, podIf: 'eth0', hostIp: '10.231.0.5/30', podIp: `${B_IP}/30`, defaultRoute: true });
    for (const i of [hA, hB]) await run('sysctl', ['-qw', `net.ipv4.conf.${i}.forwarding=1`]);

    await startHttpServer(sb, nsB, 'B', [PORT.per_node, PORT.direct, PORT.sidecar_pair]);

    // (b): meshd's per-node Envoy and the kernel redirect.
    sb.defer(() => removePolicyRouting(routing));
    const p = await ProxyManager.start({
      nodeName: `bench-l7-${process.pid}`,
      stateDir: join(dir, 'proxy'),
      portRange: [23000 + (process.pid % 500) * 10, 23009 + (process.pid % 500) * 10],
      xdsMode: 'delta',
      log: createLogger({ bench: 'l7' }, { level: 'warn' }),
      routing,
      concurrency: 1,
    });
    proxy = p;
    const d = await EndpointManager.open({ pinDir: pins.path, proxyPort: (k, dirn) => p.proxyPort(k, dirn) });
    dp = d;
    await d.addEndpoint({ endpointId: 'bench/a', ifname: hA, identity: ID_A, ips: [A_IP] });
    await d.addEndpoint({ endpointId: 'bench/b', ifname: hB, identity: ID_B, ips: [B_IP] });
    d.syncIpcache([
      { prefix: `${A_IP}/32`, identity: ID_A },
      { prefix: `${B_IP}/32`, identity: ID_B },
    ]);
    const l7: PolicyEntry = { remoteIdentity: ID_A, protocol: 6, port: PORT.per_node, endPort: PORT.per_node, verdict: 'REDIRECT', derivedFrom: ['bench/l7'], l7: { kind: 'http', rules: [{ method: 'GET', path: PATH }] } };
    const l4 = (port: number): PolicyEntry => ({ remoteIdentity: ID_A, protocol: 6, port, endPort: port, verdict: 'ALLOW', derivedFrom: ['bench/l4'] });
    const polB: EndpointPolicy = { endpointId: 'bench/b', identity: ID_B, revision: 1, ingress: { defaultDeny: true, entries: [l7, l4(PORT.direct), l4(PORT.sidecar_pair)] }, egress: { defaultDeny: false, entries: [] } };
    const polA: EndpointPolicy = { endpointId: 'bench/a', identity: ID_A, revision: 1, ingress: { defaultDeny: false, entries: [] }, egress: { defaultDeny: false, entries: [] } };
    await p.apply({ endpoints: [{ policy: polA, ips: [A_IP] }, { policy: polB, ips: [B_IP] }], identityIps: new Map([[ID_A, [`${A_IP}/32`]], [ID_B, [`${B_IP}/32`]]]) });
    d.updatePolicy(polA);
    d.updatePolicy(polB);

    // (c): two sidecars with iptables REDIRECT in the pods' namespaces.
    const rbac = buildRbac({ entries: [{ ...l7, remoteIdentity: 0, port: PORT.sidecar_pair, endPort: PORT.sidecar_pair }], defaultDeny: true, subjects: [] });
    await sidecar(sb, dir, nsA, 'outbound', (admin) => sidecarBootstrap({ admin, port: OUTBOUND, mark: SIDECAR_MARK }));
    await sidecar(sb, dir, nsB, 'inbound', (admin) => sidecarBootstrap({ admin, port: INBOUND, rbac }));
    const ipt = (ns: string, rule: string[]) => run('ip', ['netns', 'exec', ns, 'iptables', '-w', '5', '-t', 'nat', '-A', ...rule]);
    await ipt(nsA, ['OUTPUT', '-p', 'tcp', '-m', 'mark', '--mark', String(SIDECAR_MARK), '-j', 'RETURN']);
    await ipt(nsA, ['OUTPUT', '-p', 'tcp', '-d', B_IP, '--dport', String(PORT.sidecar_pair), '-j', 'REDIRECT', '--to-ports', String(OUTBOUND)]);
    await ipt(nsB, ['PREROUTING', '-p', 'tcp', '--dport', String(PORT.sidecar_pair), '-j', 'REDIRECT', '--to-ports', String(INBOUND)]);

    // Each path answers with the server's body before it is measured.
    for (const c of CASES) {
      const r = await run('ip', ['netns', 'exec', nsA, 'curl', '-sS', '--max-time', '5', '--retry', '2', '--retry-connrefused', `http://${B_IP}:${PORT[c]}${PATH}`]);
      if (!r.stdout.startsWith(`B ${PORT[c]} GET ${PATH} from `)) throw new Error(`${c}: unexpected answer "${r.stdout}"`);
      log(`${c}: ${r.stdout}`);
    }

    // The processes each path crosses (the direct path crosses no Envoy).
    const envoys: Record<Case, number[]> = {
      direct: [],
      per_node: envoysOfWorkDir(join(dir, 'proxy', 'envoy')),
      sidecar_pair: [...envoysOfWorkDir(join(dir, 'outbound')), ...envoysOfWorkDir(join(dir, 'inbound'))],
    };
    if (envoys.per_node.length !== 1 || envoys.sidecar_pair.length !== 2) throw new Error(`expected 1 node Envoy and 2 sidecars, found ${JSON.stringify(envoys)}`);
    const server = pidsInNetns(nsB).filter((pid) => !envoys.sidecar_pair.includes(pid));
    if (server.length !== 1) throw new Error(`expected one server process in B's namespace, found ${JSON.stringify(server)}`);
    const agentMs = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    };

    const samples: Record<Case, Result[]> = { direct: [], per_node: [], sidecar_pair: [] };
    const cpu: Record<Case, CpuPerRequest[]> = { direct: [], per_node: [], sidecar_pair: [] };
    const allEnvoys = [...envoys.per_node, ...envoys.sidecar_pair];
    for (let round = 0; round < rounds; round++) {
      // What each process spends with no traffic (timers, stats, polling), per ms of wall time: subtracted
      // below, so a slow round on a loaded machine does not spread that over few requests.
      const idleFrom = { t: performance.now(), envoys: allEnvoys.map((pid) => cpuMs([pid])), server: cpuMs(server), agent: agentMs() };
      await sleep(duration * 1000);
      const idleMs = performance.now() - idleFrom.t;
      const idleRate = new Map(allEnvoys.map((pid, i) => [pid, (cpuMs([pid]) - (idleFrom.envoys[i] ?? 0)) / idleMs]));
      const idle = { server: (cpuMs(server) - idleFrom.server) / idleMs, agent: (agentMs() - idleFrom.agent) / idleMs };
      for (const c of CASES) {
        const url = `http://${B_IP}:${PORT[c]}${PATH}`;
        const before = { envoy: cpuMs(envoys[c]), server: cpuMs(server), agent: agentMs() };
        const t0 = performance.now();
        const out = await run('ip', ['netns', 'exec', nsA, 'wrk', '-t1', `-c${connections}`, `-d${duration}s`, '--latency', url], { timeoutMs: (duration + 30) * 1000 });
        const wall = performance.now() - t0;
        const after = { envoy: cpuMs(envoys[c]), server: cpuMs(server), agent: agentMs() };
        const r = parseWrk(out.stdout);
        samples[c].push(r);
        const idleMsOf = { envoy: envoys[c].reduce((a, pid) => a + (idleRate.get(pid) ?? 0), 0) * wall, server: idle.server * wall, agent: idle.agent * wall };
        const perReq = (k: keyof CpuPerRequest) => ((after[k] - before[k] - idleMsOf[k]) * 1000) / r.requests;
        const u = { envoy: perReq('envoy'), server: perReq('server'), agent: perReq('agent') };
        cpu[c].push(u);
        log(`round ${round + 1} ${c}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50_ms.toFixed(3)} ms, p99 ${r.p99_ms.toFixed(3)} ms; CPU µs/request envoy ${u.envoy.toFixed(1)} server ${u.server.toFixed(1)} agent ${u.agent.toFixed(1)}`);
      }
    }
    const als = p.accessLogCounts();
    const accessLogs = als.forwarded + als.denied + als.error;
    const cpuMedian = (c: Case): CpuPerRequest => ({ envoy: +median(cpu[c].map((u) => u.envoy)).toFixed(1), server: +median(cpu[c].map((u) => u.server)).toFixed(1), agent: +median(cpu[c].map((u) => u.agent)).toFixed(1) });
    const summary = Object.fromEntries(
      CASES.map((c) => [
        c,
        { rps: Math.round(median(samples[c].map((s) => s.rps))), p50_ms: +median(samples[c].map((s) => s.p50_ms)).toFixed(3), p99_ms: +median(samples[c].map((s) => s.p99_ms)).toFixed(3), cpu_us: cpuMedian(c) },
      ]),
    ) as Record<Case, Omit<Result, 'requests'> & { cpu_us: CpuPerRequest }>;
    const ratio = summary.per_node.p50_ms / summary.sidecar_pair.p50_ms;
    const ratioDirect = summary.per_node.p50_ms / summary.direct.p50_ms;
    const p99Met = summary.per_node.p99_ms <= summary.sidecar_pair.p99_ms;
    const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
    const load = loadavg().map((l) => l.toFixed(2)).join(', ');
    const uname = (await run('uname', ['-r'])).stdout.trim();
    const row = (c: Case, what: string) =>
      `| ${c} | ${what} | ${summary[c].rps} | ${summary[c].p50_ms.toFixed(3)} | ${summary[c].p99_ms.toFixed(3)} | ${samples[c].map((s) => `${s.rps.toFixed(0)}/${s.p50_ms.toFixed(3)}`).join(', ')} |`;
    const cpuRow = (c: Case) => {
      const u = summary[c].cpu_us;
      return `| ${c} | ${PARTS.map((k) => u[k].toFixed(1)).join(' | ')} | ${(u.envoy + u.server + u.agent).toFixed(1)} |`;
    };
    const md = `# L7 benchmark: per-node Envoy vs sidecar pair

Generated by \`npm run bench:l7\` (bench/l7.ts) on Linux ${uname}, ${new Date().toISOString().slice(0, 10)}.
wrk from pod A's namespace to a Node.js HTTP server in pod B's namespace (veths, meshd's datapath attached to both),
\`-t1 -c${connections} -d${duration}s\`, keep-alive, \`GET ${PATH}\`; ${rounds} alternating rounds per path, medians
reported. Every Envoy runs with \`--concurrency 1\`. The machine has 2 shared cores: absolute numbers move between
runs, the three paths are measured in the same run. Load average (1, 5, 15 min) when the run ended: ${load}.

| path | what | req/s | p50 ms | p99 ms | rounds (req/s / p50 ms) |
| --- | --- | ---: | ---: | ---: | --- |
${row('direct', 'kernel only (L4 allow)')}
${row('per_node', "meshd: datapath redirect → node Envoy (RBAC, access logs) → B")}
${row('sidecar_pair', 'A-side Envoy → B-side Envoy (RBAC), iptables REDIRECT in each pod')}

Targets (issue #22), same-run ratios:

- per_node p50 / sidecar_pair p50: **${ratio.toFixed(3)}** (target ≤ ${TARGET.perNodeOverSidecarP50}: ${met(ratio <= TARGET.perNodeOverSidecarP50)});
- per_node p50 / direct p50: **${ratioDirect.toFixed(3)}** (target ≤ ${TARGET.perNodeOverDirectP50}: ${met(ratioDirect <= TARGET.perNodeOverDirectP50)});
- per_node p99 ${summary.per_node.p99_ms.toFixed(3)} ms, sidecar_pair p99 ${summary.sidecar_pair.p99_ms.toFixed(3)} ms (target: not above: ${met(p99Met)}).

CPU time per request of each process on the path (µs, from /proc, median over rounds; 10 ms tick resolution over
${duration} s of load), less what the same process spent per second in an idle window of ${duration} s before each round:
the Envoy(s), the server in B, and meshd's agent side (the benchmark's own process, which hosts the xDS server,
the access-log receiver and the datapath's event reader). wrk and the kernel's softirq work outside these
processes are not counted.

| path | Envoy(s) | server | meshd agent | sum of the medians |
| --- | ---: | ---: | ---: | ---: |
${CASES.map(cpuRow).join('\n')}

The per-node Envoy sent ${accessLogs} access-log records to meshd during the run (gRPC ALS to the agent, a Node.js
process on the same two cores); the sidecars log nothing. That logging is part of what the per-node path pays, and
a likely contributor to its p99.

## What is compared

- **direct**: the connection stays in the kernel (policy allows port ${PORT.direct} at L4).
- **per_node**: port ${PORT.per_node} carries an HTTP rule; the datapath assigns the connection to the node
  Envoy's transparent listener (\`bpf_sk_assign\`), Envoy applies the RBAC rule, logs over gRPC ALS, and opens
  its upstream with \`SO_MARK\` carrying A's identity, which B's datapath admits.
- **sidecar_pair**: the closest honest stand-in for Istio's sidecars on one machine: an Envoy in each pod's
  network namespace, traffic captured with iptables \`nat\` REDIRECT (OUTPUT in A, PREROUTING in B; the outbound
  Envoy's own upstream skips the capture by its mark, as Istio skips its proxy's uid), \`original_dst\` listener
  filter and ORIGINAL_DST clusters, HTTP parsed on both hops, the same RBAC rule on the inbound side. No mTLS
  (Istio would add a TLS handshake per connection and encryption per request: this understates the sidecar cost).
  Static bootstraps instead of xDS: the data path is the same.
`;
    writeFileSync(repoPath('docs', 'benchmarks', 'l7.md'), md);
    log('wrote docs/benchmarks/l7.md');
    if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else log(JSON.stringify(summary, null, 2));
  } finally {
    await proxy?.stop().catch(() => undefined);
    dp?.close();
    EndpointManager.destroyPins(pins.path);
    await sb.cleanup().catch((e: unknown) => log(`cleanup: ${String(e)}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:l7 failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
