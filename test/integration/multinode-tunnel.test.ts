/**
 * Tunnel mode across nodes that are network namespaces (src/devcluster/netns-nodes.ts):
 * pod ↔ pod by IP through the agents' VXLAN devices, a 1 MB transfer at the
 * pod MTU (underlay MTU minus the tunnel's overhead), by Service VIP (socket
 * LB), L3/L4 policy by labels
 * enforced on the destination node on the identity the VNI carried (shown
 * with the source's ipcache entry deliberately removed there), node 2's
 * agent restarted under a live connection, and a third node joining and leaving.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TUNNEL_OVERHEAD } from '../../src/datapath/routing/tunnel-device.js';
import { bulkEcho, clientAndWeb, deletePinnedHostEntry, nodeRoutesFor, podExec, policyAcrossNodes, restartUnderLiveConnection, serviceAcrossNodes, startNetnsNodes, thirdNodeJoins } from '../helpers/netns-nodes.js';
import { tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('tunnel mode: pods on two nodes talk through VXLAN at the reduced MTU, by IP and by Service VIP (socket LB), the destination judges the identity from the VNI, a restart keeps a live connection, a third node joins and leaves', { timeout: 600_000 }, async (t) => {
  requirePrivileges();
  const w = await startNetnsNodes(t, ['mn-t1', 'mn-t2'], { routingMode: 'tunnel' });
  const [n1, n2] = w.nodes;
  assert.ok(n1 && n2);
  // Each node has the other's pod CIDR in meshd_tunnel (outer destination: its underlay address) and a route through the device.
  await nodeRoutesFor(n1, [n2], 'tunnel');
  await nodeRoutesFor(n2, [n1], 'tunnel');
  const p = await clientAndWeb(t, w);

  // The pod MTU is the underlay's minus the tunnel's overhead, and full-size segments cross (TCP sets DF).
  const mtu = (await podExec(p.client, 'cat', ['/sys/class/net/eth0/mtu'])).stdout.trim();
  assert.equal(Number(mtu), 1500 - TUNNEL_OVERHEAD);
  assert.equal(await bulkEcho(p.client, p.web.ip, 8080, 1 << 20), 1 << 20);

  await policyAcrossNodes(w, p);
  // By Service VIP: the socket LB picks the backend on node 2 at connect(), the packet then takes the tunnel.
  await serviceAcrossNodes(w, p);
  // The identity comes from the VNI: with the client's ipcache entry gone from node 2, a new connection is still allowed by label.
  assert.ok(deletePinnedHostEntry(n2, p.client.ip), 'node 2 had an ipcache entry for the client');
  assert.equal(await tryConnect(p.client.ns, p.web.ip, 8080), 'connected');
  assert.equal(await tryConnect(p.client.ns, p.web.ip, 9090), 'timeout');

  const live = await restartUnderLiveConnection(t, w, p);
  await thirdNodeJoins(w, 'tunnel', p.web);
  assert.ok(await live.ping());
});
