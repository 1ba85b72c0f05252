/**
 * LB IPAM against a real API server: the controller runs as the meshd
 * ServiceAccount (install/rbac.yaml), pools and Services are written as a
 * user would, and every outcome is read back from the API server (the
 * Services' and pools' status), never from the controller's memory.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { LB_IP_POOLS_PATH } from '../../src/k8s/cilium-lb-ip-pool.js';
import { LbIpamController, POOL_CONDITIONS } from '../../src/lbipam/controller.js';
import { ConditionSchema, LbServiceSchema, REQUEST_SATISFIED_CONDITION } from '../../src/lbipam/lb-service.js';
import { startKubeCluster } from '../../src/devcluster/kube-cluster.js';
import { eventually, installMeshd, until } from '../helpers/kube-nodes.js';

const PoolStatus = z.object({ status: z.object({ conditions: z.array(ConditionSchema).optional() }).optional() });
const FAST = { retryMs: 200, leaseDurationMs: 2_000, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };

test('LB IPAM allocates, refuses and releases as Cilium does, and a restarted controller adopts its allocations', async (t) => {
  const kube = await startKubeCluster({ t });
  await installMeshd(kube);
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  const client = new KubeClient(resolveKubeConfig({ kubeconfigPath: sa.kubeconfigPath }).kubeConfig);
  const admin = new KubeClient(resolveKubeConfig({ kubeconfigPath: kube.kubeconfigPath }).kubeConfig);
  await admin.send('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } });

  let ctl = new LbIpamController({ client, holder: 'node-a', namespace: 'kube-system', ...FAST });
  t.after(async () => {
    await ctl.stop();
    client.close();
    admin.close();
  });
  ctl.start();
  await eventually('node-a holds the LB IPAM Lease', () => ctl.isLeader());

  const pool = (name: string, spec: Record<string, unknown>) => admin.send('POST', LB_IP_POOLS_PATH, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name }, spec });
  const service = (name: string, o: { ns?: string; labels?: Record<string, string>; annotations?: Record<string, string>; spec?: Record<string, unknown>; ports?: number[] } = {}) =>
    admin.send('POST', `/api/v1/namespaces/${o.ns ?? 'default'}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, labels: o.labels ?? {}, annotations: o.annotations ?? {} },
      spec: { type: 'LoadBalancer', ports: (o.ports ?? [80]).map((port) => ({ port, name: `p${port}` })), ...o.spec },
    });
  const read = async (name: string, ns = 'default') => {
    const s = LbServiceSchema.parse(await admin.getJson(`/api/v1/namespaces/${ns}/services/${name}`));
    return { ips: (s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? ''), cond: s.status?.conditions?.find((c) => c.type === REQUEST_SATISFIED_CONDITION) };
  };
  /** The Service's addresses once its condition is True. */
  const assigned = (name: string, ns = 'default') => until(`${ns}/${name} assigned`, async () => {
    const r = await read(name, ns);
    return r.cond?.status === 'True' && r.ips.length > 0 ? r.ips : undefined;
  });
  const pending = (name: string, reason: string, ns = 'default') => eventually(`${ns}/${name} pending with ${reason}`, async () => {
    const r = await read(name, ns);
    return r.cond?.status === 'False' && r.cond.reason === reason && r.ips.length === 0;
  });
  const poolCondition = async (name: string, type: string) => {
    const p = PoolStatus.parse(await admin.getJson(`${LB_IP_POOLS_PATH}/${name}`));
    return (p.status?.conditions ?? []).find((c) => c.type === type);
  };

  await t.test('pools with and without selectors, CIDR and range blocks; other classes and types are left alone', async () => {
    await pool('blue', { blocks: [{ cidr: '10.50.0.0/30' }], serviceSelector: { matchLabels: { color: 'blue' } } });
    await pool('wide', { blocks: [{ start: '10.51.0.10', stop: '10.51.0.11' }] });
    // Once the controller wrote both pools' counters it knows both: blue-svc cannot land in "wide" first.
    await eventually('both pools counted', async () => (await poolCondition('blue', POOL_CONDITIONS.total)) !== undefined && (await poolCondition('wide', POOL_CONDITIONS.total)) !== undefined);
    await service('blue-svc', { labels: { color: 'blue' } });
    await service('plain');
    await service('foreign', { spec: { loadBalancerClass: 'example.com/other' } });
    await service('cluster-ip', { spec: { type: 'ClusterIP' } });
    assert.deepEqual(await assigned('blue-svc'), ['10.50.0.0']);
    assert.deepEqual(await assigned('plain'), ['10.51.0.10']);
    await eventually('blue counts its addresses', async () => (await poolCondition('blue', POOL_CONDITIONS.used))?.message === '1' && (await poolCondition('blue', POOL_CONDITIONS.available))?.message === '3');
    assert.equal((await poolCondition('blue', POOL_CONDITIONS.total))?.message, '4');
    assert.equal((await poolCondition('blue', POOL_CONDITIONS.conflict))?.status, 'False');
    for (const name of ['foreign', 'cluster-ip']) assert.deepEqual(await read(name), { ips: [], cond: undefined }, `${name} untouched`);
  });

  await t.test('exhaustion: pending with out_of_ips, assigned when an address frees', async () => {
    await service('e1');
    assert.deepEqual(await assigned('e1'), ['10.51.0.11']);
    await service('e2');
    await pending('e2', 'out_of_ips');
    await admin.send('DELETE', '/api/v1/namespaces/default/services/e1');
    assert.deepEqual(await assigned('e2'), ['10.51.0.11']);
    // From here on "wide" (which selects every Service) keeps its allocations but makes no new ones.
    await admin.send('PATCH', `${LB_IP_POOLS_PATH}/wide`, { spec: { disabled: true } });
    await service('after-disable');
    await pending('after-disable', 'no_pool');
    assert.deepEqual((await read('e2')).ips, ['10.51.0.11']);
  });

  await t.test('an overlapping pool is conflicting and allocates nothing until the overlap is gone', async () => {
    await pool('late', { blocks: [{ cidr: '10.50.0.0/29' }], serviceSelector: { matchLabels: { pool: 'late' } } });
    await eventually('late conflicts', async () => (await poolCondition('late', POOL_CONDITIONS.conflict))?.status === 'True');
    assert.equal((await poolCondition('late', POOL_CONDITIONS.conflict))?.reason, 'cidr_overlap');
    await service('wants-late', { labels: { pool: 'late' } });
    await pending('wants-late', 'no_pool');
    await admin.send('PATCH', `${LB_IP_POOLS_PATH}/late`, { spec: { blocks: [{ cidr: '10.52.0.0/30' }] } });
    await eventually('late resolved', async () => (await poolCondition('late', POOL_CONDITIONS.conflict))?.status === 'False');
    assert.deepEqual(await assigned('wants-late'), ['10.52.0.0']);
  });

  await t.test('requested IPs: valid, taken, outside every pool', async () => {
    await service('req', { labels: { pool: 'late' }, annotations: { 'lbipam.cilium.io/ips': '10.52.0.2' } });
    assert.deepEqual(await assigned('req'), ['10.52.0.2']);
    await service('req-legacy', { labels: { pool: 'late' }, spec: { loadBalancerIP: '10.52.0.3' } });
    assert.deepEqual(await assigned('req-legacy'), ['10.52.0.3']);
    await service('req-taken', { labels: { pool: 'late' }, annotations: { 'lbipam.cilium.io/ips': '10.52.0.2' } });
    await pending('req-taken', 'already_allocated');
    await service('req-outside', { annotations: { 'lbipam.cilium.io/ips': '192.0.2.1' } });
    await pending('req-outside', 'no_pool');
  });

  await t.test('sharing: one address for a sharing key without port clashes; a clash or another namespace gets another', async () => {
    await pool('shared', { blocks: [{ cidr: '10.53.0.0/29' }], serviceSelector: { matchLabels: { shared: 'yes' } } });
    const labels = { shared: 'yes' };
    const annotations = { 'lbipam.cilium.io/sharing-key': 'k' };
    await service('s1', { labels, annotations, ports: [80] });
    const ip = await assigned('s1');
    await service('s2', { labels, annotations, ports: [443] });
    assert.deepEqual(await assigned('s2'), ip);
    await service('s3', { labels, annotations, ports: [80] });
    assert.notDeepEqual(await assigned('s3'), ip);
    await service('s4', { ns: 'other', labels, annotations, ports: [8080] });
    const other = await assigned('s4', 'other');
    assert.notDeepEqual(other, ip);
    await service('s5', { ns: 'other', labels, annotations: { ...annotations, 'lbipam.cilium.io/sharing-cross-namespace': 'default' }, ports: [9090] });
    assert.notDeepEqual(await assigned('s5', 'other'), ip, 'allowed by one side only: not shared');
  });

  await t.test('dual stack: PreferDualStack gets one address per family', async () => {
    await pool('v6', { blocks: [{ cidr: '2001:db8:54::/126' }], serviceSelector: { matchLabels: { dual: 'yes' } } });
    await pool('v4-dual', { blocks: [{ cidr: '10.54.0.0/30' }], serviceSelector: { matchLabels: { dual: 'yes' } } });
    await service('dual', { labels: { dual: 'yes' }, spec: { ipFamilyPolicy: 'PreferDualStack' } });
    const got = await until('dual has two addresses', async () => {
      const r = await read('dual');
      return r.ips.length === 2 ? r.ips : undefined;
    });
    assert.deepEqual([...got].sort(), ['10.54.0.0', '2001:db8:54::']);
  });

  await t.test('a Service that stops matching releases its address', async () => {
    await admin.send('PATCH', '/api/v1/namespaces/default/services/blue-svc', { metadata: { labels: { color: 'red' } } });
    await pending('blue-svc', 'no_pool');
    await eventually('blue has nothing used', async () => (await poolCondition('blue', POOL_CONDITIONS.used))?.message === '0');
  });

  await t.test('a restarted controller on another node adopts every allocation without rewriting it', async () => {
    const names: Array<[string, string]> = [['plain', 'default'], ['e2', 'default'], ['wants-late', 'default'], ['req', 'default'], ['s1', 'default'], ['s2', 'default'], ['s3', 'default'], ['s4', 'other'], ['dual', 'default']];
    const before = await Promise.all(names.map(([n, ns]) => read(n, ns)));
    await ctl.stop();
    ctl = new LbIpamController({ client, holder: 'node-b', namespace: 'kube-system', ...FAST });
    ctl.start();
    await eventually('node-b holds the LB IPAM Lease', () => ctl.isLeader());
    await service('after-restart', { labels: { pool: 'late' } });
    const fresh = await assigned('after-restart');
    assert.equal(fresh.length, 1);
    const after = await Promise.all(names.map(([n, ns]) => read(n, ns)));
    assert.deepEqual(after.map((a) => a.ips), before.map((b) => b.ips));
    assert.ok(!before.some((b) => b.ips.includes(fresh[0] ?? '')), 'the new Service got an address nobody holds');
    // One write: the new Service's (plus the pools' counters); none of the adopted Services was rewritten.
    assert.equal(ctl.stats.serviceWrites, 1);
  });
});
