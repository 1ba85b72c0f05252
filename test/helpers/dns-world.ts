/**
 * A node for the DNS proxy tests: the agent (AgentNode) on the shipped
 * example policies, pods through meshd-cni — `app` (examples/policies/l3-fqdn.yaml),
 * `web` (only examples/policies/l7-dns.yaml), `other` in a namespace without
 * policy, and `coredns` in kube-system labelled k8s-app=kube-dns running the
 * real dnsmasq — plus an "internet" namespace owning 198.18.<k>.0/24 with TCP
 * servers on 80 and 443 on every address.
 *
 *   const w = await DnsWorld.create(t, { 'dnsProxy.dnsRejectResponseCode': 'refused' });
 *   await w.dnsmasq({ ttl: 300 });
 *   await w.client('app').call({ op: 'resolveConnect', server: w.resolver, name: 'api.github.com', port: 443 });
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EndpointApiClient } from '../../src/cni/endpoint-api-client.js';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import type { RunAgentOptions } from '../../src/agent/run.js';
import { AgentNode, type TestPod } from './agent-node.js';
import { startPeer } from './datapath-peer.js';

const MANIFESTS = `apiVersion: v1
kind: Namespace
metadata: { name: default }
---
apiVersion: v1
kind: Namespace
metadata: { name: kube-system }
---
apiVersion: v1
kind: Namespace
metadata: { name: plain }
---
apiVersion: v1
kind: Pod
metadata: { name: app, namespace: default, labels: { app: app } }
spec: { containers: [{ name: app, image: app }] }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: default, labels: { app: web } }
spec: { containers: [{ name: web, image: web }] }
---
apiVersion: v1
kind: Pod
metadata: { name: other, namespace: plain, labels: { app: other } }
spec: { containers: [{ name: other, image: other }] }
---
apiVersion: v1
kind: Pod
metadata: { name: coredns, namespace: kube-system, labels: { k8s-app: kube-dns } }
spec: { containers: [{ name: dns, image: dnsmasq }] }
`;

export type DnsResult = {
  rcode?: string;
  answers?: Array<{ name: string; type: string; data: unknown; ttl: number | null }>;
  error?: string;
  ip?: string;
  connect?: string;
  sent?: boolean;
};

export interface PodClient {
  call(cmd: Record<string, unknown>): Promise<DnsResult>;
  close(): void;
}

/** The helper client (dns-pod-client.ts) inside a pod namespace. */
export async function startPodClient(node: AgentNode, ns: string): Promise<PodClient> {
  const script = repoPath('dist', 'test', 'helpers', 'dns-pod-client.js');
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, script], { stdio: ['pipe', 'pipe', 'inherit'] });
  node.sb.defer(async () => {
    proc.kill('SIGKILL');
  });
  const waiting: Array<(line: string) => void> = [];
  let buf = '';
  let ready: (() => void) | undefined;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) {
      if (l === 'ready') ready?.();
      else waiting.shift()?.(l);
    }
  });
  await isReady;
  return {
    call: (cmd) =>
      new Promise<DnsResult>((resolve) => {
        waiting.push((l) => resolve(JSON.parse(l) as DnsResult));
        proc.stdin.write(`${JSON.stringify(cmd)}\n`);
      }),
    close: () => proc.kill('SIGKILL'),
  };
}

const linkOf = async (args: string[]): Promise<{ ifindex: number; ifname: string; address: string; link_index?: number }> => {
  const links = JSON.parse((await run('ip', ['-j', ...args])).stdout) as Array<{ ifindex: number; ifname: string; address: string; link_index?: number }>;
  const l = links[0];
  if (!l) throw new Error(`no link: ip ${args.join(' ')}`);
  return l;
};

export class DnsWorld {
  readonly k = 100 + (process.pid % 150);
  readonly inet = (n: number) => `198.18.${this.k}.${n}`;
  /** IPv6 addresses of the "internet" (AAAA answers; documentation prefix). */
  readonly inet6 = (n: number) => `2001:db8:${this.k.toString(16)}::${n.toString(16)}`;
  /** IPv6 addresses of dual-stack pods (dualStack()) and of the node's side. */
  readonly pod6 = (n: number) => `fd00:d5:${this.k.toString(16)}::${n.toString(16)}`;
  /** The node's IPv6 address toward the pods (on the resolver pod's host veth). */
  readonly node6 = this.pod6(1);
  private readonly v6 = new Map<string, string>();
  private inetNs = '';
  pods: Record<'app' | 'web' | 'other' | 'coredns', TestPod> = {} as Record<'app' | 'web' | 'other' | 'coredns', TestPod>;
  private clients = new Map<string, PodClient>();
  private dns: ChildProcess | null = null;
  private log = '';

  private constructor(readonly node: AgentNode) {}

  /** `t.after` receives the cleanup (a test context, or the benchmark's own list). */
  static async create(t: { after(fn: () => Promise<void>): void }, overrides: Record<string, unknown> = {}, start: Partial<RunAgentOptions> = {}): Promise<DnsWorld> {
    // proxyResponseMaxDelay: Cilium's 100 ms default is a latency bound; on a loaded test machine a longer one keeps
    // "the answer waited for the kernel" (delayedPastMax = 0) a property of the code, not of the machine's load.
    const node = new AgentNode({ 'bpf.events.sampleNewConnections': 1, 'dnsProxy.proxyResponseMaxDelay': '3s', ...overrides }, 3);
    const w = new DnsWorld(node);
    t.after(async () => {
      await w.stopDnsmasq();
      await node.cleanup(); // the shared policy routing and upstream return rule too, unless another agent holds them
    });
    mkdirSync(node.manifests, { recursive: true });
    node.write('world.yaml', MANIFESTS);
    copyFileSync(repoPath('examples', 'policies', 'l3-fqdn.yaml'), join(node.manifests, 'l3-fqdn.yaml'));
    copyFileSync(repoPath('examples', 'policies', 'l7-dns.yaml'), join(node.manifests, 'l7-dns.yaml'));
    await node.start(start);
    w.pods = {
      app: await node.addPod('app'),
      web: await node.addPod('web'),
      other: await node.addPod('other', 'plain'),
      coredns: await node.addPod('coredns', 'kube-system'),
    };
    // The internet: a namespace owning 198.18.<k>.0/24 (every address local), servers on 80 and 443.
    const sb = node.sb;
    const nsI = await sb.netns('inet');
    w.inetNs = nsI;
    const hI = sb.name('hinet');
    const link = (n: number) => `10.${w.k}.79.${n}`;
    await sb.vethToHost(nsI, { hostIf: hI, podIf: 'eth0', hostIp: `${link(1)}/30`, podIp: `${link(2)}/30`, defaultRoute: true });
    await run('ip', ['-n', nsI, 'addr', 'add', `${w.inet(1)}/24`, 'dev', 'lo']);
    await run('ip', ['route', 'add', `198.18.${w.k}.0/24`, 'via', link(2), 'dev', hI]);
    sb.defer(() => run('ip', ['route', 'del', `198.18.${w.k}.0/24`]));
    await run('sysctl', ['-qw', `net.ipv4.conf.${hI}.forwarding=1`]);
    await startPeer(sb, nsI, ['serve', 'INET', '80', '443']);
    return w;
  }

  get resolver(): string {
    return this.pods.coredns.ip;
  }

  /** The resolver pod's IPv6 address (after dualStack('coredns', …)). */
  get resolver6(): string {
    const a = this.v6.get('coredns');
    if (!a) throw new Error('the resolver pod has no IPv6 address: dualStack() first');
    return a;
  }

  /**
   * Makes a pod dual-stack, as a dual-stack IPAM would (meshd-cni hands out IPv4 only): an IPv6 address
   * on its eth0, a default route to the node over the veth (fe80::1 on the host side; static
   * neighbours, so no neighbour discovery runs), a route to it on the node, IPv6 forwarding for what
   * enters on its veth (force_forwarding, kernel 6.17+), and the address
   * registered with the agent beside the IPv4 one (the CNI endpoint API's idempotent upsert), so the
   * engine, the ipcache and the datapath know it as the pod's. The resolver pod's host veth also gets
   * the node's IPv6 address (node6), the source of the proxy's upstream legs.
   */
  async dualStack(pod: 'app' | 'web' | 'other' | 'coredns', address: string): Promise<void> {
    const p = this.pods[pod];
    const podIf = await linkOf(['-n', p.ns, 'link', 'show', 'eth0']);
    const hostIf = (JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifindex: number; ifname: string; address: string }>).find((l) => l.ifindex === podIf.link_index);
    if (!hostIf) throw new Error(`${pod}: no host side of eth0`);
    await run('sysctl', ['-qw', `net.ipv6.conf.${hostIf.ifname}.disable_ipv6=0`]);
    // Pod to pod over IPv6 through the node: forwarding for what enters on this veth only (the node-wide switch stays off).
    await run('sysctl', ['-qw', `net.ipv6.conf.${hostIf.ifname}.force_forwarding=1`]);
    await run('ip', ['-n', p.ns, '-6', 'addr', 'add', `${address}/128`, 'dev', 'eth0', 'nodad']);
    await run('ip', ['-6', 'addr', 'add', 'fe80::1/64', 'dev', hostIf.ifname, 'nodad']);
    await run('ip', ['-n', p.ns, '-6', 'neigh', 'replace', 'fe80::1', 'lladdr', hostIf.address, 'dev', 'eth0', 'nud', 'permanent']);
    await run('ip', ['-n', p.ns, '-6', 'route', 'replace', 'default', 'via', 'fe80::1', 'dev', 'eth0']);
    await run('ip', ['-6', 'neigh', 'replace', address, 'lladdr', podIf.address, 'dev', hostIf.ifname, 'nud', 'permanent']);
    if (pod === 'coredns') {
      await run('ip', ['-6', 'addr', 'add', `${this.node6}/128`, 'dev', hostIf.ifname, 'nodad']);
      await run('ip', ['-6', 'route', 'replace', `${address}/128`, 'dev', hostIf.ifname, 'src', this.node6]);
    } else {
      await run('ip', ['-6', 'route', 'replace', `${address}/128`, 'dev', hostIf.ifname]);
    }
    const agent = this.node.running?.agent;
    if (!agent) throw new Error('the agent is not running');
    const api = new EndpointApiClient(agent.socketPath('cni'));
    const e = (await api.list()).find((x) => x.k8s.name === pod);
    if (!e) throw new Error(`${pod}: not registered with the agent`);
    const { registeredAt: _, ...reg } = e;
    await api.register({ ...reg, ips: [...e.ips.filter((ip) => !ip.includes(':')), `${address}/128`] });
    this.v6.set(pod, address);
  }

  async client(pod: 'app' | 'web' | 'other'): Promise<PodClient> {
    let c = this.clients.get(pod);
    if (!c) {
      c = await startPodClient(this.node, this.pods[pod].ns);
      this.clients.set(pod, c);
    }
    return c;
  }

  /**
   * (Re)starts dnsmasq in the coredns pod: api.github.com, edge.example.net (www.example.com is a
   * CNAME to it), other.example.org, short.example.com, short2.example.com, flush.example.com, six.example.com
   * (AAAA only) and n0..n199.example.com, on the resolver's address and `listen`'s,
   * every record with the given TTL. Waits until it answers (asked from `other`, which is not redirected).
   */
  async dnsmasq(o: { ttl: number; logQueries?: boolean; listen?: string[] }): Promise<void> {
    await this.stopDnsmasq();
    const { proc, stderr } = this.spawnDnsmasq(this.pods.coredns.ns, [this.resolver, ...(o.listen ?? [])], o.ttl, o.logQueries === true, 'dnsmasq', (d) => (this.log += d));
    this.log = '';
    this.dns = proc;
    const other = await this.client('other');
    for (let i = 0; i < 50; i++) {
      const r = await other.call({ op: 'query', server: this.resolver, name: 'api.github.com', timeoutMs: 300 });
      if (r.rcode === 'NOERROR') return;
      await sleep(100);
    }
    throw new Error(`dnsmasq did not come up: ${stderr()}`);
  }

  /**
   * A resolver off the node: dnsmasq with the same records in the "internet" namespace, on
   * `offNodeResolver` (reached through the node's routing, as an upstream resolver would be), logging
   * every query's source. Stopped with the world.
   */
  async offNodeDnsmasq(): Promise<{ log(): string }> {
    let log = '';
    const { proc } = this.spawnDnsmasq(this.inetNs, [this.offNodeResolver], 300, true, 'dnsmasq-inet', (d) => (log += d));
    this.node.sb.defer(async () => {
      if (proc.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill('SIGKILL');
      await exited;
    });
    for (let i = 0; i < 50 && !log.includes('started'); i++) await sleep(100);
    return { log: () => log };
  }

  /** The off-node resolver's address (in the "internet" namespace). */
  get offNodeResolver(): string {
    return this.inet(53);
  }

  private spawnDnsmasq(ns: string, listen: string[], ttl: number, logQueries: boolean, tag: string, onLog: (d: string) => void): { proc: ChildProcess; stderr: () => string } {
    const hosts = join(this.node.tmp.dir, 'hosts');
    const lines = [
      `${this.inet(1)} api.github.com`,
      `${this.inet(2)} edge.example.net`,
      `${this.inet(3)} other.example.org`,
      `${this.inet(4)} short.example.com`,
      `${this.inet(5)} short2.example.com`,
      `${this.inet(6)} flush.example.com`,
      `${this.inet6(7)} six.example.com`,
      ...Array.from({ length: 200 }, (_, i) => `${this.inet(20 + i)} n${i}.example.com`),
    ];
    writeFileSync(hosts, `${lines.join('\n')}\n`);
    const args = [
      'netns', 'exec', ns, 'dnsmasq', '-k', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces',
      `--listen-address=${listen.join(',')}`, `--local-ttl=${ttl}`, `--addn-hosts=${hosts}`, '--cname=www.example.com,edge.example.net',
      `--pid-file=${join(this.node.tmp.dir, `${tag}.pid`)}`, '--user=root', '--group=root',
      // Every query with its source address and port, on stderr (dnsmasqLog()).
      ...(logQueries ? ['--log-queries=extra', '--log-facility=-'] : []),
    ];
    const proc = spawn('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      onLog(d);
    });
    return { proc, stderr: () => stderr };
  }

  /** What dnsmasq wrote since it was (re)started (with logQueries: a line per query, its source included). */
  dnsmasqLog(): string {
    return this.log;
  }

  async stopDnsmasq(): Promise<void> {
    const p = this.dns;
    this.dns = null;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGKILL');
    await exited;
  }
}
