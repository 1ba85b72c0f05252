/**
 * L2 announcements in the kernel: two node namespaces and a client namespace
 * on one bridge, a real API server, LB IPAM allocating the Service's address
 * and one L2 announcer per node (each acting in its node's namespace). The
 * client reaches the address (IPv4 and IPv6), exactly one node answers its
 * ARP requests, and
 * when that node's announcer goes without giving its Lease up (as a node
 * that died), the other node places the address within leaseDuration + 3 s
 * and answers the client;
 * the IPv6 address moves too, and the new holder's unsolicited neighbour
 * advertisement moves the client's neighbour entry to its MAC before the
 * client sends anything.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { LB_IP_POOLS_PATH } from '../../src/k8s/cilium-lb-ip-pool.js';
import { L2_POLICIES_PATH } from '../../src/k8s/cilium-l2-announcement-policy.js';
import { L2Announcer } from '../../src/l2announce/announcer.js';
import { IpHostNet } from '../../src/l2announce/host-net.js';
import { LbIpamController } from '../../src/lbipam/controller.js';
import { startKubeCluster } from '../../src/devcluster/kube-cluster.js';
import { eventually, installMeshd, until } from '../helpers/kube-nodes.js';
import { l2Segment } from '../helpers/l2-segment.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { run } from '../../src/util/exec.js';
import { z } from 'zod';

const NeighJson = z.array(z.object({ dst: z.string(), lladdr: z.string().optional(), state: z.array(z.string()).optional() }).loose());
/** The client's neighbour entry for `ip`: its MAC, undefined when it has none. */
async function neighbourMac(netns: string, ip: string): Promise<string | undefined> {
  const r = await run('ip', ['-n', netns, '-6', '-j', 'neigh', 'show', ip]);
  return NeighJson.parse(JSON.parse(r.stdout === '' ? '[]' : r.stdout))[0]?.lladdr?.toLowerCase();
}

const LEASE_MS = 3_000;
const RETRY_MS = 500;
const VIP = '10.77.0.200';
const VIP6 = 'fd77::200';

test('one node answers for an L2-announced address, and another takes over when it goes', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('l2');
  t.after(() => sb.cleanup());
  const seg = await l2Segment(sb, { nodes: ['node-a', 'node-b'], subnet: '10.77.0', subnet6: 'fd77::' });
  const kube = await startKubeCluster({ t });
  await installMeshd(kube);
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  const client = new KubeClient(resolveKubeConfig({ kubeconfigPath: sa.kubeconfigPath }).kubeConfig);
  const admin = new KubeClient(resolveKubeConfig({ kubeconfigPath: kube.kubeconfigPath }).kubeConfig);
  const fast = { backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };
  const lbIpam = new LbIpamController({ client, holder: 'node-a', namespace: 'kube-system', retryMs: 200, ...fast });
  const announcers = seg.nodes.map(
    (n) => new L2Announcer({ client, nodeName: n.name, namespace: 'kube-system', net: new IpHostNet({ netns: n.netns }), leaseDurationMs: LEASE_MS, retryMs: RETRY_MS, ...fast }),
  );
  t.after(async () => {
    for (const a of announcers) await a.stop();
    await lbIpam.stop();
    client.close();
    admin.close();
  });
  lbIpam.start();
  for (const a of announcers) a.start();

  await admin.send('POST', LB_IP_POOLS_PATH, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'segment' }, spec: { blocks: [{ cidr: `${VIP}/32` }, { cidr: `${VIP6}/128` }] } });
  await admin.send('POST', L2_POLICIES_PATH, { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumL2AnnouncementPolicy', metadata: { name: 'eth0' }, spec: { interfaces: ['^eth0$'], loadBalancerIPs: true } });
  await admin.send('POST', '/api/v1/namespaces/default/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web' },
    spec: { type: 'LoadBalancer', loadBalancerClass: 'io.cilium/l2-announcer', ipFamilyPolicy: 'PreferDualStack', ports: [{ port: 8080 }] },
  });

  const holderIndex = await until('one node holds the Lease of default/web', () => {
    const held = announcers.map((a) => a.held().includes('default/web'));
    return held.filter(Boolean).length === 1 ? held.indexOf(true) : undefined;
  });
  const holder = seg.nodes[holderIndex];
  const other = seg.nodes[1 - holderIndex];
  assert.ok(holder && other);
  const first = await until(`the client reaches ${VIP}`, () => seg.whoAnswers(VIP));
  assert.equal(first, holder.name);
  assert.deepEqual(await seg.arpReplies(VIP), [holder.mac], 'ARP answered by exactly the holder');
  // IPv6: the holder answers the client's neighbour solicitation for the address (the other node does not have it).
  assert.equal(await until(`the client reaches ${VIP6}`, () => seg.whoAnswers(VIP6)), holder.name);
  assert.equal(await neighbourMac(seg.client.netns, VIP6), holder.mac, "the client's neighbour entry for the IPv6 address is the holder's");

  // The holder goes as a dead node would: its addresses vanish, its Lease is not given up but lapses.
  const down = Date.now();
  await announcers[holderIndex]?.stop({ release: false });
  const second = await until(`the other node answers for ${VIP}`, async () => ((await seg.whoAnswers(VIP, 500)) === other.name ? other.name : undefined), LEASE_MS + 10_000);
  const clientMs = Date.now() - down;
  // The bound is on the new holder's own action (the address on its interface, the kernel answering from then, and
  // its gratuitous ARP sent), not on when this test's probes — processes started one after another — noticed it.
  const takeover = announcers[1 - holderIndex]?.takeovers.find((x) => x.ip === VIP && x.at >= down);
  assert.ok(takeover, `the new holder placed ${VIP}`);
  const failoverMs = takeover.at - down;
  t.diagnostic(`fail-over: address placed after ${failoverMs} ms, answered to the client's probes after ${clientMs} ms (leaseDuration ${LEASE_MS} ms, retry ${RETRY_MS} ms)`);
  assert.equal(second, other.name);
  assert.ok(failoverMs < LEASE_MS + 3_000, `fail-over took ${failoverMs} ms (leaseDuration ${LEASE_MS} ms)`);
  assert.deepEqual(await seg.arpReplies(VIP), [other.mac], 'ARP answered by exactly the new holder');
  await eventually('the new holder holds the Lease', () => announcers[1 - holderIndex]?.held().includes('default/web') ?? false);
  // IPv6: the client sent nothing to the address since the move, so only the new holder's unsolicited advertisement can have changed its entry.
  await eventually(`the client's neighbour entry for ${VIP6} moves to the new holder's MAC`, async () => (await neighbourMac(seg.client.netns, VIP6)) === other.mac, 3_000);
  assert.equal(await until(`the client reaches ${VIP6} after the move`, () => seg.whoAnswers(VIP6)), other.name);
});
