/**
 * Two meshd agents (node-a, node-b) against one real kube-apiserver and etcd,
 * each with its own pins, state, cgroup and pod CIDR, pods run by a test
 * kubelet per node (test/helpers/kube-nodes.ts), both agents running as the
 * meshd ServiceAccount with install/rbac.yaml's rights:
 *
 * - they agree on every identity, and it is the MeshdIdentity's number;
 * - a CNP applied with `kubectl apply` is enforced on the next connection on
 *   both nodes, and both nodes' entries in its status say so;
 * - a policy selects peers of the other node by labels (ipcache from the
 *   Pod watch, the same numbers on both sides);
 * - an invalid edit is rejected on both nodes with the field path, and the
 *   previous version stays enforced, the kernel's rows unchanged;
 * - a relabelled pod changes identity on both nodes, in the agents and in
 *   the pinned ipcache, and the policies follow the new labels;
 * - the API server stopped for 30 s under live traffic: connections live,
 *   nothing flushed, `meshd status` says disconnected and for how long, both
 *   agents catch up with a change made right after it returns.
 *
 * One cluster and one pair of agents serve the whole file; the subtests run
 * in order and build on each other's policies.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { renderSource } from '../../src/cli/node.js';
import { Identity, IpcacheValue, PolicyKey } from '../../src/datapath/maps.js';
import { identityKeyName } from '../../src/identity/kube-allocator.js';
import { podLabels } from '../../src/identity/labels.js';
import type { KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { startKubeNodes, until, type EndpointView, type KubeNode } from '../helpers/kube-nodes.js';
import type { KubeletPod } from '../../src/devcluster/kubelet.js';
import { echoServer, longLivedConnection, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

/** The number: the API server is gone this long under live traffic. */
const OUTAGE_MS = 30_000;
/** How long a probe the policy denies waits before it counts as dropped. */
const DENIED_MS = 700;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cnp = (name: string, fromApps: string[], port: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name, namespace: 'default' },
  spec: {
    endpointSelector: { matchLabels: { app: 'server' } },
    ingress: [{ fromEndpoints: [{ matchExpressions: [{ key: 'app', operator: 'In', values: fromApps }] }], toPorts: [{ ports: [{ port, protocol: 'TCP' }] }], ...extra }],
  },
});

const statusEntry = z.looseObject({
  ok: z.boolean(),
  enforcing: z.boolean().optional(),
  observedGeneration: z.number(),
  problems: z.array(z.object({ path: z.string(), code: z.string(), message: z.string() })).optional(),
});
const cnpObject = z.looseObject({
  metadata: z.looseObject({ generation: z.number() }),
  status: z.looseObject({ nodes: z.record(z.string(), statusEntry).optional() }).optional(),
});
type StatusEntry = z.infer<typeof statusEntry>;

async function getCnp(kube: KubeCluster, name: string): Promise<z.infer<typeof cnpObject>> {
  const r = await kube.kubectl(['get', 'cnp', name, '-o', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return cnpObject.parse(JSON.parse(r.stdout));
}

/** Waits until every node's status entry of the CNP describes `generation` and passes `ok`; returns the entries. */
async function statusOnAll(kube: KubeCluster, name: string, nodes: readonly KubeNode[], generation: number, want: (e: StatusEntry) => boolean): Promise<Record<string, StatusEntry>> {
  return until(`status of cnp/${name} at generation ${generation} on ${nodes.map((n) => n.name).join(', ')}`, async () => {
    const o = await getCnp(kube, name);
    if (o.metadata.generation !== generation) return undefined;
    const entries: Record<string, StatusEntry> = {};
    for (const n of nodes) {
      const e = o.status?.nodes?.[n.name];
      if (e === undefined || e.observedGeneration !== generation || !want(e)) return undefined;
      entries[n.name] = e;
    }
    return entries;
  });
}

const MeshdIdentities = z.object({ items: z.array(z.object({ metadata: z.object({ name: z.string() }), spec: z.object({ labels: z.array(z.string()) }) })) });

test('two agents against one API server', async (t) => {
  requirePrivileges();
  const { kube, nodes, defer } = await startKubeNodes(t, ['node-a', 'node-b']);
  const [a, b] = nodes;
  assert.ok(a && b);
  const run = (n: KubeNode, name: string, app: string, containerPorts?: number[]) => n.kubelet.runPod(name, { labels: { app }, ...(containerPorts ? { containerPorts } : {}) });
  const pods = {
    aServer: await run(a, 'a-server', 'server', [8080, 9090]),
    aClient: await run(a, 'a-client', 'client'),
    aOther: await run(a, 'a-other', 'other'),
    bServer: await run(b, 'b-server', 'server', [8080, 9090]),
    bClient: await run(b, 'b-client', 'client'),
    bOther: await run(b, 'b-other', 'other'),
    bMover: await run(b, 'b-mover', 'other'),
  };
  const after = { after: defer };
  await echoServer(after, pods.aServer.ns, [8080, 9090]);
  await echoServer(after, pods.bServer.ns, [8080, 9090]);
  const all = Object.values(pods);
  const appOf = (p: KubeletPod) => (p === pods.bMover ? 'other' : (p.name.split('-')[1] ?? '')); // before the relabel
  const nodeOf = (p: KubeletPod) => (p.name.startsWith('a-') ? a : b);
  const connect = (from: KubeletPod, to: KubeletPod, port: number, denied = false) => tryConnect(from.ns, to.ip, port, denied ? DENIED_MS : 1_500);

  // Both nodes know every pod (their own from CNI, the other's from the Pod watch) before the tests look.
  await until('both agents to have every pod in their pinned ipcache', () => {
    const missing = nodes.flatMap((n) => all.filter((p) => n.pinnedIdentityOf(p.ip) === undefined).map((p) => `${p.name} (${p.ip}) on ${n.name}`));
    if (missing.length > 0) throw new Error(`missing: ${missing.join(', ')}`);
    return true;
  });

  await t.test('both agents give every label set the same identity, the MeshdIdentity number, and no number names two sets', async () => {
    const listed = MeshdIdentities.parse(JSON.parse((await kube.kubectl(['get', 'meshdidentities', '-o', 'json'])).stdout)).items;
    const stored = new Map(listed.map((i) => [Number(i.metadata.name), [...i.spec.labels].sort()]));
    const [epsA, epsB, idsA, idsB] = await Promise.all([a.endpoints(), b.endpoints(), a.identities(), b.identities()]);
    const idOfApp = new Map<string, number>();
    for (const p of all) {
      const eps: EndpointView[] = nodeOf(p) === a ? epsA : epsB;
      const local = eps.find((e) => e.id === `default/${p.name}`);
      assert.ok(local, `${p.name} is an endpoint of its node`);
      const onA: number | undefined = a.pinnedIdentityOf(p.ip);
      const onB: number | undefined = b.pinnedIdentityOf(p.ip);
      assert.equal(onA, local.identity, `${p.name}: node-a's ipcache agrees with its node's endpoint`);
      assert.equal(onB, local.identity, `${p.name}: node-b's ipcache agrees with its node's endpoint`);
      assert.ok(local.identity >= 256 && local.identity <= 0xffff, `${p.name}: a cluster identity (${local.identity})`);
      const labels = stored.get(local.identity);
      assert.ok(labels?.includes(`k8s:app=${appOf(p)}`), `${p.name}: MeshdIdentity ${local.identity} holds its labels (${labels?.join(' ')})`);
      for (const [node, ids] of [['node-a', idsA], ['node-b', idsB]] as const) {
        assert.deepEqual(ids.find((i) => i.id === local.identity)?.labels.slice().sort(), labels, `${node} lists ${local.identity} with the stored labels`);
      }
      const seen = idOfApp.get(appOf(p));
      if (seen !== undefined) assert.equal(local.identity, seen, `${p.name}: the same labels, the same number on both nodes`);
      idOfApp.set(appOf(p), local.identity);
    }
    assert.equal(new Set(idOfApp.values()).size, idOfApp.size, 'three label sets, three numbers');
    // Across everything both agents list: one label set per number, one number per label set.
    const byId = new Map<number, string>();
    const byLabels = new Map<string, number>();
    for (const i of [...idsA, ...idsB].filter((x) => x.scope === 'cluster')) {
      const key = [...i.labels].sort().join(',');
      assert.equal(byId.get(i.id) ?? key, key, `identity ${i.id} names one label set`);
      assert.equal(byLabels.get(key) ?? i.id, i.id, `labels ${key} have one number`);
      byId.set(i.id, key);
      byLabels.set(key, i.id);
      assert.deepEqual(stored.get(i.id), [...i.labels].sort(), `identity ${i.id} as stored`);
    }
  });

  await t.test('a CNP applied with kubectl apply is enforced on the next connection on both nodes, and both nodes report it in its status', async () => {
    // No policy yet: everything connects.
    assert.equal(await connect(pods.aOther, pods.aServer, 8080), 'connected');
    assert.equal(await connect(pods.bOther, pods.bServer, 8080), 'connected');
    await kube.apply(cnp('servers-in', ['client'], '8080'));
    const entries = await statusOnAll(kube, 'servers-in', nodes, 1, (e) => e.ok && e.enforcing === true);
    assert.deepEqual(Object.keys(entries).sort(), ['node-a', 'node-b']);
    // Status says enforcing: the very next connection on each node follows the policy.
    assert.equal(await connect(pods.aOther, pods.aServer, 8080, true), 'timeout', 'node-a: default-deny ingress');
    assert.equal(await connect(pods.bOther, pods.bServer, 8080, true), 'timeout', 'node-b: default-deny ingress');
    assert.equal(await connect(pods.aClient, pods.aServer, 8080), 'connected', 'node-a: allowed from app=client');
    assert.equal(await connect(pods.bClient, pods.bServer, 8080), 'connected', 'node-b: allowed from app=client');
    assert.equal(await connect(pods.aClient, pods.aServer, 9090, true), 'timeout', 'node-a: only the allowed port');
  });

  await t.test('cross-node by labels: a pod on the other node labelled app=client connects, one labelled app=other does not', async () => {
    const since = process.hrtime.bigint();
    assert.equal(await connect(pods.bClient, pods.aServer, 8080), 'connected', 'node-b client → node-a server');
    assert.equal(await connect(pods.aClient, pods.bServer, 8080), 'connected', 'node-a client → node-b server');
    assert.equal(await connect(pods.bOther, pods.aServer, 8080, true), 'timeout', 'node-b other → node-a server');
    assert.equal(await connect(pods.aOther, pods.bServer, 8080, true), 'timeout', 'node-a other → node-b server');
    // The server's node judged the remote peer by the identity its ipcache holds for the peer's address.
    await until('node-a to report the drop of node-b other', () => (a.agent.dropReasons(since, pods.bOther.ip, pods.aServer.ip, 8080).length > 0 ? true : undefined), 5_000);
    assert.deepEqual(b.agent.dropReasons(since, pods.bOther.ip, pods.aServer.ip, 8080), [], 'node-b let its pod send: the drop is node-a ingress policy');
  });

  await t.test('an identity another agent creates or deletes in the store reaches both kernels without any other change', async () => {
    // What a peer agent's allocation, or its claim that lost a race and is deleted again, looks like
    // to these two: a MeshdIdentity appears and goes, and no Pod or policy event comes with it.
    const labels = podLabels({ namespace: 'default', labels: { app: 'client', tier: 'elsewhere' } });
    const taken = new Set(MeshdIdentities.parse(JSON.parse((await kube.kubectl(['get', 'meshdidentities', '-o', 'json'])).stdout)).items.map((i) => Number(i.metadata.name)));
    const id = [...Array(1000).keys()].map((i) => 60_000 + i).find((n) => !taken.has(n)) ?? 0;
    const rowsFor = (n: KubeNode) => Object.values(n.agent.pinnedRows(['meshd_policy', 'meshd_pol_exact'])).flat().filter((r) => PolicyKey.decode(Buffer.from(r.split('=')[0] ?? '', 'hex')).identity === id);
    await kube.apply({ apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdIdentity', metadata: { name: String(id) }, spec: { labels: labels.toStrings(), key: identityKeyName(labels) } });
    // servers-in selects app=client: each node's server admits the new identity on 8080.
    await until(`both kernels to admit identity ${id}`, () => (nodes.every((n) => rowsFor(n).length === 1) ? true : undefined));
    for (const n of nodes) assert.ok((await n.identities()).some((i) => i.id === id), `${n.name} lists ${id}`);
    const del = await kube.kubectl(['delete', 'meshdidentity', String(id)]);
    assert.equal(del.code, 0, del.stderr);
    await until(`both kernels to forget identity ${id}`, () => (nodes.every((n) => rowsFor(n).length === 0) ? true : undefined));
    for (const n of nodes) assert.ok(!(await n.identities()).some((i) => i.id === id), `${n.name} no longer lists ${id}`);
  });

  await t.test('an invalid CNP over a valid one: rejected on both nodes with the field path, the previous version stays enforced', async () => {
    const policyRows = (n: KubeNode) => n.agent.pinnedRows(['meshd_policy', 'meshd_pol_exact']);
    const before = { a: policyRows(a), b: policyRows(b) };
    // The CRD's schema allows a string port; meshd refuses this one. Were it accepted, app=other would connect.
    await kube.apply(cnp('servers-in', ['client', 'other'], 'not a port!'));
    const entries = await statusOnAll(kube, 'servers-in', nodes, 2, (e) => !e.ok);
    for (const [node, e] of Object.entries(entries)) {
      assert.equal(e.enforcing, true, `${node}: generation 1 is still enforced`);
      assert.deepEqual(e.problems?.map((p) => [p.path, p.code]), [['spec.ingress[0].toPorts[0].ports[0].port', 'INVALID_PORT']], node);
    }
    await sleep(300);
    assert.equal(await connect(pods.aOther, pods.aServer, 8080, true), 'timeout', 'node-a enforces generation 1');
    assert.equal(await connect(pods.bOther, pods.bServer, 8080, true), 'timeout', 'node-b enforces generation 1');
    assert.equal(await connect(pods.bClient, pods.aServer, 8080), 'connected');
    assert.deepEqual(policyRows(a), before.a, 'node-a: pinned policy rows unchanged');
    assert.deepEqual(policyRows(b), before.b, 'node-b: pinned policy rows unchanged');

    // An unknown field: the API server refuses the object itself, naming the field; nothing changes.
    const r = await kube.kubectl(['apply', '-f', '-'], { input: JSON.stringify(cnp('servers-in', ['client', 'other'], '8080', { fromEndpointz: [] })) });
    assert.notEqual(r.code, 0, 'kubectl apply of an unknown field fails');
    assert.match(r.stderr, /fromEndpointz/, 'the refusal names the field');
    assert.equal((await getCnp(kube, 'servers-in')).metadata.generation, 2, 'the stored object is unchanged');

    // Fixed: accepted again on both nodes.
    await kube.apply(cnp('servers-in', ['client'], '8080'));
    const fixed = await statusOnAll(kube, 'servers-in', nodes, 3, (e) => e.ok);
    for (const e of Object.values(fixed)) assert.equal(e.problems, undefined);
    assert.deepEqual(policyRows(a), before.a, 'node-a: the fixed version is generation 1 again');
    assert.deepEqual(policyRows(b), before.b);
  });

  await t.test('a relabelled pod changes identity on both nodes, in the agents and the pinned ipcache, and the policies follow', async () => {
    await kube.apply(cnp('servers-from-other', ['other'], '9090'));
    await statusOnAll(kube, 'servers-from-other', nodes, 1, (e) => e.ok);
    const old = b.pinnedIdentityOf(pods.bMover.ip);
    assert.ok(old !== undefined);
    assert.equal(a.pinnedIdentityOf(pods.bMover.ip), old);
    assert.equal(await connect(pods.bMover, pods.aServer, 9090), 'connected', 'app=other may use 9090 (cross-node)');
    assert.equal(await connect(pods.bMover, pods.bServer, 9090), 'connected', 'app=other may use 9090 (same node)');
    assert.equal(await connect(pods.bMover, pods.aServer, 8080, true), 'timeout');

    const r = await kube.kubectl(['label', 'pod', 'b-mover', 'app=client', 'tier=moved', '--overwrite']);
    assert.equal(r.code, 0, r.stderr);
    const moved = await until('node-b to give b-mover a new identity', async () => {
      const id = (await b.endpoints()).find((e) => e.id === 'default/b-mover')?.identity;
      return id !== undefined && id !== old ? id : undefined;
    });
    assert.ok(moved >= 256 && moved <= 0xffff, `a cluster identity (${moved})`);
    await until('both pinned ipcaches to carry the new number for its address', () => (a.pinnedIdentityOf(pods.bMover.ip) === moved && b.pinnedIdentityOf(pods.bMover.ip) === moved ? true : undefined));
    const stored = await kube.kubectl(['get', 'meshdidentity', String(moved), '-o', 'jsonpath={.spec.labels}']);
    assert.equal(stored.code, 0, stored.stderr);
    const labels = z.array(z.string()).parse(JSON.parse(stored.stdout));
    assert.ok(labels.includes('k8s:app=client') && labels.includes('k8s:tier=moved'), labels.join(' '));
    for (const n of nodes) assert.deepEqual((await n.identities()).find((i) => i.id === moved)?.labels.slice().sort(), [...labels].sort(), `${n.name} lists the new identity`);
    assert.ok(!all.filter((p) => p !== pods.bMover).some((p) => a.pinnedIdentityOf(p.ip) === moved), 'a label set of its own');

    // The policy on app=other no longer lets it in; the one on app=client does, on both nodes.
    await until('app=client policy to admit it on node-a', async () => ((await connect(pods.bMover, pods.aServer, 8080, true)) === 'connected' ? true : undefined));
    assert.equal(await connect(pods.bMover, pods.bServer, 8080), 'connected', 'node-b: app=client on 8080');
    assert.equal(await connect(pods.bMover, pods.aServer, 9090, true), 'timeout', 'node-a: no longer app=other');
    assert.equal(await connect(pods.bMover, pods.bServer, 9090, true), 'timeout', 'node-b: no longer app=other');
    assert.equal(await connect(pods.bOther, pods.aServer, 9090), 'connected', 'an unchanged app=other pod still may');
  });

  /**
   * Both nodes' pinned endpoint, policy and ipcache rows. Rows of the `host` identity are left out: they
   * follow the host's own addresses, which other programs on this machine may add or remove at any time.
   */
  const kernelRows = () =>
    nodes.map((n) => {
      const rows = n.agent.pinnedRows(['meshd_policy', 'meshd_pol_exact', 'meshd_ipcache', 'meshd_ipc_host', 'meshd_endpoints']);
      for (const m of ['meshd_ipcache', 'meshd_ipc_host']) rows[m] = (rows[m] ?? []).filter((r) => IpcacheValue.decode(Buffer.from(r.split('=')[1] ?? '', 'hex')).identity !== Identity.HOST);
      return rows;
    });

  await t.test(`API server stopped for ${OUTAGE_MS / 1000} s under live traffic: connections live, nothing flushed, status disconnected for as long, both agents catch up`, async (t2) => {
    const pairs: Array<[KubeletPod, KubeletPod]> = [
      [pods.aClient, pods.aServer],
      [pods.bClient, pods.aServer],
      [pods.aClient, pods.bServer],
      [pods.bClient, pods.bServer],
    ];
    const conns = await Promise.all(pairs.map(([from, to]) => longLivedConnection(after, from.ns, to.ip, 8080)));
    for (const c of conns) assert.ok(await c.ping(), 'the connection carries data');
    // From a quiet kernel: what the earlier subtests changed has been written.
    let kernelBefore = kernelRows();
    await until('both kernels to be quiet for a second', async () => {
      await sleep(1_000);
      const now = kernelRows();
      const quiet = JSON.stringify(now) === JSON.stringify(kernelBefore);
      kernelBefore = now;
      return quiet ? true : undefined;
    });
    const sourceOf = async (n: KubeNode) => {
      const s = (await n.status()).source;
      assert.ok(s.type === 'kubernetes', `${n.name}: a kubernetes source`);
      return s;
    };
    for (const n of nodes) assert.equal((await sourceOf(n)).state, 'connected', n.name);

    const stoppedAt = Date.now();
    await kube.stopApiServer();
    // kube-apiserver shuts down gracefully; the outage is counted from when it is gone.
    const goneAt = Date.now();
    const downSince = await Promise.all(nodes.map((n) => until(`${n.name} status to say disconnected`, async () => ((await sourceOf(n)).state === 'disconnected' ? (await sourceOf(n)).since : undefined), 10_000)));
    for (const s of downSince) assert.ok(Date.parse(s) >= stoppedAt - 1_000 && Date.parse(s) <= goneAt + 5_000, `since ${s}: when the first request failed`);

    let pings = 0;
    for (let i = 0; Date.now() - goneAt < OUTAGE_MS; i++) {
      for (const [j, c] of conns.entries()) assert.ok(await c.ping(), `ping ${i} on connection ${j} (${pairs[j]?.[0].name} → ${pairs[j]?.[1].name})`);
      pings += conns.length;
      if (i % 3 === 0) {
        assert.equal(await connect(pods.aOther, pods.aServer, 8080, true), 'timeout', 'a denied peer stays denied (node-a)');
        assert.equal(await connect(pods.aOther, pods.bServer, 8080, true), 'timeout', 'a denied peer stays denied (cross-node)');
      }
      for (const [k, n] of nodes.entries()) {
        const s = await sourceOf(n);
        assert.equal(s.state, 'disconnected', n.name);
        assert.equal(s.since, downSince[k], `${n.name}: since stays when the outage began`);
      }
      await sleep(1_000);
    }
    // How long it has been gone, as `meshd status` prints it.
    for (const [k, n] of nodes.entries()) {
      const now = Date.now();
      const line = renderSource(await sourceOf(n), now);
      const gone = Number(/disconnected for (\d+)s/.exec(line)?.[1] ?? -1);
      assert.equal(gone, Math.round((now - Date.parse(downSince[k] ?? '')) / 1000), `${n.name}: ${line}`);
      assert.ok(gone >= OUTAGE_MS / 1000 - 5, `${n.name}: gone about as long as the outage: ${line}`);
      assert.match(line, /last error MESHD_K8S_(UNREACHABLE|API_STATUS)/, n.name);
    }
    t2.diagnostic(`${pings} pings through a ${Date.now() - goneAt} ms outage (${goneAt - stoppedAt} ms to stop the API server)`);
    assert.deepEqual(kernelRows(), kernelBefore, 'nothing in either kernel changed during the outage');

    await kube.startApiServer();
    await Promise.all(nodes.map((n) => until(`${n.name} status to say connected`, async () => ((await sourceOf(n)).state === 'connected' ? true : undefined))));
    // Right after the API server returned: a change reaches both agents, so both resumed their watches.
    await kube.apply(cnp('servers-in', ['client', 'other'], '8080'));
    await statusOnAll(kube, 'servers-in', nodes, 4, (e) => e.ok && e.enforcing === true);
    await until('node-a to admit app=other', async () => ((await connect(pods.aOther, pods.aServer, 8080, true)) === 'connected' ? true : undefined));
    await until('node-b to admit app=other from node-a', async () => ((await connect(pods.aOther, pods.bServer, 8080, true)) === 'connected' ? true : undefined));
    for (const c of conns) assert.ok(await c.ping(), 'the established connections still carry data');
  });
});
