/**
 * A whole meshd node for tests: an agent in this process on a manifest
 * directory, with its own state dir, bpffs pin dir, cgroup and CNI dirs, and
 * pods created through meshd-cni exactly as a runtime would. cleanup()
 * deletes the pods (CNI DEL), stops the agent and removes everything.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { BpfMap } from '../../native/index.js';
import { join } from 'node:path';
import { configSchema, DEFAULTS, type AgentConfig } from '../../src/agent/config.js';
import { readMetrics } from '../../src/datapath/endpoint/datapath-metrics.js';
import { runAgent, type RunAgentOptions, type RunningAgent } from '../../src/agent/run.js';
import { startProxy } from '../../src/agent/start-proxy.js';
import { CONFLIST_NAME } from '../../src/cni/installer.js';
import { claimPortWindow } from './port-window.js';
import { holdSharedProxyRouting } from './shared-proxy-routing.js';
import { createLogger } from '../../src/util/log.js';
import { tempCgroup, tempPinDir } from './bpffs.js';
import { CniRuntime, firstAddress, tempDir, testSubnet, type Conflist } from './cni-runtime.js';
import { Sandbox } from '../../src/devcluster/netns.js';

export interface TestPod {
  name: string;
  ns: string;
  ip: string;
}

export class AgentNode {
  readonly tmp = tempDir('agent');
  readonly pins = tempPinDir('agent');
  readonly cgroup = tempCgroup('agent');
  /** This test process's own proxy ports (proxy.portRange; the DNS proxy takes the top one). */
  readonly ports = claimPortWindow();
  /** The proxies' policy routing this agent installs, shared with every agent on the machine. */
  private readonly routing = holdSharedProxyRouting();
  readonly sb = new Sandbox('agt');
  readonly manifests = join(this.tmp.dir, 'manifests');
  readonly config: AgentConfig;
  running: RunningAgent | null = null;
  private readonly pods: Array<TestPod & { containerId: string }> = [];
  readonly logs: string[] = [];

  constructor(overrides: Partial<Record<string, unknown>> = {}, slot = 0) {
    this.config = configSchema.parse({
      ...DEFAULTS,
      nodeName: 'test-node',
      stateDir: join(this.tmp.dir, 'state'),
      'bpf.root': this.pins.path,
      'cgroup.hostRoot': this.cgroup.path,
      'cni.confDir': join(this.tmp.dir, 'net.d'),
      'cni.binDir': join(this.tmp.dir, 'bin'),
      'cni.exclusive': false,
      'ipam.podCIDR': testSubnet(slot).cidr,
      'envoy.enabled': false,
      'proxy.portRange': this.ports.range,
      'log.format': 'json',
      // The machine's own devices are not the test's: nodePort runs only on devices a test names.
      'nodePort.enabled': overrides.devices !== undefined,
      ...overrides,
    });
  }

  /** Writes a manifest file (relative to the manifest dir). */
  write(file: string, content: string): void {
    writeFileSync(join(this.manifests, file), content);
  }

  async start(extra: Partial<RunAgentOptions> = {}): Promise<RunningAgent> {
    const log = createLogger({ component: 'agent' }, { format: 'json', write: (l) => this.logs.push(l) });
    this.running = await runAgent({
      config: this.config,
      standaloneDir: this.manifests,
      log,
      rescanMs: 500,
      startProxy: this.config['envoy.enabled'] ? startProxy : null,
      ...extra,
    });
    return this.running;
  }

  async stopAgent(): Promise<void> {
    await this.running?.stop();
    this.running = null;
  }

  /**
   * The reasons of the drops the running agent saw from `src` to `dst:port`
   * since `since` (process.hrtime.bigint(), the clock of the datapath's
   * events), each reason once.
   */
  dropReasons(since: bigint, src: string, dst: string, port: number): string[] {
    const flows = this.running?.agent.recentFlows() ?? [];
    const hits = flows.filter((f) => f.type === 'drop' && f.monotonicNs >= since && f.src.ip === src && f.dst.ip === dst && f.dst.port === port);
    return [...new Set(hits.map((f) => f.dropReason ?? 'UNSPEC'))].sort();
  }

  /** The kernel's drop counter for a reason and direction, read from the pinned map (works with the agent down). */
  kernelDrops(reason: string, direction: 'ingress' | 'egress'): bigint {
    const m = BpfMap.fromPin(join(this.config['bpf.root'], 'meshd', 'meshd_metrics'));
    try {
      return readMetrics(m.fd).drops.find((d) => d.reason === reason && d.direction === direction)?.packets ?? 0n;
    } finally {
      m.close();
    }
  }

  /**
   * Every entry of the named pinned maps as sorted "key=value" hex rows, read
   * from the pins (not the agent's memory), so it works with the agent down:
   * two snapshots compare whether anything in the kernel changed. The
   * ipcache is two maps: whole addresses (pods, nodes, the host's own
   * addresses) in meshd_ipc_host, shorter prefixes in meshd_ipcache; name
   * meshd_ipc_host to compare pod identities.
   */
  pinnedRows(names: readonly string[] = ['meshd_policy', 'meshd_pol_exact', 'meshd_ipcache', 'meshd_endpoints']): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const name of names) {
      const m = BpfMap.fromPin(join(this.config['bpf.root'], 'meshd', name));
      try {
        out[name] = m.dump().map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort();
      } finally {
        m.close();
      }
    }
    return out;
  }

  /** Creates a pod: a namespace, then CNI ADD through the installed conflist (as containerd would). */
  async addPod(name: string, namespace = 'default'): Promise<TestPod> {
    const ns = await this.sb.netns(name.slice(0, 5));
    const list = JSON.parse(readFileSync(join(this.config['cni.confDir'], CONFLIST_NAME), 'utf8')) as Conflist;
    const rt = new CniRuntime([this.config['cni.binDir'], '/usr/lib/cni']);
    const containerId = `c${process.pid}${name}`;
    const att = { containerId, netns: `/var/run/netns/${ns}`, ifname: 'eth0', args: { K8S_POD_NAMESPACE: namespace, K8S_POD_NAME: name } };
    const res = await rt.addList(list, att);
    const pod = { name, ns, ip: firstAddress(res).split('/')[0] ?? '', containerId };
    this.pods.push(pod);
    this.sb.defer(async () => {
      if (this.running) await rt.delList(list, att).catch(() => undefined);
    });
    return pod;
  }

  /**
   * Removes everything, whatever state the test left: each step is bounded in
   * time and a failing step does not stop the next ones; failures are printed
   * (with the agent's last log lines) so a leak is visible in the test output.
   */
  async cleanup(): Promise<void> {
    const problems: string[] = [];
    const step = async (what: string, fn: () => Promise<unknown> | unknown, ms = 30_000) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(fn),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
          }),
        ]);
      } catch (e) {
        problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        clearTimeout(timer);
      }
    };
    // CNI DEL needs the agent to unregister cleanly.
    if (!this.running) await step('restart the agent for CNI DEL', () => this.start());
    await step('pods and namespaces', () => this.sb.cleanup(), 90_000);
    await step('stop the agent', () => this.stopAgent());
    // The agent (its Envoy and its DNS proxy) keeps the proxies' policy routing on stop (the datapath goes on enforcing); a test removes it,
    // both families (the DNS proxy installs the IPv6 rule at start wherever the kernel has IPv6).
    await step('policy routing', () => this.routing.release());
    await step('cgroup', () => this.cgroup.cleanup());
    await step('pins', () => this.pins.cleanup());
    await step('temp dir', () => this.tmp.remove());
    this.ports.release();
    if (problems.length > 0) {
      process.stderr.write(`agent-node cleanup problems:\n  ${problems.join('\n  ')}\nlast agent log lines:\n  ${this.logs.slice(-15).join('\n  ')}\n`);
    }
  }
}
