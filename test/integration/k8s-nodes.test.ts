/**
 * Node objects and pod CIDRs against a real kube-apiserver and etcd
 * (src/devcluster/kube-cluster.ts), with whole agents in Kubernetes mode and
 * pods run by the test kubelet through meshd-cni:
 * - two agents started at the same time in cluster-pool mode claim
 *   different blocks of the pool, write their MeshdNode (pod CIDR,
 *   addresses, heartbeat), show the CIDR in `meshd status`, give their pods
 *   addresses from their own block, and keep the block across a restart (and
 *   claim it again when the claim is deleted under them);
 * - an explicit ipam.podCIDR another node holds (or overlaps) is refused
 *   with MESHD_IPAM_POD_CIDR_CONFLICT naming that node;
 * - ipam.mode=kubernetes waits (CNI ADD: try again later) until the Node
 *   object has spec.podCIDRs, then allocates from it;
 * - a node that left (Node object deleted, heartbeat stale) loses its
 *   MeshdNode, its CIDR claim and its key in policy statuses, removed by
 *   the holder of the meshd-node-gc Lease only; its block is handed out again.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { z } from 'zod';
import { NodeHousekeeping } from '../../src/agent/node-housekeeping.js';
import { parseCidr4, overlaps, PodCidrError } from '../../src/agent/pod-cidr.js';
import type { RunAgentOptions } from '../../src/agent/run.js';
import { CONFLIST_NAME } from '../../src/cni/installer.js';
import { KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { isMeshdError } from '../../src/util/errors.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { CniRuntime, type Conflist } from '../helpers/cni-runtime.js';
import { startKubeCluster, type KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { TestKubelet } from '../../src/devcluster/kubelet.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { eventually } from '../helpers/kube-nodes.js';

/** A /22 pool of this process (four /24 blocks), away from the 10.244/16 other tests use. */
const POOL = `10.${150 + (process.pid % 50)}.${4 * (process.pid % 60)}.0/22`;
const block = (i: number): string => {
  const [a, b, c] = POOL.split('.');
  return `${a}.${b}.${Number(c) + i}.0/24`;
};

const FAST_SOURCE = { batchDelayMs: 10, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };
const FAST_NODES = { podCidrRetryMs: 300, leaseDurationMs: 2_000, leaseRetryMs: 200 };
const GRACE_MS = 3_000;

function nodeConfig(nodeName: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    nodeName,
    'ipam.podCIDR': undefined,
    'ipam.operator.clusterPoolIPv4PodCIDRList': [POOL],
    'ipam.operator.clusterPoolIPv4MaskSize': 24,
    'nodeHeartbeat.interval': '500ms',
    'nodeGC.interval': '300ms',
    'nodeGC.gracePeriod': `${GRACE_MS}ms`,
    ...extra,
  };
}

const inCidr = (ip: string, cidr: string): boolean => {
  const c = parseCidr4(cidr);
  const a = parseCidr4(`${ip}/32`);
  return c !== undefined && a !== undefined && overlaps(c, a);
};

const MeshdNodeJson = z.object({
  spec: z.object({ podCIDRs: z.array(z.string()), podCIDRSource: z.string().optional(), addresses: z.array(z.object({ type: z.string(), ip: z.string() })) }),
  status: z.object({ health: z.object({ healthy: z.boolean(), lastHeartbeat: z.string() }), agentVersion: z.string(), endpoints: z.number() }),
});
const ClaimList = z.object({ items: z.array(z.object({ metadata: z.object({ name: z.string() }), spec: z.object({ cidr: z.string(), node: z.string() }) })) });

async function getJson<T>(kube: KubeCluster, schema: z.ZodType<T>, args: string[]): Promise<T | undefined> {
  const r = await kube.kubectl(['get', ...args, '-o', 'json']);
  if (r.code !== 0) return undefined;
  return schema.parse(JSON.parse(r.stdout));
}

const claims = async (kube: KubeCluster): Promise<Record<string, string>> =>
  Object.fromEntries(((await getJson(kube, ClaimList, ['meshdpodcidrs']))?.items ?? []).map((i) => [i.spec.cidr, i.spec.node]));

async function installCrds(kube: KubeCluster): Promise<void> {
  // As the chart installs them; agents starting at once then find them registered.
  const dir = repoPath('install', 'crds');
  for (const f of readdirSync(dir).sort()) await kube.apply(readFileSync(join(dir, f), 'utf8'));
  const r = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/meshdnodes.meshd.io', 'crd/meshdpodcidrs.meshd.io', 'crd/ciliumnetworkpolicies.cilium.io']);
  assert.equal(r.code, 0, r.stderr);
}

test('node objects and pod CIDRs against a real API server', async (t) => {
  requirePrivileges();
  const nodes: AgentNode[] = [];
  const kubelets: TestKubelet[] = [];
  const made: { kube?: KubeCluster } = {};
  const newNode = (name: string, slot: number, extra: Record<string, unknown> = {}): AgentNode => {
    const n = new AgentNode(nodeConfig(name, extra), slot);
    mkdirSync(n.manifests, { recursive: true }); // cleanup() restarts a stopped agent in standalone mode for CNI DEL
    nodes.push(n);
    return n;
  };
  // Registered before the cluster (hooks run in order): pods go while the API server and the agents still run.
  t.after(async () => {
    for (const k of kubelets) await k.cleanup();
    for (const n of nodes) await n.cleanup();
  });
  const kube = (made.kube = await startKubeCluster({ t }));
  await installCrds(kube);
  await kube.apply(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'));
  await kube.ensureDefaultServiceAccount('default');
  // Node B runs as the meshd ServiceAccount with only install/rbac.yaml's rights.
  const saKubeconfig = (await kube.serviceAccountKubeconfig('kube-system', 'meshd')).kubeconfigPath;
  const inKube = (kubeconfigPath: string): Partial<RunAgentOptions> => ({ standaloneDir: undefined, kubeconfigPath, kubeSource: FAST_SOURCE, nodes: FAST_NODES });
  for (const name of ['node-a', 'node-b']) await kube.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name } });

  const a = newNode('node-a', 0);
  const b = newNode('node-b', 1);
  const kubeletFor = (n: AgentNode): TestKubelet => {
    const k = new TestKubelet({ kube, nodeName: n.config.nodeName, cniConfDir: n.config['cni.confDir'], cniBinDir: n.config['cni.binDir'] });
    kubelets.push(k);
    return k;
  };
  let cidrA = '';
  let cidrB = '';

  await t.test('two agents started at once claim different blocks of the pool, and their pods get addresses from their own', async () => {
    const [ra, rb] = await Promise.all([a.start(inKube(kube.kubeconfigPath)), b.start(inKube(saKubeconfig))]);
    const sa = ra.agent.status().ipam;
    const sb = rb.agent.status().ipam;
    assert.equal(sa.state, 'ready', JSON.stringify(sa));
    assert.equal(sb.state, 'ready', JSON.stringify(sb));
    assert.equal(sa.source, 'cluster-pool');
    cidrA = sa.cidr ?? '';
    cidrB = sb.cidr ?? '';
    assert.notEqual(cidrA, cidrB, 'two nodes never share a block');
    assert.deepEqual([cidrA, cidrB].sort(), [block(0), block(1)].sort(), 'the two lowest blocks of the pool');
    assert.deepEqual(await claims(kube), { [cidrA]: 'node-a', [cidrB]: 'node-b' });

    // meshd status, through the CLI and the typed local API.
    const { stdout } = await promisify(execFile)(process.execPath, [repoPath('bin', 'meshd.mjs'), 'status', '-o', 'json', '--api-socket', ra.agent.socketPath('meshd')]);
    const shown = z.object({ ipam: z.object({ mode: z.string(), state: z.string(), cidr: z.string(), source: z.string() }) }).parse(JSON.parse(stdout)).ipam;
    assert.deepEqual(shown, { mode: 'cluster-pool', state: 'ready', cidr: cidrA, source: 'cluster-pool' });

    // The conflist carries the node's block; the kubelet's pods get addresses from it.
    for (const [n, cidr] of [[a, cidrA], [b, cidrB]] as const) {
      const list = JSON.parse(readFileSync(join(n.config['cni.confDir'], CONFLIST_NAME), 'utf8')) as Conflist;
      assert.deepEqual(list.plugins[0]?.ipam, { type: 'meshd', subnet: cidr });
    }
    const podA = await kubeletFor(a).runPod('web-a', { labels: { app: 'web' } });
    const podB = await kubeletFor(b).runPod('web-b', { labels: { app: 'web' } });
    assert.ok(inCidr(podA.ip, cidrA), `${podA.ip} in ${cidrA}`);
    assert.ok(inCidr(podB.ip, cidrB), `${podB.ip} in ${cidrB}`);

    // Each MeshdNode: the CIDR, its source, addresses, a heartbeat that moves, the endpoint count.
    let first = '';
    await eventually('node-a\'s MeshdNode counts its pod', async () => {
      const mn = await getJson(kube, MeshdNodeJson, ['meshdnode', 'node-a']);
      first ||= mn?.status.health.lastHeartbeat ?? '';
      return mn?.status.endpoints === 1;
    });
    const mn = await getJson(kube, MeshdNodeJson, ['mn', 'node-a']);
    assert.deepEqual(mn?.spec.podCIDRs, [cidrA]);
    assert.equal(mn?.spec.podCIDRSource, 'cluster-pool');
    assert.equal(mn?.status.health.healthy, true);
    assert.ok(mn?.spec.addresses.some((x) => x.type === 'MeshdHostIP'), JSON.stringify(mn?.spec.addresses));
    await eventually('the heartbeat moves', async () => (await getJson(kube, MeshdNodeJson, ['mn', 'node-a']))?.status.health.lastHeartbeat !== first, 5_000);
    const cols = await kube.kubectl(['get', 'mn', 'node-b', '--no-headers']);
    assert.match(cols.stdout, new RegExp(`^node-b\\s+${cidrB.replace(/\./g, '\\.')}\\s+true\\s+`));
  });

  await t.test('each agent restarts with the same block, read back from its MeshdNode', async () => {
    await a.stopAgent();
    const ra = await a.start(inKube(kube.kubeconfigPath));
    const s = ra.agent.status().ipam;
    assert.equal(s.cidr, cidrA);
    assert.match(s.detail, /MeshdNode/);
    await b.stopAgent();
    assert.equal((await b.start(inKube(saKubeconfig))).agent.status().ipam.cidr, cidrB);
    assert.deepEqual(await claims(kube), { [cidrA]: 'node-a', [cidrB]: 'node-b' }, 'no new claim');
    // A claim deleted while its node lives is made again at the node's next heartbeat.
    const del = await kube.kubectl(['delete', 'meshdpodcidr', cidrA.replace('/', '-')]);
    assert.equal(del.code, 0, del.stderr);
    await eventually('node-a claims its block again', async () => (await claims(kube))[cidrA] === 'node-a', 10_000);
  });

  await t.test('an explicit ipam.podCIDR another node holds, or one overlapping it, is refused with its code, naming that node', async () => {
    const holderOf = (e: unknown) => (isMeshdError(e, 'MESHD_IPAM_POD_CIDR_CONFLICT') && e instanceof PodCidrError ? e.holder : undefined);
    const d = newNode('node-d', 3, { 'ipam.podCIDR': cidrA });
    await assert.rejects(d.start(inKube(kube.kubeconfigPath)), (e: unknown) => holderOf(e)?.node === 'node-a' && holderOf(e)?.cidr === cidrA);
    const wide = newNode('node-e', 4, { 'ipam.podCIDR': POOL });
    await assert.rejects(wide.start(inKube(kube.kubeconfigPath)), (e: unknown) => holderOf(e) !== undefined && ['node-a', 'node-b'].includes(holderOf(e)?.node ?? ''));
    assert.deepEqual(await claims(kube), { [cidrA]: 'node-a', [cidrB]: 'node-b' }, 'the refused nodes claimed nothing');
    // A free explicit CIDR outside the pool is taken as given.
    const f = newNode('node-f', 5, { 'ipam.podCIDR': '10.243.77.0/24' });
    const s = (await f.start(inKube(kube.kubeconfigPath))).agent.status().ipam;
    assert.deepEqual([s.cidr, s.source], ['10.243.77.0/24', 'explicit']);
    await f.stopAgent();
    // Removed by hand, so that the housekeeping below has only the node that leaves to remove.
    await eventually('node-f\'s objects are gone', async () => {
      const r = await kube.kubectl(['delete', 'meshdnode/node-f', 'meshdpodcidr/10.243.77.0-24', '--ignore-not-found']);
      const left = await kube.kubectl(['get', 'meshdnode/node-f', 'meshdpodcidr/10.243.77.0-24', '--ignore-not-found', '-o', 'name']);
      return r.code === 0 && left.code === 0 && left.stdout.trim() === '';
    });
  });

  await t.test('ipam.mode=kubernetes: CNI ADD is retried until Node.spec.podCIDRs is set, then pods get addresses from it', async () => {
    await kube.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-c' } });
    const c = newNode('node-c', 2, { 'ipam.mode': 'kubernetes' });
    const rc = await c.start(inKube(kube.kubeconfigPath));
    const pending = rc.agent.status().ipam;
    assert.deepEqual([pending.mode, pending.state, pending.cidr, pending.code], ['kubernetes', 'pending', null, 'MESHD_IPAM_POD_CIDR_PENDING']);

    // A runtime's ADD now: "try again later" (CNI error 11), nothing wired.
    const list = JSON.parse(readFileSync(join(c.config['cni.confDir'], CONFLIST_NAME), 'utf8')) as Conflist;
    const plugin = list.plugins[0];
    assert.ok(plugin);
    const sb = new Sandbox('kc');
    try {
      const ns = await sb.netns('p');
      const rt = new CniRuntime([c.config['cni.binDir']]);
      const r = await rt.exec('meshd-cni', 'ADD', { containerId: `pending-${process.pid}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' }, { ...plugin, cniVersion: list.cniVersion, name: list.name });
      assert.notEqual(r.code, 0);
      assert.equal(r.json?.code, 11, r.stdout);
      assert.equal(r.json?.details, 'MESHD_CNI_POD_CIDR_PENDING');
    } finally {
      await sb.cleanup();
    }

    const given = '10.243.9.0/24';
    const p = await kube.kubectl(['patch', 'node', 'node-c', '--type=merge', '-p', JSON.stringify({ spec: { podCIDR: given, podCIDRs: [given] } })]);
    assert.equal(p.code, 0, p.stderr);
    await eventually('the agent takes the Node\'s CIDR', () => rc.agent.status().ipam.state === 'ready');
    const ready = rc.agent.status().ipam;
    assert.deepEqual([ready.cidr, ready.source], [given, 'kubernetes']);
    const pod = await kubeletFor(c).runPod('web-c', { labels: { app: 'web' } });
    assert.ok(inCidr(pod.ip, given), `${pod.ip} in ${given}`);
    assert.equal((await claims(kube))[given], 'node-c');
    await eventually('the MeshdNode says so', async () => (await getJson(kube, MeshdNodeJson, ['mn', 'node-c']))?.spec.podCIDRSource === 'kubernetes');
  });

  await t.test('a node that left loses its MeshdNode, CIDR claim and policy status key, removed by the Lease holder only; its block is handed out again', async () => {
    await kube.apply({
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'web', namespace: 'default' },
      spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] },
    });
    const statusNodes = async (): Promise<string[]> => {
      const r = await kube.kubectl(['get', 'cnp', 'web', '-n', 'default', '-o', 'json']);
      return Object.keys(z.object({ status: z.object({ nodes: z.record(z.string(), z.unknown()) }).optional() }).parse(JSON.parse(r.stdout)).status?.nodes ?? {}).sort();
    };
    await eventually('every node reports on the policy', async () => (await statusNodes()).join() === 'node-a,node-b,node-c');

    // Node B goes: its pod, its agent (giving the Lease up if it held it), then its Node object.
    const kb = kubelets[1];
    assert.ok(kb);
    await kb.deletePod({ namespace: 'default', name: 'web-b' });
    const hkB = b.running?.nodes?.housekeeping;
    await b.stopAgent();
    const hkA = a.running?.nodes?.housekeeping;
    await eventually('node-a holds the meshd-node-gc Lease', () => hkA?.isLeader() === true, 10_000);
    // A housekeeper that does not hold the Lease must remove nothing, even with no grace period at all.
    const admin = new KubeClient(resolveKubeConfig({ kubeconfigPath: kube.kubeconfigPath, env: {} }).kubeConfig);
    const bystander = new NodeHousekeeping({ client: admin, holder: 'bystander', namespace: 'kube-system', graceMs: 0, intervalMs: 200, leaseDurationMs: 2_000, retryMs: 200 });
    t.after(() => bystander.stop());
    bystander.start();
    const del = await kube.kubectl(['delete', 'node', 'node-b']);
    assert.equal(del.code, 0, del.stderr);
    const goneAt = Date.now();
    await eventually('node-b\'s MeshdNode is removed', async () => (await kube.kubectl(['get', 'mn', 'node-b'])).code !== 0, 20_000);
    assert.ok(Date.now() - goneAt >= GRACE_MS - 1_500, `not before its heartbeat is stale (${Date.now() - goneAt} ms)`);
    await eventually('its CIDR claim is removed', async () => !(cidrB in (await claims(kube))));
    await eventually('its policy status key is removed, the others stay', async () => (await statusNodes()).join() === 'node-a,node-c');

    assert.ok(hkA && hkA.isLeader(), 'node-a still holds the Lease');
    assert.deepEqual(hkA.removed.nodes, ['node-b']);
    assert.deepEqual(hkA.removed.cidrs, [cidrB]);
    assert.deepEqual(hkA.removed.statusKeys, ['CiliumNetworkPolicy default/web: node-b']);
    assert.deepEqual(hkB?.removed, { nodes: [], cidrs: [], statusKeys: [] }, 'node-b removed nothing');
    assert.equal(bystander.isLeader(), false);
    assert.deepEqual(bystander.removed, { nodes: [], cidrs: [], statusKeys: [] }, 'a housekeeper without the Lease removes nothing');
    // The live nodes stay.
    for (const n of ['node-a', 'node-c']) assert.equal((await kube.kubectl(['get', 'mn', n])).code, 0, n);
    const lease = await kube.kubectl(['get', 'lease', 'meshd-node-gc', '-n', 'kube-system', '-o', 'jsonpath={.spec.holderIdentity}']);
    assert.equal(lease.stdout, 'node-a');

    // The block node-b held is the first free one again: a new node gets it.
    const g = newNode('node-g', 6);
    assert.equal((await g.start(inKube(kube.kubeconfigPath))).agent.status().ipam.cidr, cidrB);
  });
});
