/**
 * Several meshd nodes on one machine where each node is a network
 * namespace, as on separate machines: an underlay (a bridge in its own
 * namespace) with every node's `eth0` on it; per node an agent as a child
 * process entered into the node's namespace with `nsenter --net` (not
 * `ip netns exec`, which remounts /sys and would hide /sys/fs/bpf and the
 * cgroup mount), with its own config file, pin directory, state directory,
 * cgroup and pod CIDR; and a TestKubelet whose CNI calls run in the node's
 * namespace too (the conflist's plugins are reached through wrappers that
 * enter it), so pod veths end in the node, not on this host.
 *
 * The API server (kube-cluster.ts) listens on this host's loopback; each
 * node namespace reaches it at the same loopback address and port through a
 * forwarder in that namespace (netns-bridge-peer.ts) and a unix socket,
 * which the filesystem shares across namespaces. No traffic leaves the
 * namespaces the test made.
 *
 *   const w = await startNetnsNodes(t, ['n1', 'n2'], { routingMode: 'tunnel' });
 *   const [a, b] = w.nodes;
 *   const web = await b.kubelet.runPod('web', { labels: { app: 'web' } });
 *   await a.restartAgent();
 *   const c = await w.addNode('n3');
 *
 * Cleanup is registered with `t.after` before anything starts and undoes
 * whatever was made, even after a failure half-way: pods (CNI DEL while the
 * agents run), agents (SIGTERM, then SIGKILL), forwarders, namespaces, pins,
 * cgroups, directories, then the cluster.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { z } from 'zod';
import { apiRoutes } from '../api/index.js';
import { callApi } from '../cli/api-client.js';
import { CONFLIST_NAME } from '../cni/installer.js';
import { run, type RunResult } from '../util/exec.js';
import { repoPath } from '../util/paths.js';
import { eventually } from './eventually.js';
import { installMeshd, startKubeCluster, type KubeCluster } from './kube-cluster.js';
import { TestKubelet } from './kubelet.js';
import { Sandbox } from './netns.js';
import { tempCgroup, tempDir, tempPinDir } from './temp.js';

const MESHD_BIN = repoPath('bin', 'meshd.mjs');
const BRIDGE_JS = repoPath('dist', 'src', 'devcluster', 'netns-bridge-peer.js');
/** The underlay: one /24 inside the namespaces the test made; node i is .(10 + i). */
const UNDERLAY_PREFIX = '192.168.77.';

export type StatusView = z.output<(typeof apiRoutes.status)['response']>;
export type FlowView = z.output<(typeof apiRoutes.flows)['response']>['flows'][number];

export interface After {
  after(fn: () => Promise<void> | void): void;
}

export interface NetnsNodesOptions {
  routingMode: 'native' | 'tunnel';
  /** Native mode: routes to the other nodes' pod CIDRs (default true). */
  autoDirectNodeRoutes?: boolean;
  /** Run each node's Envoy (default false: the L3/L4 tests need none). */
  envoy?: boolean;
  /** The underlay's MTU (default 1500). */
  underlayMtu?: number;
  /** More agent configuration keys, for every node. */
  config?: Record<string, unknown>;
}

/** Runs a step bounded in time; a failure is collected, never thrown (a cleanup must finish). */
async function step(problems: string[], what: string, fn: () => Promise<unknown> | unknown, ms = 30_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([Promise.resolve().then(fn), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)))]);
  } catch (e) {
    problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** A child process that printed its first line; `exited` resolves with its exit code. */
interface Child {
  child: ChildProcess;
  exited: Promise<number | null>;
}

async function stopChild(c: Child | null, graceMs = 10_000): Promise<void> {
  if (!c || c.child.exitCode !== null || c.child.signalCode !== null) return;
  c.child.kill('SIGTERM');
  const t = setTimeout(() => c.child.kill('SIGKILL'), graceMs);
  await c.exited;
  clearTimeout(t);
}

export class NetnsNode {
  readonly tmp = tempDir('nn');
  readonly pins = tempPinDir('nn');
  readonly cgroup = tempCgroup('nn');
  readonly kubelet: TestKubelet;
  readonly logs: string[] = [];
  private agent: Child | null = null;
  bridge: Child | null = null;
  /** The kubeconfig the agent starts with; unset: the world's (the API server at the node's loopback). */
  kubeconfig: string | undefined;

  constructor(
    readonly name: string,
    /** The node's network namespace. */
    readonly ns: string,
    /** Its address on the underlay. */
    readonly ip: string,
    readonly podCidr: string,
    private readonly world: { kube: KubeCluster; kubeconfigPath: string; config: Record<string, unknown> },
  ) {
    mkdirSync(this.wrapDir, { recursive: true });
    this.kubelet = new TestKubelet({ kube: world.kube, nodeName: name, cniConfDir: this.confDir, cniBinDir: this.wrapDir });
  }

  get stateDir(): string {
    return join(this.tmp.dir, 'state');
  }

  get confDir(): string {
    return join(this.tmp.dir, 'net.d');
  }

  get binDir(): string {
    return join(this.tmp.dir, 'bin');
  }

  /** CNI plugins as the kubelet runs them: wrappers entering the node's namespace. */
  get wrapDir(): string {
    return join(this.tmp.dir, 'kubelet-bin');
  }

  get pinDir(): string {
    return join(this.pins.path, 'meshd');
  }

  get configFile(): string {
    return join(this.tmp.dir, 'config.json');
  }

  get running(): boolean {
    return this.agent !== null && this.agent.child.exitCode === null && this.agent.child.signalCode === null;
  }

  /** Writes the node's agent configuration (the world's keys, then `extra`). */
  writeConfig(extra: Record<string, unknown> = {}): void {
    const cfg = {
      nodeName: this.name,
      stateDir: this.stateDir,
      'bpf.root': this.pins.path,
      'cgroup.hostRoot': this.cgroup.path,
      'cni.confDir': this.confDir,
      'cni.binDir': this.binDir,
      'cni.exclusive': false,
      'ipam.podCIDR': this.podCidr,
      'log.format': 'json',
      'nodeHeartbeat.interval': '2s',
      ...this.world.config,
      ...extra,
    };
    writeFileSync(this.configFile, JSON.stringify(cfg, null, 2));
  }

  /**
   * A launcher that runs its arguments as on the node: in the node's network
   * namespace and a private mount namespace whose /sys is a sysfs of that
   * network namespace (the agent and meshd-cni look interfaces up under
   * /sys/class/net), with this host's bpffs and cgroup mounts moved back
   * under it (a fresh bpffs would be another instance, without the pins).
   */
  get launcher(): string {
    return join(this.tmp.dir, 'on-node.sh');
  }

  private writeLauncher(): void {
    const mnt = join(this.tmp.dir, 'mnt');
    const script = [
      '#!/bin/sh',
      'set -e',
      `mkdir -p ${mnt}/bpf ${mnt}/cg`,
      `mount --rbind /sys/fs/bpf ${mnt}/bpf`,
      `mount --rbind /sys/fs/cgroup ${mnt}/cg`,
      'mount -t sysfs sysfs /sys',
      `mount --move ${mnt}/bpf /sys/fs/bpf`,
      `mount --move ${mnt}/cg /sys/fs/cgroup`,
      'exec "$@"',
      '',
    ].join('\n');
    writeFileSync(this.launcher, script);
    chmodSync(this.launcher, 0o755);
  }

  /** argv that runs `cmd args` on the node (see launcher). */
  onNode(cmd: string, args: readonly string[]): [string, string[]] {
    return ['nsenter', [`--net=/run/netns/${this.ns}`, 'unshare', '--mount', '--propagation', 'private', this.launcher, cmd, ...args]];
  }

  /** Runs a command in the node's namespace (nsenter: /sys and the bpffs stay visible). */
  exec(cmd: string, args: readonly string[], timeoutMs?: number): Promise<RunResult> {
    return run('nsenter', [`--net=/run/netns/${this.ns}`, cmd, ...args], timeoutMs === undefined ? {} : { timeoutMs });
  }

  /** Starts the agent process and waits until its API says it runs and its CNI configuration is installed. */
  async startAgent(): Promise<void> {
    assert.ok(!this.running, `the agent of ${this.name} runs already`);
    if (!existsSync(this.configFile)) this.writeConfig();
    if (!existsSync(this.launcher)) this.writeLauncher();
    const child = spawn(...this.onNode(process.execPath, [MESHD_BIN, 'agent', '--config', this.configFile, '--kubeconfig', this.kubeconfig ?? this.world.kubeconfigPath]), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_NAME: this.name },
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    this.agent = { child, exited };
    for (const s of [child.stdout, child.stderr]) {
      createInterface({ input: s }).on('line', (l) => {
        this.logs.push(l);
        if (this.logs.length > 2000) this.logs.splice(0, 1000);
      });
    }
    // Up to 240 s: on a loaded machine (load 45 on two cores) an agent with its Envoy took over two minutes to start.
    await eventually(`the agent of ${this.name} running`, async () => {
      if (!this.running) throw new Error(`exited: ${this.logs.slice(-10).join('\n')}`);
      const st = await this.status();
      return st.agent.state === 'running' && existsSync(join(this.confDir, CONFLIST_NAME));
    }, 240_000).catch((e: unknown) => {
      throw new Error(`${e instanceof Error ? e.message : String(e)}; its last log lines:\n  ${this.logs.slice(-15).join('\n  ')}`, { cause: e });
    });
    this.wrapPlugins();
  }

  /** SIGTERM (SIGKILL after 10 s) and wait for the exit. The datapath stays pinned and attached. */
  async stopAgent(): Promise<void> {
    await stopChild(this.agent);
    this.agent = null;
  }

  async restartAgent(): Promise<void> {
    await this.stopAgent();
    await this.startAgent();
  }

  status(): Promise<StatusView> {
    return callApi(join(this.stateDir, 'meshd.sock'), apiRoutes.status);
  }

  /** The agent's recent flow events (drops, sampled verdicts). */
  async flows(): Promise<FlowView[]> {
    return (await callApi(join(this.stateDir, 'meshd.sock'), apiRoutes.flows)).flows;
  }

  /** The security identity of a pod of this node, from its endpoint list. */
  async identityOf(ip: string): Promise<number | undefined> {
    const eps = (await callApi(join(this.stateDir, 'meshd.sock'), apiRoutes.endpoints)).endpoints;
    return eps.find((e) => e.ips.includes(ip))?.identity;
  }

  /** A wrapper per plugin of the installed conflist, running it inside the node's namespace. */
  private wrapPlugins(): void {
    const list: unknown = JSON.parse(readFileSync(join(this.confDir, CONFLIST_NAME), 'utf8'));
    const plugins = typeof list === 'object' && list !== null && 'plugins' in list && Array.isArray(list.plugins) ? list.plugins : [];
    for (const p of plugins) {
      const type: unknown = typeof p === 'object' && p !== null && 'type' in p ? p.type : undefined;
      if (typeof type !== 'string' || !/^[\w.-]+$/.test(type)) continue;
      const real = [join(this.binDir, type), join('/usr/lib/cni', type)].find((f) => existsSync(f));
      if (!real) continue;
      const f = join(this.wrapDir, type);
      const [cmd, args] = this.onNode(real, []);
      writeFileSync(f, `#!/bin/sh\nexec ${cmd} ${args.join(' ')} "$@"\n`);
      chmodSync(f, 0o755);
    }
  }

  /** The meshd_tunnel entries of the node's pinned map: pod CIDR → node address. */
  async tunnelEntries(): Promise<Array<{ cidr: string; endpoint: string }>> {
    const { TunnelMap } = await import('../datapath/routing/tunnel-map.js');
    const m = TunnelMap.open(this.pinDir);
    try {
      return m.entries().map(({ cidr, endpoint }) => ({ cidr, endpoint }));
    } finally {
      m.close();
    }
  }

  /**
   * Registers the node's Node object as a kubelet does: its labels, and its underlay address as the
   * InternalIP in status (what the agents make the host / remote-node ipcache entries of). Called again,
   * it replaces the labels and addresses (`ips` instead of the underlay address).
   */
  async register(labels: Record<string, string> = {}, ips: readonly string[] = [this.ip]): Promise<void> {
    const k = this.world.kube;
    await k.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: this.name, labels: { 'kubernetes.io/hostname': this.name, ...labels } } });
    const status = { status: { addresses: [...ips.map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: this.name }] } };
    const r = await k.kubectl(['patch', 'node', this.name, '--subresource=status', '--type=merge', '-p', JSON.stringify(status)]);
    assert.equal(r.code, 0, r.stderr);
  }

  /** Deletes the node's Node object (as when a node leaves the cluster). */
  async deregister(): Promise<void> {
    const r = await this.world.kube.kubectl(['delete', 'node', this.name, '--ignore-not-found']);
    assert.equal(r.code, 0, r.stderr);
  }

  /** The node's IPv4 routes with meshd's protocol, as `ip route` prints them. */
  async meshdRoutes(): Promise<string[]> {
    const out = (await this.exec('ip', ['-4', 'route', 'show', 'proto', '173'])).stdout;
    return out.split('\n').map((l) => l.trim()).filter(Boolean);
  }

  async cleanup(problems: string[]): Promise<void> {
    await step(problems, `${this.name}: stop the agent`, () => this.stopAgent());
    await step(problems, `${this.name}: stop the API forwarder`, () => stopChild(this.bridge, 2_000));
    await step(problems, `${this.name}: cgroup`, () => this.cgroup.cleanup());
    await step(problems, `${this.name}: pins`, () => this.pins.cleanup());
    await step(problems, `${this.name}: temp dir`, () => this.tmp.remove());
  }
}

export interface NetnsNodes {
  kube: KubeCluster;
  nodes: NetnsNode[];
  /** The underlay's namespace (its bridge is `br0`). */
  underlay: string;
  /** Starts one more node (namespace, agent, kubelet) and returns it. */
  addNode(name: string): Promise<NetnsNode>;
  /** Registers something to undo first in the cleanup. */
  defer(fn: () => Promise<void> | void): void;
  /**
   * Makes the API server reachable at `node`'s underlay address and `port` (a forwarder in the node, as if
   * the API server ran there), stopped in the cleanup. The `kubernetes` EndpointSlice is the caller's.
   */
  exposeApiServer(node: Pick<NetnsNode, 'ns' | 'ip'>, port: number): Promise<void>;
  /** The agents' kubeconfig (the meshd service account's, server at the nodes' loopback). */
  kubeconfigPath: string;
}

export async function startNetnsNodes(t: After, names: readonly string[], o: NetnsNodesOptions): Promise<NetnsNodes> {
  const sb = new Sandbox('nn');
  const made: { kube?: KubeCluster; nodes: NetnsNode[]; server?: Server; deferred: Array<() => Promise<void> | void> } = { nodes: [], deferred: [] };
  const tmp = tempDir('nnw');
  const open = new Set<Socket>();
  // Before the cluster's own close (hooks run in the order registered).
  t.after(async () => {
    const problems: string[] = [];
    for (const fn of made.deferred.reverse()) await step(problems, 'deferred', fn);
    for (const n of made.nodes) await step(problems, `${n.name}: pods`, () => n.kubelet.cleanup(), 120_000);
    for (const n of made.nodes) await n.cleanup(problems);
    await step(problems, 'namespaces', () => sb.cleanup(), 60_000);
    await step(problems, 'API forwarding socket', () => new Promise<void>((r) => {
      for (const x of open) x.destroy();
      if (made.server) made.server.close(() => r());
      else r();
    }));
    tmp.remove();
    if (problems.length > 0) {
      process.stderr.write(`netns-nodes cleanup problems:\n  ${problems.join('\n  ')}\n`);
      for (const n of made.nodes) process.stderr.write(`last log lines of ${n.name}:\n  ${n.logs.slice(-15).join('\n  ')}\n`);
    }
  });
  const kube = (made.kube = await startKubeCluster({ t }));
  await installMeshd(kube);
  await kube.ensureDefaultServiceAccount('default');
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  const apiPort = Number(new URL(kube.server).port);

  // The API server for the node namespaces: a unix socket here, a forwarder on 127.0.0.1:<the same port> in each.
  const sock = join(tmp.dir, 'api.sock');
  const server = (made.server = createServer((c) => {
    const up = connect(apiPort, '127.0.0.1');
    for (const x of [c, up]) {
      open.add(x);
      x.on('close', () => open.delete(x));
    }
    c.pipe(up).pipe(c);
    const end = () => (c.destroy(), up.destroy());
    c.on('error', end);
    up.on('error', end);
  }));
  await new Promise<void>((r) => server.listen(sock, r));

  const underlay = await sb.netns('ul');
  const mtu = String(o.underlayMtu ?? 1500);
  await run('ip', ['-n', underlay, 'link', 'add', 'br0', 'mtu', mtu, 'type', 'bridge']);
  await run('ip', ['-n', underlay, 'link', 'set', 'br0', 'up']);

  const config: Record<string, unknown> = {
    routingMode: o.routingMode,
    autoDirectNodeRoutes: o.autoDirectNodeRoutes ?? o.routingMode === 'native',
    'envoy.enabled': o.envoy ?? false,
    ...o.config,
  };
  const world = { kube, kubeconfigPath: sa.kubeconfigPath, config };
  let index = 0;

  const addNode = async (name: string): Promise<NetnsNode> => {
    index += 1;
    const i = index;
    const ns = await sb.netns(`n${i}`);
    const node = new NetnsNode(name, ns, `${UNDERLAY_PREFIX}${10 + i}`, `10.201.${i}.0/24`, world);
    made.nodes.push(node);
    // eth0 on the underlay's bridge
    const [a, b] = [sb.name(`a${i}`), sb.name(`b${i}`)];
    await run('ip', ['link', 'add', a, 'mtu', mtu, 'type', 'veth', 'peer', 'name', b, 'mtu', mtu]);
    await run('ip', ['link', 'set', a, 'netns', ns]);
    await run('ip', ['link', 'set', b, 'netns', underlay]);
    await run('ip', ['-n', ns, 'link', 'set', a, 'name', 'eth0']);
    await run('ip', ['-n', ns, 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', underlay, 'link', 'set', b, 'master', 'br0', 'up']);
    // A Kubernetes node forwards (kubelet requires it).
    await node.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    // The API server at 127.0.0.1:<port> inside the node
    node.bridge = await startForwarder(ns, apiPort, '127.0.0.1');
    await node.startAgent();
    return node;
  };

  const startForwarder = async (ns: string, port: number, host: string): Promise<Child> => {
    const bridge = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, BRIDGE_JS, String(port), sock, host], { stdio: ['ignore', 'pipe', 'inherit'] });
    const c: Child = { child: bridge, exited: new Promise((r) => bridge.once('exit', (code) => r(code))) };
    const first = await Promise.race([createInterface({ input: bridge.stdout })[Symbol.asyncIterator]().next(), c.exited.then(() => ({ value: 'exited' }))]);
    assert.equal(first.value, 'listening', `API forwarder in ${ns} on ${host}:${port}`);
    return c;
  };

  const exposeApiServer = async (node: Pick<NetnsNode, 'ns' | 'ip'>, port: number): Promise<void> => {
    const c = await startForwarder(node.ns, port, node.ip);
    made.deferred.push(() => stopChild(c, 2_000));
  };

  for (const n of names) await addNode(n);
  return { kube, nodes: made.nodes, underlay, addNode, defer: (fn) => void made.deferred.push(fn), exposeApiServer, kubeconfigPath: sa.kubeconfigPath };
}

/** Runs a command inside a pod's namespace (pods need no bpffs: `ip netns exec` is fine). */
export function podExec(pod: { ns: string }, cmd: string, args: readonly string[], timeoutMs?: number): Promise<RunResult> {
  return run('ip', ['netns', 'exec', pod.ns, cmd, ...args], timeoutMs === undefined ? {} : { timeoutMs });
}

/**
 * Waits until `node` routes exactly to `others`' pod CIDRs: in tunnel mode a
 * meshd_tunnel entry to each one's underlay address and a route through the
 * tunnel device; in native mode a route via its address.
 */
export async function nodeRoutesFor(node: NetnsNode, others: readonly NetnsNode[], mode: 'native' | 'tunnel'): Promise<void> {
  const wantTunnel = mode === 'tunnel' ? others.map((o) => `${o.podCidr}>${o.ip}`).sort() : [];
  const wantRoutes = others.map((o) => (mode === 'tunnel' ? `${o.podCidr} dev meshd_tunnel` : `${o.podCidr} via ${o.ip}`)).sort();
  let seen = '';
  await eventually(`routes of ${node.name} to ${others.map((o) => o.name).join(', ')} (seen ${seen})`, async () => {
    const tunnel = (await node.tunnelEntries()).map((e) => `${e.cidr}>${e.endpoint}`).sort();
    const routes = (await node.meshdRoutes()).map((r) => r.replace(/ (proto|scope|metric) \S+/g, '').replace(/ dev eth0$/, '')).sort();
    seen = JSON.stringify({ tunnel, routes });
    return JSON.stringify(tunnel) === JSON.stringify(wantTunnel) && JSON.stringify(routes) === JSON.stringify(wantRoutes);
  }, 60_000);
}
