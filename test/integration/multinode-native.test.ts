/**
 * Native routing across nodes that are network namespaces (src/devcluster/netns-nodes.ts):
 * with autoDirectNodeRoutes each agent routes the other nodes' pod CIDRs via
 * their underlay addresses; pod ↔ pod by IP and by Service VIP (per-packet
 * translation); L3/L4 policy by labels on the
 * identity node 2's ipcache holds for the client's address (learned from the
 * API server: without that entry the client counts as world and is denied);
 * node 2's agent restarted under a live connection; a third node joining and leaving.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientAndWeb, deletePinnedHostEntry, nodeRoutesFor, podExec, policyAcrossNodes, restartUnderLiveConnection, serviceAcrossNodes, startNetnsNodes, thirdNodeJoins } from '../helpers/netns-nodes.js';
import { tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('native mode: direct node routes, pod to pod by IP and by Service VIP (per packet), policy on the ipcache identity of a pod of another node, a restart keeps a live connection, a third node joins and leaves', { timeout: 600_000 }, async (t) => {
  requirePrivileges();
  // Per-packet service translation here (socketLB.hostNamespaceOnly, as with Istio); the tunnel test covers the socket LB.
  const w = await startNetnsNodes(t, ['mn-n1', 'mn-n2'], { routingMode: 'native', config: { 'socketLB.hostNamespaceOnly': true } });
  const [n1, n2] = w.nodes;
  assert.ok(n1 && n2);
  await nodeRoutesFor(n1, [n2], 'native');
  await nodeRoutesFor(n2, [n1], 'native');
  // No tunnel device in native mode.
  assert.equal((await n1.exec('ip', ['-o', 'link', 'show'])).stdout.includes('meshd_tunnel'), false);
  const p = await clientAndWeb(t, w);
  // The pod keeps the device's MTU: nothing to encapsulate.
  assert.equal(Number((await podExec(p.client, 'cat', ['/sys/class/net/eth0/mtu'])).stdout.trim()), 1500);

  await policyAcrossNodes(w, p);
  // By Service VIP: meshd_from_pod translates to the backend on node 2 per packet, and the replies back.
  await serviceAcrossNodes(w, p);
  const live = await restartUnderLiveConnection(t, w, p);
  await thirdNodeJoins(w, 'native', p.web);
  assert.ok(await live.ping());

  // The source identity is node 2's ipcache entry for the client's address: without it the client is world, and denied.
  assert.ok(deletePinnedHostEntry(n2, p.client.ip), 'node 2 had an ipcache entry for the client');
  assert.equal(await tryConnect(p.client.ns, p.web.ip, 8080), 'timeout');
});
