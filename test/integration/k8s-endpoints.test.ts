/**
 * MeshdEndpoint objects against a real kube-apiserver and etcd
 * (src/devcluster/kube-cluster.ts), one agent in Kubernetes mode running as the
 * `meshd` ServiceAccount with only install/rbac.yaml's rights (it registers
 * the CRDs itself), pods run by the test kubelet through meshd-cni:
 *
 * - Local: a pod's object appears with the identity of its MeshdIdentity,
 *   its address, named ports, node and state; it is not rewritten while
 *   nothing changes; a policy selecting the pod shows as enforcing;
 *   relabelling the pod changes the object's identity; deleting the pod
 *   deletes the object; an object deleted or edited by someone else is
 *   written again; with the API server down the delete is retried until
 *   it is back, without holding up CNI DEL; a pod deleted while the agent was
 *   down has its object removed after the restart.
 * - Remote: objects of another node (objects only, no pods, no agent) put
 *   their addresses into the pinned ipcache with their identity, and a policy
 *   allowing their labels allows that identity in the pinned policy map; an
 *   identity another node allocated reaches the policy map before any object
 *   uses it; an object naming another number than the labels have is
 *   reported; deleting the object removes the row.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { z } from 'zod';
import { prefixFromKey } from '../../src/datapath/endpoint/ipcache.js';
import { verdictFromCode } from '../../src/datapath/endpoint/policy-map-state.js';
import { IpcacheValue, PolicyKey, PolicyValue } from '../../src/datapath/maps.js';
import { identityKeyName } from '../../src/identity/kube-allocator.js';
import { podLabels } from '../../src/identity/labels.js';
import type { KubeSourceOptions } from '../../src/k8s/kube-source.js';
import { buildMeshdEndpoint, MEP_NODE_LABEL, type MeshdEndpointStatus } from '../../src/k8s/meshd-endpoint.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startKubeCluster, type KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { testSubnet } from '../helpers/cni-runtime.js';
import { TestKubelet } from '../../src/devcluster/kubelet.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { eventually } from '../helpers/kube-nodes.js';

const FAST: Omit<KubeSourceOptions, 'client'> = { batchDelayMs: 10, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const StoredEndpoint = z.object({
  metadata: z.object({ resourceVersion: z.string(), labels: z.record(z.string(), z.string()), ownerReferences: z.array(z.object({ kind: z.string(), name: z.string(), uid: z.string() })).optional() }),
  status: z.object({
    nodeName: z.string(),
    endpointID: z.number(),
    identity: z.object({ id: z.number(), labels: z.array(z.string()) }),
    networking: z.object({ addresses: z.array(z.object({ ipv4: z.string().optional(), ipv6: z.string().optional() })) }),
    namedPorts: z.array(z.object({ name: z.string(), port: z.number(), protocol: z.string() })),
    state: z.string(),
    policy: z.object({ ingress: z.object({ enforcing: z.boolean() }), egress: z.object({ enforcing: z.boolean() }) }),
    health: z.object({ healthy: z.boolean(), lastUpdate: z.string() }),
  }),
});
type StoredEndpoint = z.infer<typeof StoredEndpoint>;

async function getEndpoint(kube: KubeCluster, name: string): Promise<StoredEndpoint | undefined> {
  const r = await kube.kubectl(['get', 'meshdendpoint', name, '-n', 'default', '-o', 'json']);
  if (r.code !== 0) {
    assert.match(r.stderr, /NotFound/, r.stderr);
    return undefined;
  }
  return StoredEndpoint.parse(JSON.parse(r.stdout));
}

async function identityLabels(kube: KubeCluster, id: number): Promise<string[]> {
  const r = await kube.kubectl(['get', 'meshdidentity', String(id), '-o', 'json']);
  assert.equal(r.code, 0, `MeshdIdentity ${id}: ${r.stderr}`);
  return z.object({ spec: z.object({ labels: z.array(z.string()) }) }).parse(JSON.parse(r.stdout)).spec.labels;
}

/** The pinned ipcache as prefix → identity (read from the pins, not the agent): whole addresses live in meshd_ipc_host. */
function pinnedIpcache(node: AgentNode): Map<string, number> {
  const out = new Map<string, number>();
  const rows = node.pinnedRows(['meshd_ipcache', 'meshd_ipc_host']);
  for (const row of [...(rows.meshd_ipcache ?? []), ...(rows.meshd_ipc_host ?? [])]) {
    const [k, v] = row.split('=');
    out.set(prefixFromKey(Buffer.from(k ?? '', 'hex')).cidr, IpcacheValue.decode(Buffer.from(v ?? '', 'hex')).identity);
  }
  return out;
}

/** Pinned policy rows allowing ingress from `identity` (any endpoint, any port). */
function pinnedIngressAllows(node: AgentNode, identity: number): number {
  const rows = node.pinnedRows(['meshd_policy', 'meshd_pol_exact']);
  let n = 0;
  for (const row of [...(rows.meshd_policy ?? []), ...(rows.meshd_pol_exact ?? [])]) {
    const [k, v] = row.split('=');
    const key = PolicyKey.decode(Buffer.from(k ?? '', 'hex'));
    const val = PolicyValue.decode(Buffer.from(v ?? '', 'hex'));
    if (key.identity === identity && !key.egress && verdictFromCode(val.verdict) === 'ALLOW') n++;
  }
  return n;
}

/** A label set's cluster identity created the way an agent allocates it (MeshdIdentity, then MeshdIdentityKey). */
async function allocateAsAnotherNode(kube: KubeCluster, id: number, app: string): Promise<string[]> {
  const set = podLabels({ namespace: 'default', labels: { app } });
  const key = identityKeyName(set);
  await kube.apply({ apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdIdentity', metadata: { name: String(id) }, spec: { labels: set.toStrings(), key }, status: { references: { 'node-b': new Date().toISOString() } } });
  await kube.apply({ apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdIdentityKey', metadata: { name: key }, spec: { identity: id } });
  return set.toStrings();
}

const remoteObject = (name: string, ip: string, identity: { id: number; labels: string[] }, nodeName = 'node-b') => {
  const status: MeshdEndpointStatus = {
    nodeName,
    endpointID: 9,
    identity,
    networking: { addresses: [{ ipv4: ip }] },
    namedPorts: [],
    state: 'ready',
    policy: { ingress: { enforcing: false }, egress: { enforcing: false } },
    health: { healthy: true, lastUpdate: new Date().toISOString() },
  };
  return buildMeshdEndpoint({ namespace: 'default', name, status });
};

/** A pod CIDR slot no other test on this host routes now (their subnets derive from their pids too). */
function freeSlot(): number {
  const routes = execFileSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' });
  for (let slot = 0; slot < 150; slot++) if (!routes.includes(testSubnet(slot).prefix)) return slot;
  return 0;
}

test('MeshdEndpoint objects: written for local pods, read into the ipcache for other nodes', async (t) => {
  requirePrivileges();
  const node = new AgentNode({ nodeName: 'node-a' }, freeSlot());
  mkdirSync(node.manifests, { recursive: true }); // cleanup() restarts a stopped agent in standalone mode for CNI DEL
  const made: { kubelet?: TestKubelet } = {};
  // Registered before the cluster's own cleanup (hooks run in order): pods go while the API server and the agent still run.
  t.after(async () => {
    await made.kubelet?.cleanup();
    await node.cleanup();
  });
  const kube = await startKubeCluster({ t });
  await kube.ensureDefaultServiceAccount('default');
  await kube.apply(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'));
  const account = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  const start = () => node.start({ standaloneDir: undefined, kubeconfigPath: account.kubeconfigPath, kubeSource: FAST });
  let running = await start();
  const kubelet = (made.kubelet = new TestKubelet({ kube, nodeName: 'node-a', cniConfDir: node.config['cni.confDir'], cniBinDir: node.config['cni.binDir'] }));

  let webId = 0;
  await t.test('a local pod gets its object: identity of its MeshdIdentity, address, named ports, node, state; owned by the pod', async () => {
    const web = await kubelet.runPod('web', { labels: { app: 'web' }, namedPorts: [{ name: 'http', port: 8080 }] });
    let obj: StoredEndpoint | undefined;
    await eventually('the object is ready', async () => (obj = await getEndpoint(kube, 'web'))?.status.state === 'ready');
    assert.ok(obj);
    webId = obj.status.identity.id;
    assert.equal(webId, running.agent.engine.endpointIdentity('default/web'));
    assert.deepEqual(obj.status.identity.labels, [...(await identityLabels(kube, webId))].sort(), 'the MeshdIdentity of that number holds the same labels');
    assert.ok(obj.status.identity.labels.includes('k8s:app=web'));
    assert.equal(obj.status.nodeName, 'node-a');
    assert.equal(obj.metadata.labels[MEP_NODE_LABEL], 'node-a');
    assert.deepEqual(obj.status.networking.addresses, [{ ipv4: web.ip }]);
    assert.deepEqual(obj.status.namedPorts, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    assert.ok(obj.status.endpointID > 0);
    assert.deepEqual(obj.status.policy, { ingress: { enforcing: false }, egress: { enforcing: false } });
    assert.equal(obj.status.health.healthy, true);
    const podUid = (await kube.kubectl(['get', 'pod', 'web', '-n', 'default', '-o', 'jsonpath={.metadata.uid}'])).stdout;
    assert.deepEqual(obj.metadata.ownerReferences?.map((o) => [o.kind, o.name, o.uid]), [['Pod', 'web', podUid]]);
    const cols = await kube.kubectl(['get', 'mep', '-n', 'default']);
    assert.match(cols.stdout.split('\n')[0] ?? '', /NAME\s+NODE\s+IDENTITY\s+IPV4\s+STATE\s+AGE/);

    // Nothing the object shows changes: no write (an unrelated object changes, the agent runs a mutation).
    const rv = obj.metadata.resourceVersion;
    const writes = running.agent.status().endpointObjects?.writer.writes;
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'unrelated' } });
    await sleep(1_500);
    assert.equal((await getEndpoint(kube, 'web'))?.metadata.resourceVersion, rv, 'not rewritten');
    assert.equal(running.agent.status().endpointObjects?.writer.writes, writes);
    assert.equal(running.agent.status().endpointObjects?.writer.pendingWrites, 0);
  });

  const remoteLabels = { id: 0, labels: [] as string[] };
  await t.test('an identity another node allocated reaches the policy map at once; its endpoint object enters the pinned ipcache', async () => {
    await kube.apply({
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'web-from-remote', namespace: 'default' },
      spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'remote' } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }] },
    });
    await eventually('the object shows ingress enforcing', async () => (await getEndpoint(kube, 'web'))?.status.policy.ingress.enforcing === true);

    // Node B allocates app=remote; nothing on node A changes meanwhile, yet the policy map learns the identity.
    remoteLabels.id = 40_000;
    remoteLabels.labels = await allocateAsAnotherNode(kube, remoteLabels.id, 'remote');
    await eventually('the policy map allows the new identity', () => pinnedIngressAllows(node, remoteLabels.id) > 0);

    await kube.apply(remoteObject('r1', '10.99.0.5', remoteLabels));
    await eventually('10.99.0.5 is in the pinned ipcache with that identity', () => pinnedIpcache(node).get('10.99.0.5/32') === remoteLabels.id);
    const st = running.agent.status().endpointObjects;
    assert.equal(st?.remote.objects, 1);
    assert.equal(st?.remote.synced, true);
    assert.deepEqual(st?.remote.identityMismatches, []);
    assert.equal(await getEndpoint(kube, 'r1').then((o) => o?.status.nodeName), 'node-b', "node A leaves other nodes' objects alone");
  });

  await t.test('an object naming another number than its labels have is reported; the labels decide', async () => {
    await kube.apply(remoteObject('r2', '10.99.0.6', { id: remoteLabels.id + 1, labels: remoteLabels.labels }));
    await eventually('the mismatch is in meshd status', () => (running.agent.status().endpointObjects?.remote.identityMismatches ?? []).some((m) => m.endpoint === 'default/r2' && m.objectIdentity === remoteLabels.id + 1 && m.localIdentity === remoteLabels.id));
    assert.equal(pinnedIpcache(node).get('10.99.0.6/32'), remoteLabels.id);
    assert.ok(node.logs.some((l) => l.includes('MESHD_K8S_ENDPOINT_IDENTITY_MISMATCH')), 'logged');
    const del = await kube.kubectl(['delete', 'meshdendpoint', 'r2', '-n', 'default']);
    assert.equal(del.code, 0, del.stderr);
    await eventually('the mismatch is gone with the object', () => (running.agent.status().endpointObjects?.remote.identityMismatches ?? []).length === 0);
  });

  await t.test('an object of this node is ignored by the reader: the local registry is authoritative', async () => {
    await kube.apply(remoteObject('ghost', '10.99.0.7', remoteLabels, 'node-a'));
    await sleep(1_000);
    assert.equal(pinnedIpcache(node).has('10.99.0.7/32'), false);
  });

  await t.test('deleting the remote object removes its ipcache row', async () => {
    const del = await kube.kubectl(['delete', 'meshdendpoint', 'r1', '-n', 'default']);
    assert.equal(del.code, 0, del.stderr);
    await eventually('10.99.0.5 left the pinned ipcache', () => !pinnedIpcache(node).has('10.99.0.5/32'));
    assert.equal(running.agent.status().endpointObjects?.remote.objects, 0);
  });

  await t.test("relabelling the pod updates its object's identity", async () => {
    const r = await kube.kubectl(['label', 'pod', 'web', '-n', 'default', 'tier=front']);
    assert.equal(r.code, 0, r.stderr);
    let obj: StoredEndpoint | undefined;
    await eventually('the object has a new identity', async () => {
      obj = await getEndpoint(kube, 'web');
      return obj !== undefined && obj.status.identity.id !== webId && obj.status.identity.labels.includes('k8s:tier=front');
    });
    assert.ok(obj);
    assert.equal(obj.status.identity.id, running.agent.engine.endpointIdentity('default/web'));
    assert.deepEqual(obj.status.identity.labels, [...(await identityLabels(kube, obj.status.identity.id))].sort());
  });

  await t.test('deleting the pod deletes its object', async () => {
    await kubelet.deletePod({ namespace: 'default', name: 'web' });
    await eventually('the object is gone', async () => (await getEndpoint(kube, 'web')) === undefined);
  });

  await t.test('an own object deleted or edited by someone else is written again', async () => {
    await kubelet.runPod('keep', { labels: { app: 'keep' } });
    await eventually('its object is ready', async () => (await getEndpoint(kube, 'keep'))?.status.state === 'ready');
    const del = await kube.kubectl(['delete', 'meshdendpoint', 'keep', '-n', 'default']);
    assert.equal(del.code, 0, del.stderr);
    await eventually('the object is back', async () => (await getEndpoint(kube, 'keep'))?.status.state === 'ready');
    const edit = await kube.kubectl(['patch', 'meshdendpoint', 'keep', '-n', 'default', '--type=merge', '-p', JSON.stringify({ status: { state: 'not-ready' } })]);
    assert.equal(edit.code, 0, edit.stderr);
    await eventually('the edit is undone', async () => (await getEndpoint(kube, 'keep'))?.status.state === 'ready');
    await kubelet.deletePod({ namespace: 'default', name: 'keep' });
    await eventually('the object is gone with its pod', async () => (await getEndpoint(kube, 'keep')) === undefined);
  });

  await t.test("API server down: the object's delete waits and is retried with backoff; the pod's CNI DEL does not wait for it", async () => {
    await kubelet.runPod('offline', { labels: { app: 'offline' } });
    await eventually('its object is ready', async () => (await getEndpoint(kube, 'offline'))?.status.state === 'ready');
    await kube.stopApiServer();
    try {
      const started = Date.now();
      // CNI DEL works; only the Pod object's delete fails (no API server), so the error is expected.
      await kubelet.deletePod({ namespace: 'default', name: 'offline' }).catch(() => undefined);
      assert.ok(Date.now() - started < 15_000, `CNI DEL did not wait for the API server (${Date.now() - started} ms)`);
      assert.ok(!running.agent.endpointList().some((e) => e.id === 'default/offline'), 'the endpoint is gone from the datapath');
      await eventually('the delete is pending with the connection error', () => {
        const w = running.agent.status().endpointObjects?.writer;
        return w !== undefined && w.pendingWrites === 1 && w.lastError?.code === 'MESHD_K8S_UNREACHABLE';
      });
    } finally {
      await kube.startApiServer();
    }
    await eventually('the object is deleted once the API server is back', async () => (await getEndpoint(kube, 'offline')) === undefined, 40_000);
    assert.equal(running.agent.status().endpointObjects?.writer.pendingWrites, 0);
    const del = await kube.kubectl(['delete', 'pod', 'offline', '-n', 'default', '--grace-period=0', '--force', '--ignore-not-found']);
    assert.equal(del.code, 0, del.stderr);
  });

  await t.test('a pod deleted while the agent was down has its object removed after the restart; a kept pod keeps its object unwritten', async () => {
    await kubelet.runPod('db', { labels: { app: 'db' } });
    await kubelet.runPod('gone', { labels: { app: 'gone' } });
    await eventually('both objects are ready', async () => (await getEndpoint(kube, 'db'))?.status.state === 'ready' && (await getEndpoint(kube, 'gone'))?.status.state === 'ready');
    const dbRv = (await getEndpoint(kube, 'db'))?.metadata.resourceVersion;
    await node.stopAgent();
    // No agent to answer CNI DEL: the pod's network and object go anyway, as when a node's agent is away.
    await kubelet.deletePod({ namespace: 'default', name: 'gone' }).catch(() => undefined);
    assert.ok(await getEndpoint(kube, 'gone'), 'nothing removes it while the agent is down (no controller manager here)');
    running = await start();
    await eventually('the stale object is deleted', async () => (await getEndpoint(kube, 'gone')) === undefined);
    assert.equal(running.agent.status().endpointObjects?.writer.adopted, true);
    await eventually("this node's own stray object (no local pod) is deleted too", async () => (await getEndpoint(kube, 'ghost')) === undefined);
    await sleep(1_000);
    assert.equal((await getEndpoint(kube, 'db'))?.metadata.resourceVersion, dbRv, 'the kept pod\'s object was adopted, not rewritten');
  });
});
