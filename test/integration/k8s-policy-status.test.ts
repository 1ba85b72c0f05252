/**
 * Policy status against a real kube-apiserver: an agent in Kubernetes mode,
 * running as the meshd ServiceAccount bound to install/rbac.yaml, registers
 * the CRDs itself and writes its node's entry in each policy's status: ok
 * with the observed generation, bumped by an edit; an edit the CRD accepts
 * but meshd refuses shows ok: false with the field path while the previous
 * version stays enforced in the kernel; another node's entry is never
 * touched; nothing is written when nothing changed. And the writer alone:
 * two nodes side by side, coalescing, retry after an outage.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { z } from 'zod';
import { KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { registerCrds } from '../../src/k8s/crds.js';
import type { KubeSourceOptions } from '../../src/k8s/kube-source.js';
import { PolicyStatusWriter } from '../../src/k8s/policy-status.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startKubeCluster, type KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { echoServer, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { until } from '../helpers/kube-nodes.js';

const FAST: Omit<KubeSourceOptions, 'client'> = { batchDelayMs: 10, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };

const entry = z.looseObject({
  ok: z.boolean(),
  enforcing: z.boolean().optional(),
  observedGeneration: z.number(),
  lastUpdated: z.string(),
  error: z.string().optional(),
  problems: z.array(z.object({ path: z.string(), code: z.string(), message: z.string() })).optional(),
});
const condition = z.looseObject({ type: z.string(), status: z.string(), message: z.string().optional(), lastTransitionTime: z.string().optional() });
const cnpObject = z.looseObject({
  metadata: z.looseObject({ generation: z.number() }),
  status: z.looseObject({ nodes: z.record(z.string(), entry).optional(), conditions: z.array(condition).optional() }).optional(),
});
const validOf = (o: z.infer<typeof cnpObject>) => o.status?.conditions?.find((c) => c.type === 'Valid');

async function getCnp(kube: KubeCluster, name: string): Promise<z.infer<typeof cnpObject>> {
  const r = await kube.kubectl(['get', 'cnp', name, '-o', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return cnpObject.parse(JSON.parse(r.stdout));
}


const policy = (apps: string[], port: string) => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'server-in', namespace: 'default' },
  spec: {
    endpointSelector: { matchLabels: { app: 'server' } },
    ingress: [{ fromEndpoints: [{ matchExpressions: [{ key: 'app', operator: 'In', values: apps }] }], toPorts: [{ ports: [{ port, protocol: 'TCP' }] }] }],
  },
});

test('each node writes its own policy status: accepted with the observed generation, rejected with the field path while the last good version is enforced', async (t) => {
  requirePrivileges();
  const node = new AgentNode({ nodeName: 'node-a' });
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true }); // cleanup() restarts a stopped agent in standalone mode for CNI DEL
  const kube = await startKubeCluster({ t });
  await kube.ensureDefaultServiceAccount('default');
  await kube.apply(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'));
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  await kube.apply(
    ['client', 'server', 'intruder'].map((name) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'default', labels: { app: name } },
      spec: { nodeName: node.config.nodeName, containers: [{ name: 'c', image: 'example.invalid/c' }] },
    })),
  );

  // No CRDs installed: the agent registers the policy and identity CRDs (with only the ServiceAccount's rights).
  const running = await node.start({ standaloneDir: undefined, kubeconfigPath: sa.kubeconfigPath, kubeSource: FAST, policyStatus: { coalesceMs: 20, backoff: { initialMs: 100, maxMs: 1_000 } } });
  const writer = running.policyStatus;
  assert.ok(writer);
  assert.equal((await kube.kubectl(['get', 'crd', 'ciliumnetworkpolicies.cilium.io'])).code, 0, 'the agent registered the CRD');
  await until('the source to serve CiliumNetworkPolicy', async () => {
    const src = running.agent.status().source;
    return src.type === 'kubernetes' && src.kinds.CiliumNetworkPolicy?.synced ? true : undefined;
  });

  const client = await node.addPod('client');
  const server = await node.addPod('server');
  const intruder = await node.addPod('intruder');
  await echoServer(t, server.ns, [8080]);

  // Another node's entry, which this agent must leave as it is.
  await kube.apply(policy(['client'], '8080'));
  const other = { ok: true, enforcing: true, observedGeneration: 1, lastUpdated: '2026-01-01T00:00:00Z' };
  const p = await kube.kubectl(['patch', 'cnp', 'server-in', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { nodes: { 'node-b': other } } })]);
  assert.equal(p.code, 0, p.stderr);

  await t.test('a valid policy: ok and enforcing for this node at generation 1', async () => {
    const e = await until('node-a ok at generation 1', async () => {
      const o = await getCnp(kube, 'server-in');
      const mine = o.status?.nodes?.['node-a'];
      return mine?.ok && mine.observedGeneration === o.metadata.generation ? { o, mine } : undefined;
    });
    assert.equal(e.o.metadata.generation, 1);
    assert.equal(e.mine.enforcing, true);
    assert.equal(e.mine.error, undefined);
    assert.ok(Date.now() - Date.parse(e.mine.lastUpdated) < 60_000, 'lastUpdated is now');
    assert.deepEqual(e.o.status?.nodes?.['node-b'], other, "another node's entry is untouched");
    assert.equal(await tryConnect(intruder.ns, server.ip, 8080, 500), 'timeout');
    assert.equal(await tryConnect(client.ns, server.ip, 8080), 'connected');
    // The only agent holds the housekeeping Lease, so it keeps the cluster-wide Valid condition: `kubectl get cnp` shows it.
    const valid = await until('the Valid condition', async () => validOf(await getCnp(kube, 'server-in')));
    assert.deepEqual([valid.status, valid.message], ['True', 'Policy validation succeeded']);
    const table = await kube.kubectl(['get', 'cnp', 'server-in']);
    assert.match(table.stdout, /^NAME\s+AGE\s+VALID\n/);
    assert.match(table.stdout, /^server-in\s+\S+\s+True$/m);
  });

  await t.test('nothing changed, nothing written: our own status write does not cause another', async () => {
    const before = writer.stats().patches;
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(writer.stats().patches, before);
    assert.equal(writer.stats().pending, 0);
  });

  await t.test('an edit bumps the observed generation', async () => {
    await kube.apply(policy(['client', 'intruder'], '8080'));
    const mine = await until('node-a ok at generation 2', async () => {
      const o = await getCnp(kube, 'server-in');
      const m = o.status?.nodes?.['node-a'];
      return m?.ok && m.observedGeneration === 2 && o.metadata.generation === 2 ? m : undefined;
    });
    assert.equal(mine.enforcing, true);
    await until('the intruder to be allowed', async () => ((await tryConnect(intruder.ns, server.ip, 8080, 500)) === 'connected' ? true : undefined));
  });

  await t.test('an edit the CRD accepts but meshd refuses: ok false with the field path, the previous version stays enforced', async () => {
    const patchesBefore = writer.stats().patches;
    await kube.apply(policy(['client'], 'not a port!'));
    const mine = await until('node-a rejected at generation 3', async () => {
      const o = await getCnp(kube, 'server-in');
      const m = o.status?.nodes?.['node-a'];
      return m && !m.ok && m.observedGeneration === 3 ? m : undefined;
    });
    assert.equal(mine.enforcing, true, 'generation 2 is still enforced');
    assert.deepEqual(
      mine.problems?.map((x) => [x.path, x.code]),
      [['spec.ingress[0].toPorts[0].ports[0].port', 'INVALID_PORT']],
    );
    assert.ok(mine.error?.startsWith('spec.ingress[0].toPorts[0].ports[0].port: '));
    const invalid = validOf(await getCnp(kube, 'server-in'));
    assert.equal(invalid?.status, 'False', 'written with the node entry');
    assert.ok(invalid.message?.startsWith('spec.ingress[0].toPorts[0].ports[0].port: '), invalid.message);
    // Generation 2 allowed the intruder; generation 3 would not have.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await tryConnect(intruder.ns, server.ip, 8080), 'connected', 'the last good version is enforced');
    assert.deepEqual((await getCnp(kube, 'server-in')).status?.nodes?.['node-b'], other);
    assert.equal(writer.stats().patches - patchesBefore, 1, 'one patch for the change');

    // Fixed again: ok, the old error and problems are gone from the entry.
    await kube.apply(policy(['client'], '8080'));
    const fixed = await until('node-a ok at generation 4', async () => {
      const m = (await getCnp(kube, 'server-in')).status?.nodes?.['node-a'];
      return m?.ok && m.observedGeneration === 4 ? m : undefined;
    });
    assert.equal(fixed.error, undefined);
    assert.equal(fixed.problems, undefined);
    const valid = await until('Valid again', async () => {
      const v = validOf(await getCnp(kube, 'server-in'));
      return v?.status === 'True' ? v : undefined;
    });
    assert.equal(valid.message, 'Policy validation succeeded');
    await until('the intruder to be refused again', async () => ((await tryConnect(intruder.ns, server.ip, 8080, 500)) === 'timeout' ? true : undefined));
  });
});

test('status writers: two nodes write side by side; an unreachable API server delays the write, never the caller', async (t) => {
  const kube = await startKubeCluster({ t });
  const kubeConfig = resolveKubeConfig({ kubeconfigPath: kube.kubeconfigPath, env: {} }).kubeConfig;
  await registerCrds({ kubeConfig });
  await kube.apply(policy(['client'], '8080'));
  const ref = { kind: 'CiliumNetworkPolicy' as const, namespace: 'default', name: 'server-in' };
  const writers = ['node-a', 'node-b'].map((nodeName) => new PolicyStatusWriter({ client: new KubeClient(kubeConfig), nodeName, coalesceMs: 10, backoff: { initialMs: 100, maxMs: 500 } }));
  t.after(() => Promise.all(writers.map((w) => w.stop())));
  const [a, b] = writers;
  assert.ok(a && b);

  // Coalesced: three notes in a row, one patch with the last.
  a.note({ ref, ok: false, enforcing: false, generation: 1, problems: [{ path: 'spec', code: 'X', message: 'first' }] });
  a.note({ ref, ok: false, enforcing: false, generation: 1, problems: [{ path: 'spec', code: 'X', message: 'second' }] });
  a.note({ ref, ok: true, enforcing: true, generation: 1, problems: [] });
  b.note({ ref, ok: true, enforcing: true, generation: 1, problems: [] });
  const both = await until('both nodes', async () => {
    const nodes = (await getCnp(kube, 'server-in')).status?.nodes;
    return nodes?.['node-a'] && nodes['node-b'] ? nodes : undefined;
  });
  assert.equal(both['node-a']?.ok, true);
  assert.equal(both['node-b']?.ok, true);
  assert.equal(a.stats().patches, 1, 'three notes, one patch');

  await kube.stopApiServer();
  const started = performance.now();
  a.note({ ref, ok: false, enforcing: true, generation: 1, problems: [{ path: 'spec.ingress', code: 'X', message: 'later' }] });
  assert.ok(performance.now() - started < 20, 'note() does not wait for the API server');
  await until('a failed attempt', async () => (a.stats().failures > 0 ? true : undefined));
  assert.equal(a.stats().pending, 1);
  await kube.startApiServer();
  const after = await until('the retried write', async () => {
    const nodes = (await getCnp(kube, 'server-in')).status?.nodes;
    return nodes?.['node-a']?.ok === false ? nodes : undefined;
  });
  assert.deepEqual(after['node-a']?.problems, [{ path: 'spec.ingress', code: 'X', message: 'later' }]);
  assert.equal(after['node-b']?.ok, true, "node-b's entry is untouched");
  assert.equal(a.stats().pending, 0);
  assert.equal(validOf(await getCnp(kube, 'server-in')), undefined, 'no writer keeps the Valid condition yet');

  // Another controller's condition, which the Valid one must not displace.
  const foreign = { type: 'example.com/Reviewed', status: 'True', lastTransitionTime: '2026-01-01T00:00:00Z', message: 'reviewed' };
  const p = await kube.kubectl(['patch', 'cnp', 'server-in', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { conditions: [foreign] } })]);
  assert.equal(p.code, 0, p.stderr);
  const status = (await getCnp(kube, 'server-in')).status;
  // b keeps the condition; a, which is not the condition writer, rejects the policy: only b's view reaches the condition.
  b.note({ ref, ok: true, enforcing: true, generation: 1, problems: [], reported: status });
  b.setConditionWriter(true);
  const valid = await until('the Valid condition', async () => validOf(await getCnp(kube, 'server-in')));
  assert.deepEqual([valid.status, valid.message], ['True', 'Policy validation succeeded']);
  const conditions = (await getCnp(kube, 'server-in')).status?.conditions;
  assert.deepEqual(conditions?.find((c) => c.type === foreign.type), foreign, 'the other condition is kept');
  a.note({ ref, ok: false, enforcing: true, generation: 1, problems: [{ path: 'spec.ingress', code: 'X', message: 'later' }], reported: (await getCnp(kube, 'server-in')).status });
  await until('a wrote its entry', async () => (a.stats().pending === 0 ? true : undefined));
  assert.equal(validOf(await getCnp(kube, 'server-in'))?.status, 'True', 'a writes its own entry, never the condition');
  // A refusal seen by the condition writer turns it False; the transition time moves with the status only.
  const since = valid.lastTransitionTime;
  b.note({ ref, ok: false, enforcing: true, generation: 1, problems: [{ path: 'spec.ingress[0]', code: 'X', message: 'bad' }] });
  const invalid = await until('Valid False', async () => {
    const v = validOf(await getCnp(kube, 'server-in'));
    return v?.status === 'False' ? v : undefined;
  });
  assert.equal(invalid.message, 'spec.ingress[0]: bad');
  assert.ok(since !== undefined && invalid.lastTransitionTime !== undefined && Date.parse(invalid.lastTransitionTime) >= Date.parse(since));
  b.setConditionWriter(false);
  const before = b.stats().patches;
  b.note({ ref, ok: true, enforcing: true, generation: 1, problems: [] });
  await until('b wrote its entry', async () => (b.stats().pending === 0 && b.stats().patches > before ? true : undefined));
  assert.equal(validOf(await getCnp(kube, 'server-in'))?.status, 'False', 'no longer the condition writer: the condition is left as it is');
});
