/**
 * `meshd demo` (`npm run demo`): a real end-to-end run on the embedded
 * default (standalone mode); `--nodes 2` runs the same rows across two nodes
 * instead (demo-nodes.ts). It starts `meshd agent --standalone examples/demo` as its own
 * process, creates three pods through meshd-cni exactly as a container
 * runtime does (a client, an HTTP API server, an intruder with other labels),
 * sends real requests, and prints what happened:
 *
 *   request                         expected  got    path
 *   client GET  /api/v1/users :8080  200      200    via Envoy
 *   client GET  /admin        :8080  403      403    via Envoy
 *   client GET  /metrics      :9090  200      200    kernel only
 *   intruder GET /api/v1/users :8080 dropped  dropped kernel (POLICY_DENY)
 *
 * then the same requests as flows, as `meshd observe` prints them from the
 * agent's Hubble API, and the URL of the service map and live flow table
 * (`meshd ui`, port 12000 when free; `npm run demo -- --keep` keeps it all
 * up until Ctrl-C).
 *
 * It exits 0 only if every row matches, and removes everything it created
 * (pods, namespaces, the agent, Envoy, pins, cgroup, CNI files, routing).
 * The rows, their expected results and how a path is read from the flows are
 * demo-rows.ts, shared with the two-node demo.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { FlowRecordJson } from '../api/flow.js';
import { apiRoutes } from '../api/index.js';
import { callApi } from '../cli/api-client.js';
import { ResultSchema } from '../cni/cni-spec.js';
import { CONFLIST_NAME } from '../cni/installer.js';
import { FlowUi } from '../observe/ui.js';
import { isMeshdError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { repoPath } from '../util/paths.js';
import { requestRow, rowTable, ROWS, startApiServer, waitForProxy, type DemoPod, type RowResult } from './demo-rows.js';

/** The fields of the installed conflist the demo reuses to call meshd-cni as a runtime would. */
const ConflistSchema = z.looseObject({ cniVersion: z.string(), name: z.string(), plugins: z.array(z.record(z.string(), z.unknown())).min(1) });
const readConflist = (path: string) => ConflistSchema.parse(JSON.parse(readFileSync(path, 'utf8')));

interface Pod extends DemoPod {
  containerId: string;
}

class Demo {
  readonly tag = `md${process.pid % 100000}`;
  readonly work = mkdtempSync(join(tmpdir(), 'meshd-demo-'));
  readonly pins = `/sys/fs/bpf/meshd-demo-${process.pid}`;
  readonly cgroup = `/sys/fs/cgroup/unified/meshd-demo-${process.pid}`;
  readonly stateDir = join(this.work, 'state');
  readonly confDir = join(this.work, 'net.d');
  readonly binDir = join(this.work, 'bin');
  readonly apiSocket = join(this.stateDir, 'meshd.sock');
  agent: ChildProcess | null = null;
  server: ChildProcess | null = null;
  readonly pods: Pod[] = [];
  readonly namespaces: string[] = [];

  config(): string {
    return [
      'nodeName: demo-node',
      `stateDir: ${this.stateDir}`,
      `bpf: {root: ${this.pins}, events: {sampleNewConnections: 1}}`,
      `cgroup: {hostRoot: ${this.cgroup}}`,
      `cni: {confDir: ${this.confDir}, binDir: ${this.binDir}, exclusive: false}`,
      'ipam: {podCIDR: 10.244.251.0/24}',
      'proxy: {portRange: "15000-15099"}',
      // The demo's pods are namespaces on this machine: its own network devices are left alone.
      'nodePort: {enabled: false}',
      'log: {format: json}',
      '',
    ].join('\n');
  }

  async startAgent(): Promise<void> {
    mkdirSync(this.pins, { recursive: true });
    mkdirSync(this.cgroup, { recursive: true });
    writeFileSync(join(this.work, 'config.yaml'), this.config());
    const log = join(this.work, 'agent.log');
    const out = await import('node:fs').then((fs) => fs.openSync(log, 'a'));
    this.agent = spawn(process.execPath, [repoPath('bin', 'meshd.mjs'), 'agent', '--config', join(this.work, 'config.yaml'), '--standalone', repoPath('examples', 'demo')], {
      stdio: ['ignore', out, out],
    });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (this.agent.exitCode !== null) throw new Error(`the agent exited (${this.agent.exitCode}); its log:\n${readFileSync(log, 'utf8').slice(-3000)}`);
      try {
        const s = await callApi(this.apiSocket, apiRoutes.status);
        if (s.agent.state === 'running') return;
      } catch {
        // not up yet
      }
      await sleep(200);
    }
    throw new Error('the agent did not come up within 60 s');
  }

  async addPod(name: string): Promise<Pod> {
    const ns = `${this.tag}-${name}`;
    await run('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const list = readConflist(join(this.confDir, CONFLIST_NAME));
    const plugin = list.plugins[0] ?? {};
    const containerId = `${this.tag}${name}`;
    const res = await this.cni('ADD', { ...plugin, cniVersion: list.cniVersion, name: list.name }, containerId, ns, name);
    const parsed = ResultSchema.parse(JSON.parse(res));
    const ip = parsed.ips?.[0]?.address.split('/')[0];
    if (!ip) throw new Error(`meshd-cni ADD for ${name} returned no address: ${res}`);
    const pod = { name, ns, ip, containerId };
    this.pods.push(pod);
    return pod;
  }

  cni(command: 'ADD' | 'DEL', conf: Record<string, unknown>, containerId: string, ns: string, name: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(join(this.binDir, 'meshd-cni'), [], {
        env: {
          PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
          CNI_COMMAND: command,
          CNI_CONTAINERID: containerId,
          CNI_NETNS: `/var/run/netns/${ns}`,
          CNI_IFNAME: 'eth0',
          CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name}`,
          CNI_PATH: `${this.binDir}:/usr/lib/cni`,
        },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`meshd-cni ${command} ${name} failed (${code}): ${out}`))));
      child.stdin.end(JSON.stringify(conf));
    });
  }

  waitForProxy(): Promise<void> {
    return waitForProxy('the agent', () => callApi(this.apiSocket, apiRoutes.status));
  }

  async flows(): Promise<FlowRecordJson[]> {
    const v = await callApi(this.apiSocket, apiRoutes.flows);
    return v.flows;
  }

  async cleanup(): Promise<void> {
    if (this.server && this.server.exitCode === null) {
      this.server.kill('SIGKILL');
      await once(this.server, 'exit').catch(() => undefined);
    }
    const list = existsSync(join(this.confDir, CONFLIST_NAME)) ? readConflist(join(this.confDir, CONFLIST_NAME)) : null;
    for (const p of this.pods.reverse()) {
      if (list) await this.cni('DEL', { ...(list.plugins[0] ?? {}), cniVersion: list.cniVersion, name: list.name }, p.containerId, p.ns, p.name).catch(() => undefined);
    }
    for (const ns of this.namespaces) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    if (this.agent && this.agent.exitCode === null) {
      this.agent.kill('SIGTERM');
      await Promise.race([once(this.agent, 'exit'), sleep(20_000).then(() => this.agent?.kill('SIGKILL'))]);
    }
    await run(process.execPath, [repoPath('bin', 'meshd.mjs'), 'proxy', 'routing', 'remove']).catch(() => undefined);
    rmSync(this.pins, { recursive: true, force: true });
    await run('rmdir', [this.cgroup]).catch(() => undefined);
    rmSync(this.work, { recursive: true, force: true });
  }
}

/** The one-node demo; resolves with the exit status (0: every row matched). */
export async function oneNodeDemo(o: { keep: boolean; out: (text: string) => void; err: (text: string) => void }): Promise<number> {
  const t0 = Date.now();
  let ui: FlowUi | undefined;
  const demo = new Demo();
  const stop = () => void demo.cleanup().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    o.out('meshd demo: starting the agent in standalone mode on examples/demo/\n');
    await demo.startAgent();
    const client = await demo.addPod('client');
    const api = await demo.addPod('api');
    const intruder = await demo.addPod('intruder');
    o.out(`pods (through meshd-cni): client ${client.ip}, api ${api.ip}, intruder ${intruder.ip}\n`);
    demo.server = await startApiServer(api.ns);
    await demo.waitForProxy();
    const results: RowResult[] = [];
    for (const r of ROWS) results.push(await requestRow(r.who === 'client' ? client : intruder, api, r, () => demo.flows()));
    const table = rowTable(results);
    o.out(`\n${table.text}\n`);
    // The same requests as flows, as `meshd observe` prints them from the agent's Hubble observer API.
    const hubbleServer = `unix://${join(demo.stateDir, 'hubble.sock')}`;
    o.out(await observeFlows(hubbleServer));
    // The service map and live flow table of the same run (`meshd ui`), on Hubble UI's port when it is free.
    ui = await startUi(hubbleServer);
    const map = await uiMap(ui.port);
    o.out(`service map and live flows (meshd ui --server ${hubbleServer}): http://localhost:${ui.port}/ — ${map.nodes} workloads, ${map.edges} edges\n`);
    o.out(`${table.ok ? 'every row matches' : 'SOME ROWS DO NOT MATCH'} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    if (o.keep) {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      o.out('--keep: the agent, the pods and the UI stay up; Ctrl-C removes everything\n');
      await untilSignal();
    } else o.out('(meshd demo --keep leaves it all running to look at in a browser; Ctrl-C then removes it)\n');
    return table.ok ? 0 : 1;
  } catch (e) {
    o.err(`meshd demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    await ui?.close();
    await demo.cleanup();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/** `meshd observe` of the last flows of the default namespace from one observer, with the command line it ran. */
export async function observeFlows(server: string): Promise<string> {
  const observe = ['observe', '--server', server, '--namespace', 'default', '--last', '60'];
  const flows = await run(process.execPath, [repoPath('bin', 'meshd.mjs'), ...observe], { timeoutMs: 20_000 });
  return `$ meshd ${observe.join(' ')}\n${flows.stdout}\n`;
}

/** Resolves on the first SIGINT or SIGTERM (--keep). */
export function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

/** `meshd ui` in this process, on port 12000 as Hubble UI, or any free port when 12000 is taken. */
async function startUi(server: string): Promise<FlowUi> {
  const at = async (port: number) => {
    const u = new FlowUi({ server, port, host: '127.0.0.1' });
    try {
      await u.start();
      return u;
    } catch (e) {
      await u.close();
      throw e;
    }
  };
  return at(12000).catch((e: unknown) => {
    if (isMeshdError(e, 'MESHD_OBSERVE_LISTEN')) return at(0);
    throw e;
  });
}

const MapSchema = z.object({ nodes: z.array(z.object({ id: z.string() })), edges: z.array(z.object({ from: z.string(), to: z.string() })) });

/** What the UI's service map shows once it has read the run's flows (up to 5 s). */
async function uiMap(port: number): Promise<{ nodes: number; edges: number }> {
  let last = { nodes: 0, edges: 0 };
  for (let i = 0; i < 25; i += 1) {
    const res = await fetch(`http://127.0.0.1:${port}/api/map`);
    const m = MapSchema.parse(await res.json());
    last = { nodes: m.nodes.length, edges: m.edges.length };
    if (last.edges > 0) return last;
    await sleep(200);
  }
  return last;
}

