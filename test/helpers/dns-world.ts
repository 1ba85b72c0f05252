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
import { removePolicyRouting6 } from '../../src/dns/policy-routing6.js';
import { removePolicyRouting } from '../../src/proxy/policy-routing.js';
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

export class DnsWorld {
  readonly k = 100 + (process.pid % 150);
  readonly inet = (n: number) => `198.18.${this.k}.${n}`;
  pods: Record<'app' | 'web' | 'other' | 'coredns', TestPod> = {} as Record<'app' | 'web' | 'other' | 'coredns', TestPod>;
  private clients = new Map<string, PodClient>();
  private dns: ChildProcess | null = null;
  private log = '';

  private constructor(readonly node: AgentNode) {}

  /** `t.after` receives the cleanup (a test context, or the benchmark's own list). */
  static async create(t: { after(fn: () => Promise<void>): void }, overrides: Record<string, unknown> = {}, start: Partial<RunAgentOptions> = {}): Promise<DnsWorld> {
    // proxyResponseMaxDelay: Cilium's 100 ms default is a latency bound; on a loaded test machine a longer one keeps
    // "the answer waited for the kernel" (delayedPastMax = 0) a property of the code, not of the machine's load.
    const node = new AgentNode({ 'proxy.portRange': '16400-16499', 'bpf.events.sampleNewConnections': 1, 'dnsProxy.proxyResponseMaxDelay': '3s', ...overrides }, 3);
    const w = new DnsWorld(node);
    t.after(async () => {
      await w.stopDnsmasq();
      await node.cleanup();
      await removePolicyRouting().catch(() => undefined);
      await removePolicyRouting6().catch(() => undefined);
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
   * CNAME to it), other.example.org, short.example.com, short2.example.com, flush.example.com and n0..n199.example.com,
   * every record with the given TTL. Waits until it answers (asked from `other`, which is not redirected).
   */
  async dnsmasq(o: { ttl: number; logQueries?: boolean }): Promise<void> {
    await this.stopDnsmasq();
    const hosts = join(this.node.tmp.dir, 'hosts');
    const lines = [
      `${this.inet(1)} api.github.com`,
      `${this.inet(2)} edge.example.net`,
      `${this.inet(3)} other.example.org`,
      `${this.inet(4)} short.example.com`,
      `${this.inet(5)} short2.example.com`,
      `${this.inet(6)} flush.example.com`,
      ...Array.from({ length: 200 }, (_, i) => `${this.inet(20 + i)} n${i}.example.com`),
    ];
    writeFileSync(hosts, `${lines.join('\n')}\n`);
    const args = [
      'netns', 'exec', this.pods.coredns.ns, 'dnsmasq', '-k', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces',
      `--listen-address=${this.resolver}`, `--local-ttl=${o.ttl}`, `--addn-hosts=${hosts}`, '--cname=www.example.com,edge.example.net',
      `--pid-file=${join(this.node.tmp.dir, 'dnsmasq.pid')}`, '--user=root', '--group=root',
      // Every query with its source address and port, on stderr (dnsmasqLog()).
      ...(o.logQueries ? ['--log-queries=extra', '--log-facility=-'] : []),
    ];
    const proc = spawn('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    this.log = '';
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      this.log += d;
    });
    this.dns = proc;
    const other = await this.client('other');
    for (let i = 0; i < 50; i++) {
      const r = await other.call({ op: 'query', server: this.resolver, name: 'api.github.com', timeoutMs: 300 });
      if (r.rcode === 'NOERROR') return;
      await sleep(100);
    }
    throw new Error(`dnsmasq did not come up: ${stderr}`);
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
