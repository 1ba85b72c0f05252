/**
 * Tunnel mode across nodes that are network namespaces (test/helpers/netns-nodes.ts):
 * pod ↔ pod by IP through the agents' VXLAN devices, L3/L4 policy by labels
 * enforced on the destination node on the identity the VNI carried (shown
 * with the source's ipcache entry deliberately removed there), a third node
 * joining, node 2's agent restarted under a live connection, and a 1 MB
 * transfer at the pod MTU (underlay MTU minus the tunnel's overhead).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TUNNEL_OVERHEAD } from '../../src/datapath/routing/tunnel-device.js';
import { eventually } from '../helpers/kube-nodes.js';
import { allowClientOn8080, bulkEcho, deletePinnedHostEntry, droppedFrom, nodeRoutesFor, podExec } from '../helpers/netns-nodes.js';
import { startNetnsNodes } from '../helpers/netns-nodes.js';
import { echoServer, longLivedConnection, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('tunnel mode: pods on two nodes talk through VXLAN, the destination judges the identity from the VNI, a third node joins, a restart keeps a live connection, full-size segments pass', { timeout: 600_000 }, async (t) => {
  requirePrivileges();
  const w = await startNetnsNodes(t, ['mn-t1', 'mn-t2'], { routingMode: 'tunnel' });
  const [n1, n2] = w.nodes;
  assert.ok(n1 && n2);

  // Each node has the other's pod CIDR in meshd_tunnel (outer destination: its underlay address) and a route through the device.
  await nodeRoutesFor(n1, [n2], 'tunnel');
  await nodeRoutesFor(n2, [n1], 'tunnel');
  const st = await n1.status();
  assert.equal(st.agent.state, 'running');

  const client = await n1.kubelet.runPod('client', { labels: { app: 'client' } });
  const web = await n2.kubelet.runPod('web', { labels: { app: 'web' } });
  await echoServer(t, web.ns, [8080, 9090]);
  await eventually('client on node 1 reaches web on node 2 by IP', async () => (await tryConnect(client.ns, web.ip, 8080)) === 'connected');

  // The pod MTU is the underlay's minus the tunnel's overhead, and full-size segments cross (TCP sets DF).
  const mtu = (await podExec(client, 'cat', ['/sys/class/net/eth0/mtu'])).stdout.trim();
  assert.equal(Number(mtu), 1500 - TUNNEL_OVERHEAD);
  assert.equal(await bulkEcho(client, web.ip, 8080, 1 << 20), 1 << 20);

  // L3/L4 policy by labels: 8080 from app=client only; 9090 is dropped on node 2, the drop naming the client's identity.
  const clientId = await n1.identityOf(client.ip);
  assert.ok(clientId !== undefined && clientId > 255, `client identity ${String(clientId)}`);
  await allowClientOn8080(w.kube);
  await eventually('9090 denied', async () => (await tryConnect(client.ns, web.ip, 9090)) === 'timeout');
  assert.equal(await tryConnect(client.ns, web.ip, 8080), 'connected');
  const drops = await droppedFrom(n2, client.ip, web.ip, 9090);
  assert.ok(drops.length > 0, 'node 2 reported the drop');
  assert.ok(drops.every((d) => d.srcIdentity === clientId && d.direction === 'ingress'), JSON.stringify(drops));

  // The identity comes from the VNI: with the client's ipcache entry gone from node 2, a new connection is still allowed by label.
  assert.ok(deletePinnedHostEntry(n2, client.ip), 'node 2 had an ipcache entry for the client');
  assert.equal(await tryConnect(client.ns, web.ip, 8080), 'connected');
  assert.equal(await tryConnect(client.ns, web.ip, 9090), 'timeout');

  // A live connection survives node 2's agent restarting.
  const live = await longLivedConnection(t, client.ns, web.ip, 8080);
  assert.ok(await live.ping());
  await n2.restartAgent();
  assert.ok(await live.ping(), 'the connection carries data after the restart');
  assert.equal(await tryConnect(client.ns, web.ip, 8080), 'connected');

  // A third node joins: the others learn its pod CIDR, and its pod reaches web.
  const n3 = await w.addNode('mn-t3');
  await nodeRoutesFor(n1, [n2, n3], 'tunnel');
  await nodeRoutesFor(n2, [n1, n3], 'tunnel');
  await nodeRoutesFor(n3, [n1, n2], 'tunnel');
  const other = await n3.kubelet.runPod('client3', { labels: { app: 'client' } });
  await eventually('client on node 3 reaches web on node 2', async () => (await tryConnect(other.ns, web.ip, 8080)) === 'connected');
  assert.equal(await tryConnect(other.ns, web.ip, 9090), 'timeout');
  assert.ok(await live.ping());
});
