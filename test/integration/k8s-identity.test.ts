/**
 * Cluster-wide identities against a real kube-apiserver and etcd
 * (src/devcluster/kube-cluster.ts): two allocators for two nodes allocating
 * the same label sets at the same time agree on every number and never give
 * one number to two sets; the Lease holder's GC deletes what nobody uses
 * after the grace period and keeps what is used, while a GC without the
 * Lease deletes nothing; leadership moves when the holder stops or dies; a
 * new label set is refused (coded) while the API server is down and known
 * ones still resolve; an identity deleted while in use comes back. Node B
 * runs as the `meshd` ServiceAccount with only install/rbac.yaml's rights.
 * Last, a whole agent in Kubernetes mode gives its pod the number of the
 * pod's MeshdIdentity, as `meshd identity list` shows.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { z } from 'zod';
import { IdentityGC } from '../../src/identity/identity-gc.js';
import { IDENTITIES_PATH, IDENTITY_KEYS_PATH, identityKeyName, KubeIdentityAllocator, type KubeIdentityAllocatorOptions } from '../../src/identity/kube-allocator.js';
import type { Identity } from '../../src/identity/allocator.js';
import { LabelSet, podLabels } from '../../src/identity/labels.js';
import { reservedLabel } from '../../src/identity/reserved.js';
import { KubeApiError, KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { isMeshdError } from '../../src/util/errors.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startKubeCluster, type KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { eventually } from '../helpers/kube-nodes.js';

const clientFor = (kubeconfigPath: string) => new KubeClient(resolveKubeConfig({ kubeconfigPath, env: {} }).kubeConfig);

async function allocator(t: { after(fn: () => Promise<void>): void }, client: KubeClient, nodeName: string, extra: Partial<KubeIdentityAllocatorOptions> = {}): Promise<KubeIdentityAllocator> {
  const a = new KubeIdentityAllocator({ client, nodeName, heartbeatMs: 300, backoff: { initialMs: 100, maxMs: 1_000 }, ...extra });
  t.after(() => a.stop());
  await a.start();
  return a;
}

async function exists(client: KubeClient, path: string): Promise<boolean> {
  try {
    await client.getJson(path);
    return true;
  } catch (e) {
    if (e instanceof KubeApiError && e.status === 404) return false;
    throw e;
  }
}

async function installCrds(kube: KubeCluster): Promise<void> {
  await kube.apply(readFileSync(repoPath('install', 'crds', 'meshd.io_meshdidentities.yaml'), 'utf8'));
  const r = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/meshdidentities.meshd.io', 'crd/meshdidentitykeys.meshd.io']);
  assert.equal(r.code, 0, r.stderr);
}

const set = (app: string): LabelSet => podLabels({ namespace: 'default', labels: { app } });

test('cluster-wide identities against a real API server', async (t) => {
  const kube = await startKubeCluster({ t });
  await installCrds(kube);
  await kube.apply(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'));
  const admin = clientFor(kube.kubeconfigPath);
  const agentB = clientFor((await kube.serviceAccountKubeconfig('kube-system', 'meshd')).kubeconfigPath);

  const a = await allocator(t, admin, 'node-a');
  const b = await allocator(t, agentB, 'node-b');

  await t.test('two nodes allocating overlapping label sets at once agree on every number, and no number has two sets', async () => {
    const numbers = new Map<string, number>();
    for (let round = 0; round < 12; round++) {
      // A takes sets 0..5, B takes 2..7 of this round (fresh, so every round races to create), in shuffled order.
      const names = Array.from({ length: 8 }, (_, i) => `r${round}-s${i}`);
      const shuffle = (xs: string[]) => xs.map((x) => [Math.random(), x] as const).sort((p, q) => p[0] - q[0]).map(([, x]) => x);
      const work: Array<Promise<[string, 'a' | 'b', Identity]>> = [];
      for (const n of shuffle(names.slice(0, 6))) work.push(a.allocate(set(n)).then((i) => [n, 'a', i]));
      for (const n of shuffle(names.slice(2))) work.push(b.allocate(set(n)).then((i) => [n, 'b', i]));
      // The same set twice from one node at once: one request, two references.
      work.push(a.allocate(set(names[3] ?? '')).then((i) => [names[3] ?? '', 'a', i]));
      for (const [name, , ident] of await Promise.all(work)) {
        assert.equal(ident.scope, 'cluster');
        assert.ok(ident.id >= 256 && ident.id <= 0xffff, `cluster range: ${ident.id}`);
        const seen = numbers.get(name);
        if (seen !== undefined) assert.equal(ident.id, seen, `${name}: both nodes got the same number`);
        numbers.set(name, ident.id);
      }
    }
    const distinct = new Set(numbers.values());
    assert.equal(distinct.size, numbers.size, 'no two label sets share a number');
    // The store holds exactly one identity per label set: the losers' claims are gone.
    const list = await kube.kubectl(['get', 'meshdidentities', '-o', 'json']);
    assert.equal(list.code, 0, list.stderr);
    const items: Array<{ metadata: { name: string }; spec: { key: string } }> = JSON.parse(list.stdout).items;
    for (const [name, id] of numbers) {
      const holders = items.filter((i) => i.spec.key === identityKeyName(set(name)));
      assert.deepEqual(holders.map((h) => h.metadata.name), [String(id)], `${name}: one MeshdIdentity`);
    }
    // Each node sees the other's identities through its watch.
    await eventually('both caches hold every identity', () => [...numbers.values()].every((id) => a.get(id) !== undefined && b.get(id) !== undefined));
    assert.equal(a.references().get(numbers.get('r0-s3') ?? -1), 2, 'two local holders of r0-s3 on node A');
    // Drop every reference, so the next test's GC has many identities to collect.
    for (const node of [a, b]) for (const [id, n] of [...node.references()]) for (let i = 0; i < n; i++) node.release(id);
    assert.equal(a.references().size + b.references().size, 0);
  });

  await t.test('the Lease holder collects an identity released everywhere after the grace period; a used one stays; the other GC deletes nothing', async (t2) => {
    const graceMs = 1_500;
    const gcOpts = { namespace: 'kube-system', graceMs, retryMs: 200, leaseDurationMs: 2_000, intervalMs: 300 };
    const g1 = new IdentityGC({ client: admin, holder: 'node-a', ...gcOpts });
    g1.start();
    await eventually('node-a holds the Lease', () => g1.isLeader());
    const g2 = new IdentityGC({ client: agentB, holder: 'node-b', ...gcOpts });
    t2.after(() => Promise.all([g1.stop(), g2.stop()]).then(() => undefined));
    g2.start();

    const gone = await a.allocate(set('gc-gone'));
    assert.equal((await b.allocate(set('gc-gone'))).id, gone.id);
    const kept = await b.allocate(set('gc-kept'));
    a.release(gone.id);
    b.release(gone.id);
    const path = `${IDENTITIES_PATH}/${gone.id}`;
    const keyPath = `${IDENTITY_KEYS_PATH}/${identityKeyName(gone.labels)}`;
    const releasedAt = Date.now();
    await eventually('the released identity is deleted', async () => !(await exists(admin, path)));
    assert.ok(Date.now() - releasedAt >= graceMs - 200, `not before the grace period (${Date.now() - releasedAt} ms)`);
    await eventually('its key is deleted', async () => !(await exists(admin, keyPath)));
    await eventually('the watches forget it', () => a.get(gone.id) === undefined && b.get(gone.id) === undefined);
    // Several grace periods later the referenced one is still there, and still resolves from the cache.
    await new Promise((r) => setTimeout(r, 2 * graceMs));
    assert.ok(await exists(admin, `${IDENTITIES_PATH}/${kept.id}`), 'a referenced identity stays');
    assert.equal(a.get(kept.id)?.labels.key, kept.labels.key);
    assert.ok(g1.deleted.identities.includes(gone.id));
    assert.ok(!g1.deleted.identities.includes(kept.id));
    // Everything the first test released was collected as well, by the holder.
    await eventually('only the kept identity is left', async () => {
      const r = await kube.kubectl(['get', 'meshdidentities', '-o', 'name']);
      return r.stdout.trim() === `meshdidentity.meshd.io/${kept.id}`;
    });
    assert.equal(g2.isLeader(), false);
    assert.deepEqual(g2.deleted, { identities: [], keys: [] }, 'the GC without the Lease deleted nothing');
    assert.deepEqual(await g2.sweep(), { identities: [], keys: [] });

    await t2.test('leadership moves to node-b when node-a stops, and node-b collects from then on', async () => {
      await g1.stop();
      await eventually('node-b holds the Lease', () => g2.isLeader(), 5_000);
      b.release(kept.id);
      await eventually('node-b collects what node-a had been keeping', async () => !(await exists(admin, `${IDENTITIES_PATH}/${kept.id}`)));
      assert.ok(g2.deleted.identities.includes(kept.id));
      assert.ok(!g1.deleted.identities.includes(kept.id));
    });

    await t2.test('a holder that dies without giving the Lease up loses it once it lapses', async () => {
      const g3 = new IdentityGC({ client: admin, holder: 'node-c', ...gcOpts });
      t2.after(() => g3.stop());
      g3.start();
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(g3.isLeader(), false, 'node-b still renews');
      const died = Date.now();
      await g2.stop({ release: false });
      await eventually('node-c takes over', () => g3.isLeader(), 10_000);
      assert.ok(Date.now() - died >= 1_500, `only after the lease duration (${Date.now() - died} ms)`);
      const lease = await kube.kubectl(['get', 'lease', 'meshd-identity-gc', '-n', 'kube-system', '-o', 'jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}']);
      assert.equal(lease.stdout, 'node-c 2');
    });
  });

  await t.test('an identity a node still uses that is deleted from the store is created again with the same number and labels', async () => {
    const used = await a.allocate(set('deleted-in-use'));
    const del = await kube.kubectl(['delete', 'meshdidentity', String(used.id)]);
    assert.equal(del.code, 0, del.stderr);
    await eventually('the identity is back', async () => {
      const r = await kube.kubectl(['get', 'meshdidentity', String(used.id), '-o', 'jsonpath={.spec.key}']);
      return r.code === 0 && r.stdout === identityKeyName(used.labels);
    });
    assert.equal(a.get(used.id)?.labels.key, used.labels.key, 'node A never dropped it');
    assert.equal((await b.allocate(set('deleted-in-use'))).id, used.id, 'node B gets the same number');
  });

  await t.test('a node references only what its own endpoints use (and node identities); the GC keeps those and takes one a grace period after no endpoint uses it', async (t2) => {
    const graceMs = 1_500;
    const gc = new IdentityGC({ client: admin, holder: 'node-c', namespace: 'kube-system', graceMs, retryMs: 200, leaseDurationMs: 2_000, intervalMs: 300 });
    t2.after(() => gc.stop());
    gc.start();
    const localC = new Set<number>();
    const localD = new Set<number>();
    const c = await allocator(t2, clientFor(kube.kubeconfigPath), 'node-c', { localCheckMs: 100 });
    const d = await allocator(t2, clientFor(kube.kubeconfigPath), 'node-d', { localCheckMs: 100 });
    c.setLocalUsers(() => localC);
    d.setLocalUsers(() => localD);
    const refsOf = async (id: number): Promise<string[]> => {
      const r = await kube.kubectl(['get', 'meshdidentity', String(id), '-o', 'json']);
      if (r.code !== 0) return [];
      return Object.keys(z.object({ status: z.object({ references: z.record(z.string(), z.string()).optional() }).optional() }).parse(JSON.parse(r.stdout)).status?.references ?? {}).sort();
    };

    // node-c's pod, seen by node-d through node-c's endpoint object, and the other way round.
    const onC = await c.allocate(set('local-c'));
    localC.add(onC.id);
    // As an endpoint object of another node reaches the engine: its identity is in the cache already.
    await eventually('node-d has local-c from its watches', () => d.lookup(set('local-c'))?.id === onC.id);
    assert.equal((await d.allocate(set('local-c'))).id, onC.id);
    const onD = await d.allocate(set('local-d'));
    localD.add(onD.id);
    await eventually('node-c has local-d from its watches', () => c.lookup(set('local-d'))?.id === onD.id);
    assert.equal((await c.allocate(set('local-d'))).id, onD.id);
    // A remote node's identity: no endpoint uses it, every node holding it references it.
    const nodeX = LabelSet.from([reservedLabel('remote-node'), { source: 'k8s', key: 'kubernetes.io/hostname', value: 'node-x' }]);
    const nx = await c.allocate(nodeX);
    assert.equal((await d.allocate(nodeX)).id, nx.id);

    // Several heartbeats later: each pod identity is referenced by its own node only.
    await new Promise((r) => setTimeout(r, 1_200));
    assert.deepEqual(await refsOf(onC.id), ['node-c']);
    assert.deepEqual(await refsOf(onD.id), ['node-d']);
    assert.deepEqual(await refsOf(nx.id), ['node-c', 'node-d']);
    assert.deepEqual([...d.referencedIdentities()].sort(), [onD.id, nx.id].sort());

    // node-d's own pod now uses local-c too: referenced within a local check, not a heartbeat.
    localD.add(onC.id);
    await eventually('node-d references local-c', async () => (await refsOf(onC.id)).join() === 'node-c,node-d', 3_000);

    // Both pods of local-c go; node-d still sees an endpoint object naming it. Neither node confirms it any more
    // (no write: the references go stale), and the GC collects it a grace period after its last confirmation.
    localC.delete(onC.id);
    c.release(onC.id);
    localD.delete(onC.id);
    const lastUse = Date.now();
    await new Promise((r) => setTimeout(r, 400)); // a confirmation already in flight lands
    const stale = await refsOf(onC.id);
    await new Promise((r) => setTimeout(r, 600));
    assert.deepEqual(await refsOf(onC.id), stale, 'nobody confirms local-c');
    await eventually('the GC deletes local-c', async () => !(await exists(admin, `${IDENTITIES_PATH}/${onC.id}`)), 10_000);
    assert.ok(Date.now() - lastUse >= graceMs - 400, `not before the grace period (${Date.now() - lastUse} ms)`);
    // node-d does not create it again (no local endpoint uses it) ...
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(await exists(admin, `${IDENTITIES_PATH}/${onC.id}`), false);
    // ... while what a local endpoint uses stayed through several grace periods.
    assert.deepEqual(await refsOf(onD.id), ['node-d']);
    assert.ok(gc.deleted.identities.includes(onC.id));
    assert.ok(!gc.deleted.identities.includes(onD.id) && !gc.deleted.identities.includes(nx.id));
  });

  await t.test('API server down: a new label set is refused with a coded error, a known one still resolves', async () => {
    const known = await a.allocate(set('offline-known'));
    await kube.stopApiServer();
    try {
      await assert.rejects(a.allocate(set('offline-new')), (e) => isMeshdError(e, 'MESHD_IDENTITY_ALLOCATION') && e.kind === 'unavailable');
      assert.equal((await a.allocate(set('offline-known'))).id, known.id);
      assert.equal((await b.allocate(set('offline-known'))).id, known.id, 'node B knows it from its watch');
    } finally {
      await kube.startApiServer();
    }
    const fresh = await a.allocate(set('offline-new'));
    assert.equal((await b.allocate(set('offline-new'))).id, fresh.id);
  });
});

test('meshd agent in Kubernetes mode: a pod gets the number of its MeshdIdentity, and meshd identity list shows it', async (t) => {
  requirePrivileges();
  // Cleaned up before the cluster closes (hooks run in order): the pod goes while the agent still runs.
  const node = new AgentNode({ nodeName: 'node-k' });
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true }); // cleanup() restarts a stopped agent in standalone mode for CNI DEL
  const kube = await startKubeCluster({ t });
  await installCrds(kube);
  await kube.ensureDefaultServiceAccount('default');
  await kube.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default', labels: { app: 'web' } }, spec: { nodeName: 'node-k', containers: [{ name: 'c', image: 'example.invalid/c' }] } });
  const running = await node.start({ standaloneDir: undefined, kubeconfigPath: kube.kubeconfigPath, kubeSource: { batchDelayMs: 10, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 } });
  assert.ok(running.identities, 'identityAllocationMode=crd is the default in Kubernetes mode');
  await node.addPod('web');

  const cli = async (...args: string[]): Promise<unknown> => {
    const { stdout } = await promisify(execFile)(process.execPath, [repoPath('bin', 'meshd.mjs'), ...args, '-o', 'json', '--api-socket', running.agent.socketPath('meshd')]);
    return JSON.parse(stdout);
  };
  const Endpoints = z.object({ endpoints: z.array(z.object({ id: z.string(), identity: z.number() })) });
  let id = 0;
  await eventually('the pod has a cluster identity', async () => {
    id = Endpoints.parse(await cli('endpoint', 'list')).endpoints.find((e) => e.id === 'default/web')?.identity ?? 0;
    return id >= 256;
  });
  const obj = await kube.kubectl(['get', 'meshdidentity', String(id), '-o', 'json']);
  assert.equal(obj.code, 0, `a MeshdIdentity named ${id} exists: ${obj.stderr}`);
  const stored = z.object({ spec: z.object({ labels: z.array(z.string()) }), status: z.object({ references: z.record(z.string(), z.string()) }) }).parse(JSON.parse(obj.stdout));
  assert.ok(stored.spec.labels.includes('k8s:app=web'), stored.spec.labels.join(' '));
  assert.ok(stored.status.references['node-k'], 'the node references it');
  const listed = z.object({ identities: z.array(z.object({ id: z.number(), labels: z.array(z.string()), scope: z.string() })) }).parse(await cli('identity', 'list'));
  const shown = listed.identities.find((i) => i.id === id);
  assert.deepEqual(shown?.labels.slice().sort(), stored.spec.labels.slice().sort());
  assert.equal(shown?.scope, 'cluster');
});
