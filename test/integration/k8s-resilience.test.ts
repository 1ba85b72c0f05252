/**
 * The agent when the API server goes away, against a real kube-apiserver and
 * etcd (src/devcluster/kube-cluster.ts), pods run by the test kubelet
 * (src/devcluster/kubelet.ts) through meshd-cni:
 *
 * - API server stopped for 30 s under live traffic: an established
 *   connection keeps working, a denied peer stays denied, the kernel's maps
 *   do not change, `meshd status` says disconnected and since when; a policy
 *   change made right after the API server returns is enforced.
 * - Agent restarted while the API server is down: start() waits for the
 *   first full list of the cluster (so a restart never enforces a half-read
 *   cluster) while the pinned datapath goes on enforcing the last state and
 *   nothing in the kernel changes; once the API server is back the agent
 *   finishes starting, reconciles, and enforces a new change.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BpfMap } from '../../native/index.js';
import type { RunAgentOptions, RunningAgent } from '../../src/agent/run.js';
import { verdictFromCode } from '../../src/datapath/endpoint/policy-map-state.js';
import { EndpointValue, PolicyKey, PolicyValue } from '../../src/datapath/maps.js';
import type { KubeSourceOptions } from '../../src/k8s/kube-source.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startKubeCluster, type KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { TestKubelet, type KubeletPod } from '../../src/devcluster/kubelet.js';
import { echoServer, longLivedConnection, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { eventually } from '../helpers/kube-nodes.js';

/** The issue's number: the API server is gone this long under live traffic. */
const OUTAGE_MS = 30_000;
const FAST: Omit<KubeSourceOptions, 'client'> = { batchDelayMs: 10, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Server ingress on 8080 from the listed apps only. */
const serverPolicy = (fromApps: string[]) => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'server-l4', namespace: 'default' },
  spec: {
    endpointSelector: { matchLabels: { app: 'server' } },
    ingress: [{ fromEndpoints: fromApps.map((app) => ({ matchLabels: { app } })), toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }],
  },
});

async function applyCrds(kube: KubeCluster): Promise<void> {
  const dir = repoPath('install', 'crds');
  for (const f of readdirSync(dir).sort()) await kube.apply(readFileSync(join(dir, f), 'utf8'));
  const r = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/ciliumnetworkpolicies.cilium.io', 'crd/ciliumclusterwidenetworkpolicies.cilium.io']);
  assert.equal(r.code, 0, r.stderr);
}

/**
 * The kernel's endpoint and policy rows, read from the pins, with endpoint ids
 * and identities replaced by the pods they belong to: what the datapath
 * enforces, independent of how the numbers were allocated.
 */
function kernelView(node: AgentNode, pods: readonly KubeletPod[]): { rows: string[]; identities: Record<string, number> } {
  const podOfIfindex = new Map(pods.map((p) => [Number(readFileSync(`/sys/class/net/${p.hostIf}/ifindex`, 'utf8')), p.name]));
  const dump = (name: string) => {
    const m = BpfMap.fromPin(join(node.config['bpf.root'], 'meshd', name));
    try {
      return m.dump();
    } finally {
      m.close();
    }
  };
  const epName = new Map<number, string>();
  const idName = new Map<number, string>();
  const identities: Record<string, number> = {};
  const rows: string[] = [];
  for (const [k, v] of dump('meshd_endpoints')) {
    const ifindex = k.readUInt32LE(0);
    const e = EndpointValue.decode(v);
    const name = podOfIfindex.get(ifindex) ?? `ifindex ${ifindex}`;
    epName.set(e.ep_id, name);
    idName.set(e.identity, name);
    identities[name] = e.identity;
    rows.push(`endpoint ${name} flags ${e.flags}`);
  }
  for (const map of ['meshd_policy', 'meshd_pol_exact']) {
    for (const [k, v] of dump(map)) {
      const key = PolicyKey.decode(k);
      const val = PolicyValue.decode(v);
      const peer = idName.get(key.identity) ?? `identity ${key.identity}`;
      rows.push(`${epName.get(key.ep_id) ?? `ep ${key.ep_id}`} ${key.egress ? 'egress to' : 'ingress from'} ${peer} ${key.proto}/${key.dport}/${key.prefixlen} ${verdictFromCode(val.verdict) ?? val.verdict}`);
    }
  }
  return { rows: rows.sort(), identities };
}

function sourceOf(running: RunningAgent | null) {
  const src = running?.agent.status().source;
  assert.ok(src?.type === 'kubernetes', `a kubernetes source: ${JSON.stringify(src)}`);
  return src;
}

test('the agent through API server outages: enforcement goes on, nothing is flushed, it catches up', async (t) => {
  requirePrivileges();
  const node = new AgentNode();
  mkdirSync(node.manifests, { recursive: true }); // cleanup() restarts a stopped agent in standalone mode for CNI DEL
  /** What the cleanup needs, as far as the setup got. */
  const made: { kube?: KubeCluster; kubelet?: TestKubelet } = {};
  /** An agent start() still waiting for the API server, if a test left one. */
  let starting: Promise<unknown> | undefined;
  const procs: Array<() => Promise<void> | void> = [];
  // Registered before the cluster (hooks run in order): pods go while the API server and the agent still run.
  t.after(async () => {
    for (const stop of procs) await Promise.resolve().then(stop).catch(() => undefined); // best effort: the namespaces go next anyway
    await made.kube?.startApiServer().catch((e: unknown) => process.stderr.write(`restarting the API server for cleanup: ${String(e)}\n`));
    if (starting) await Promise.race([starting.catch(() => undefined), sleep(30_000)]);
    await made.kubelet?.cleanup();
    await node.cleanup();
  });
  const kube = (made.kube = await startKubeCluster({ t }));
  await applyCrds(kube);
  await kube.ensureDefaultServiceAccount('default');
  await kube.apply(serverPolicy(['client']));
  const inKube: Partial<RunAgentOptions> = { standaloneDir: undefined, kubeconfigPath: kube.kubeconfigPath, kubeSource: FAST };
  await node.start(inKube);
  const kubelet = (made.kubelet = new TestKubelet({ kube, nodeName: node.config.nodeName, cniConfDir: node.config['cni.confDir'], cniBinDir: node.config['cni.binDir'] }));
  const client = await kubelet.runPod('client', { labels: { app: 'client' } });
  const server = await kubelet.runPod('server', { labels: { app: 'server' }, containerPorts: [8080] });
  const intruder = await kubelet.runPod('intruder', { labels: { app: 'intruder' } });

  // The kubelet's work as the API sees it.
  const got = await kube.kubectl(['get', 'pod', 'server', '-o', 'jsonpath={.spec.nodeName} {.status.phase} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status}']);
  assert.equal(got.stdout, `${node.config.nodeName} Running ${server.ip} True`);

  await echoServer({ after: (fn) => void procs.push(fn) }, server.ns, [8080]);
  await eventually('the policy on the server', async () => (await tryConnect(intruder.ns, server.ip, 8080, 500)) === 'timeout');
  assert.equal(await tryConnect(client.ns, server.ip, 8080), 'connected', 'the allowed peer connects');
  const conn = await longLivedConnection({ after: (fn) => void procs.push(fn) }, client.ns, server.ip, 8080);
  assert.ok(await conn.ping(), 'the established connection carries data');

  /** Pings on the established connection and probes from the intruder until `ms` passed; every ping must come back. */
  const liveTraffic = async (ms: number, intruderExpect: string, during?: () => void) => {
    const until = Date.now() + ms;
    let pings = 0;
    for (let i = 0; Date.now() < until; i++) {
      assert.ok(await conn.ping(), `ping ${pings + 1} on the established connection`);
      pings++;
      if (i % 3 === 0) assert.equal(await tryConnect(intruder.ns, server.ip, 8080, 500), intruderExpect, 'the intruder');
      during?.();
      await sleep(1_500);
    }
    return pings;
  };

  await t.test(`API server stopped for ${OUTAGE_MS / 1000} s under live traffic: connections live, nothing flushed, status disconnected, caught up after`, async (t2) => {
    const kernelBefore = node.pinnedRows();
    const serverPolicyBefore = node.running?.agent.kernelPolicy('default/server');
    assert.ok(serverPolicyBefore && serverPolicyBefore.entries.size > 0, 'the server has policy entries in the kernel');
    assert.equal(sourceOf(node.running).state, 'connected');

    const stoppedAt = Date.now();
    await kube.stopApiServer();
    await eventually('meshd status to say disconnected', () => sourceOf(node.running).state === 'disconnected', 10_000);
    const down = sourceOf(node.running);
    const since = Date.parse(down.since);
    assert.ok(since >= stoppedAt - 1_000 && since <= Date.now(), `since ${down.since}`);
    assert.ok(down.lastError && ['MESHD_K8S_UNREACHABLE', 'MESHD_K8S_API_STATUS'].includes(down.lastError.code), JSON.stringify(down.lastError));

    const pings = await liveTraffic(OUTAGE_MS - (Date.now() - stoppedAt), 'timeout', () => {
      const s = sourceOf(node.running);
      assert.equal(s.state, 'disconnected');
      assert.equal(s.since, down.since, 'since stays when the outage began');
    });
    t2.diagnostic(`${pings} pings through a ${Date.now() - stoppedAt} ms outage`);
    assert.deepEqual(node.pinnedRows(), kernelBefore, 'nothing in the kernel changed during the outage');
    assert.deepEqual(node.running?.agent.kernelPolicy('default/server'), serverPolicyBefore);

    await kube.startApiServer();
    await eventually('meshd status to say connected', () => sourceOf(node.running).state === 'connected');
    assert.ok(Date.parse(sourceOf(node.running).since) >= Date.now() - 60_000);
    // Right after the API server returned: a change is enforced, so the watches resumed.
    await kube.apply(serverPolicy(['client', 'intruder']));
    await eventually('the widened policy', async () => (await tryConnect(intruder.ns, server.ip, 8080, 500)) === 'connected');
    assert.ok(await conn.ping(), 'the established connection still carries data');
  });

  await t.test('agent restarted while the API server is down: start() waits for the cluster, the kernel goes on enforcing unchanged, then it reconciles', async (t2) => {
    await node.stopAgent();
    assert.ok(await conn.ping(), 'the connection lives with the agent stopped');
    await kube.stopApiServer();
    const kernelBefore = node.pinnedRows();
    const viewBefore = kernelView(node, kubelet.running());

    const runningNow = () => node.running; // read through a call: an assertion on the property would narrow it for the rest of the test
    let settled: 'pending' | 'resolved' | 'rejected' = 'pending';
    starting = node.start(inKube).then(
      () => (settled = 'resolved'),
      (e: unknown) => {
        settled = 'rejected';
        throw e;
      },
    );
    // The restarted agent has no cluster to read: it waits, writing nothing, while the pinned datapath enforces.
    await liveTraffic(10_000, 'connected', () => assert.equal(settled, 'pending', 'start() waits for the API server'));
    assert.equal(runningNow(), null, 'no running agent yet');
    assert.deepEqual(node.pinnedRows(), kernelBefore, 'nothing in the kernel changed while the agent waited');
    assert.ok(node.logs.some((l) => l.includes('API server connection lost')), 'the waiting agent logs the outage');

    await kube.startApiServer();
    await Promise.race([starting, sleep(60_000).then(() => assert.fail(`start() did not finish after the API server returned (${settled})`))]);
    starting = undefined;
    assert.equal(settled, 'resolved');
    const src = sourceOf(node.running);
    assert.equal(src.state, 'connected');
    assert.ok(Object.values(src.kinds).every((k) => k.synced), 'every kind synced');
    // Reconciled against the same cluster: the kernel enforces what it did. The numbers may differ:
    // identities are allocated afresh by each agent process, in the order it meets the label sets.
    const viewAfter = kernelView(node, kubelet.running());
    assert.deepEqual(viewAfter.rows, viewBefore.rows, 'the reconcile after the restart enforces the same policy');
    t2.diagnostic(`identities before the restart ${JSON.stringify(viewBefore.identities)}, after ${JSON.stringify(viewAfter.identities)}`);
    const ep = node.running?.agent.kernelPolicy('default/server');
    assert.ok(ep && ep.entries.size > 0, 'the server endpoint was restored from local state');
    assert.ok(await conn.ping(), 'the established connection survived the restart');

    await kube.apply(serverPolicy(['client']));
    await eventually('the narrowed policy', async () => (await tryConnect(intruder.ns, server.ip, 8080, 500)) === 'timeout');
    assert.equal(await tryConnect(client.ns, server.ip, 8080), 'connected');
    assert.ok(await conn.ping());
    t2.diagnostic(`restarted agent: ${node.running?.agent.endpointList().length ?? 0} endpoints`);
  });

  // A pod the kubelet deletes goes from the agent and the API.
  await t.test('the test kubelet deletes a pod: CNI DEL, namespace and Pod object', async () => {
    const gone: KubeletPod = intruder;
    await kubelet.deletePod(gone);
    assert.equal(node.running?.agent.kernelPolicy('default/intruder'), undefined, 'the endpoint left the datapath');
    const r = await kube.kubectl(['get', 'pod', 'intruder', '--ignore-not-found', '-o', 'name']);
    assert.equal(r.stdout.trim(), '');
    assert.ok(!kubelet.running().some((p) => p.name === 'intruder'));
  });
});
