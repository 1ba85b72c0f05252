/**
 * `meshd demo --nodes 2 [--routing-mode native|tunnel]`: the rows of the
 * one-node demo (demo-rows.ts) with the client and the intruder on one node
 * and the api on another, so every request crosses between nodes the way
 * the routing mode carries it.
 *
 * The cluster is src/devcluster/: a real kube-apiserver and etcd from the
 * setup cache, two nodes as network namespaces on an underlay bridge, each
 * with its agent in Kubernetes mode and its Envoy, and a kubelet-like pod
 * creator calling each node's meshd-cni. The nodes learn each other's pods,
 * pod CIDRs and identities only through the API server, as on real nodes.
 *
 *   routing mode: tunnel
 *   node 1 demo-node-1  underlay 192.168.77.11  pods 10.201.1.0/24: client 10.201.1.x, intruder 10.201.1.y
 *   node 2 demo-node-2  underlay 192.168.77.12  pods 10.201.2.0/24: api 10.201.2.z
 *   request … expected  got  path  detail   (as the one-node demo)
 *
 * then each node's flows as `meshd observe` prints them. It exits 0 only if
 * every row matches, and removes everything it made (pods, agents, Envoys,
 * namespaces, pins, cgroups, the cluster, its temp dirs) at the end, on a
 * failure, and on SIGINT/SIGTERM (then with status 130).
 */
import { existsSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FlowRecordJson } from '../api/flow.js';
import { eventually } from '../devcluster/eventually.js';
import { kubeBinDir } from '../devcluster/kube-cluster.js';
import { nodeRoutesFor, podExec, startNetnsNodes, type After, type NetnsNode } from '../devcluster/netns-nodes.js';
import { observeFlows, untilSignal } from './demo.js';
import { DEMO_DIR, demoPodLabels, requestRow, rowTable, ROWS, startApiServer, waitForProxy, type DemoPod, type RowResult } from './demo-rows.js';

export type RoutingMode = 'native' | 'tunnel';

export interface NodesDemoOptions {
  routingMode: RoutingMode;
  keep: boolean;
  out: (text: string) => void;
  err: (text: string) => void;
}

/** Cleanup steps, run once in the order registered (as node:test runs `t.after` hooks). */
class Cleanup implements After {
  private readonly fns: Array<() => Promise<void> | void> = [];
  private running: Promise<void> | undefined;

  constructor(private readonly err: (text: string) => void) {}

  /** Once the cleanup has begun (Ctrl-C half-way), a step registered late runs at once: nothing made after it is left. */
  after(fn: () => Promise<void> | void): void {
    if (this.running) void Promise.resolve().then(fn).catch((e: unknown) => this.err(`cleanup: ${e instanceof Error ? e.message : String(e)}\n`));
    else this.fns.push(fn);
  }

  get started(): boolean {
    return this.running !== undefined;
  }

  /** Throws once the cleanup has begun, so that the demo makes nothing more. */
  check(): void {
    if (this.started) throw new Error('interrupted');
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (const fn of this.fns.splice(0)) {
        await Promise.resolve()
          .then(fn)
          .catch((e: unknown) => this.err(`cleanup: ${e instanceof Error ? e.message : String(e)}\n`));
      }
    })();
    return this.running;
  }
}

/** The Kubernetes binaries the demo's API server needs, and where `npm run setup` puts them. */
export function missingKubeBinaries(): { dir: string; missing: string[] } {
  const dir = kubeBinDir();
  return { dir, missing: ['etcd', 'kube-apiserver', 'kubectl'].filter((b) => !existsSync(join(dir, b))) };
}

/** The two-node demo; resolves with the exit status (0: every row matched). */
export async function nodesDemo(o: NodesDemoOptions): Promise<number> {
  const bins = missingKubeBinaries();
  if (bins.missing.length > 0) {
    o.err(
      `meshd demo --nodes 2 runs a real Kubernetes API server, but ${bins.missing.join(', ')} ${bins.missing.length > 1 ? 'are' : 'is'} not in ${bins.dir}.\n` +
        'Run the setup first (it builds them there): npm run setup\n',
    );
    return 1;
  }
  const t0 = Date.now();
  const cleanup = new Cleanup(o.err);
  const stop = () => void cleanup.run().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    o.out(`meshd demo --nodes 2: routing mode ${o.routingMode}; starting a Kubernetes API server and two nodes (network namespaces on an underlay bridge, an agent and an Envoy each)\n`);
    const w = await startNetnsNodes(cleanup, ['demo-node-1', 'demo-node-2'], { routingMode: o.routingMode, envoy: true });
    const [n1, n2] = w.nodes;
    if (!n1 || !n2) throw new Error('the nodes did not start');
    await nodeRoutesFor(n1, [n2], o.routingMode);
    await nodeRoutesFor(n2, [n1], o.routingMode);
    await w.kube.apply(readFileSync(join(DEMO_DIR, 'api-policy.yaml'), 'utf8'));

    const labels = demoPodLabels();
    const runPod = async (node: NetnsNode, name: string): Promise<DemoPod> => {
      cleanup.check();
      const p = await node.kubelet.runPod(name, { labels: labels.get(name) ?? {} });
      return { name, ns: p.ns, ip: p.ip };
    };
    const client = await runPod(n1, 'client');
    const intruder = await runPod(n1, 'intruder');
    const api = await runPod(n2, 'api');
    o.out(`routing mode: ${o.routingMode}\n`);
    o.out(`node 1 ${n1.name}  underlay ${n1.ip}  pods ${n1.podCidr}: client ${client.ip}, intruder ${intruder.ip}\n`);
    o.out(`node 2 ${n2.name}  underlay ${n2.ip}  pods ${n2.podCidr}: api ${api.ip}\n`);

    cleanup.check();
    const server = await startApiServer(api.ns);
    const stopServer = () => void server.kill('SIGKILL');
    w.defer(stopServer);
    // A Ctrl-C while it started: the deferred steps may have run already.
    if (cleanup.started) stopServer();
    await waitForProxy(n2.name, () => n2.status());
    // Node 2 admits the client on 9090 only once it knows the client's identity (from the API server, or the tunnel's VNI).
    const metrics = ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `http://${api.ip}:9090/metrics`];
    await eventually(`the client on ${n1.name} reaching the api on ${n2.name}`, async () => (await podExec(client, 'curl', metrics, 10_000)).stdout.trim() === '200', 60_000);

    const flows = async (): Promise<FlowRecordJson[]> => [...(await n1.flows()), ...(await n2.flows())];
    const results: RowResult[] = [];
    for (const r of ROWS) results.push(await requestRow(r.who === 'client' ? client : intruder, api, r, flows));
    const table = rowTable(results);
    o.out(`\n${table.text}\n`);
    // The same requests as flows, as `meshd observe` prints them from each node's Hubble observer API.
    for (const n of [n1, n2]) o.out(`${n.name}:\n${await observeFlows(`unix://${join(n.stateDir, 'hubble.sock')}`)}`);
    o.out(`${table.ok ? 'every row matches' : 'SOME ROWS DO NOT MATCH'} (routing mode ${o.routingMode}, ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    if (o.keep) {
      o.out('--keep: the cluster, the nodes and the pods stay up; Ctrl-C removes everything\n');
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await untilSignal();
    }
    return table.ok ? 0 : 1;
  } catch (e) {
    o.err(`meshd demo --nodes 2 failed: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    await cleanup.run();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
