/**
 * A node's own traffic to another node's pod carries that node's identity in
 * both routing modes (test/helpers/netns-nodes.ts): in native mode the
 * destination finds the sender's address in its ipcache; in tunnel mode the
 * sender puts `host` in the VNI and the destination (bpf/overlay.c) names the
 * packet by the inner source's ipcache identity, the sender's node identity
 * with its labels. So on node 2, `fromEntities: [remote-node]` and `fromNodes`
 * by label admit node 1's host and not a machine on the underlay that is no
 * node (world), and `fromEntities: [world]` admits that machine and not node 1.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { eventually } from '../helpers/kube-nodes.js';
import { nodeRoutesFor, pinnedHostIdentity, startNetnsNodes, type NetnsNode } from '../helpers/netns-nodes.js';
import { echoServer, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { underlayHost } from '../helpers/underlay-host.js';

/** A machine on the underlay that is no node. */
const OUTSIDE_IP = '192.168.77.200';

function ingress8080(peer: Record<string, unknown>): object {
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'web-node-identity', namespace: 'default' },
    spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ ...peer, toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }] },
  };
}

/** node 2's ipcache identity of node 1's address once it satisfies ok. */
async function nodeIdentityOn(on: NetnsNode, of: NetnsNode, ok: (id: number) => boolean): Promise<number> {
  let seen: number | undefined;
  await eventually(`${of.name}'s address as a node identity on ${on.name} (seen ${String(seen)})`, () => {
    seen = pinnedHostIdentity(on, of.ip);
    return seen !== undefined && ok(seen);
  }, 60_000);
  return seen ?? 0;
}

async function dropIdentities(on: NetnsNode, src: string, dst: string): Promise<number[]> {
  return (await on.flows()).filter((f) => f.type === 'drop' && f.src.ip === src && f.dst.ip === dst && f.dst.port === 8080).map((f) => f.srcIdentity);
}

async function nodeTrafficCase(t: TestContext, mode: 'native' | 'tunnel'): Promise<void> {
  requirePrivileges();
  const m = mode[0] ?? 'x';
  const w = await startNetnsNodes(t, [`mn-i${m}1`, `mn-i${m}2`], { routingMode: mode });
  const [n1, n2] = w.nodes;
  assert.ok(n1 && n2);
  await nodeRoutesFor(n1, [n2], mode);
  await n1.register({ 'meshd.test/tier': 'a' });
  await n2.register({ 'meshd.test/tier': 'b' });
  const n1Id = await nodeIdentityOn(n2, n1, (id) => id >= 256);

  const web = await n2.kubelet.runPod('web', { labels: { app: 'web' } });
  const client = await n1.kubelet.runPod('client', { labels: { app: 'client' } });
  await echoServer(t, web.ns, [8080]);
  const outside = await underlayHost(w, 'x', OUTSIDE_IP, [n2]);
  await eventually('node 1, its pod and the outside machine reach web before any policy', async () =>
    (await tryConnect(n1.ns, web.ip, 8080)) === 'connected' && (await tryConnect(client.ns, web.ip, 8080)) === 'connected' && (await tryConnect(outside, web.ip, 8080)) === 'connected');

  // remote-node: node 1's host is admitted; the outside machine (world) and node 1's pod are not.
  await w.kube.apply(ingress8080({ fromEntities: ['remote-node'] }));
  await eventually('the outside machine is dropped', async () => (await tryConnect(outside, web.ip, 8080)) === 'timeout');
  assert.equal(await tryConnect(n1.ns, web.ip, 8080), 'connected');
  assert.equal(await tryConnect(client.ns, web.ip, 8080), 'timeout');
  const worldDrops = await dropIdentities(n2, OUTSIDE_IP, web.ip);
  assert.ok(worldDrops.length > 0 && worldDrops.every((id) => id === 2), `node 2 dropped the outside machine as world: ${JSON.stringify(worldDrops)}`);

  // fromNodes by label: node 1 (tier a) is admitted while its labels match, dropped under its own new identity when they stop.
  await w.kube.apply(ingress8080({ fromNodes: [{ matchLabels: { 'meshd.test/tier': 'a' } }] }));
  await eventually('node 1 admitted by its labels, the outside machine not', async () =>
    (await tryConnect(n1.ns, web.ip, 8080)) === 'connected' && (await tryConnect(outside, web.ip, 8080)) === 'timeout');
  await n1.register({ 'meshd.test/tier': 'c' });
  const n1Relabelled = await nodeIdentityOn(n2, n1, (id) => id >= 256 && id !== n1Id);
  await eventually('node 1, relabelled, is dropped', async () => (await tryConnect(n1.ns, web.ip, 8080)) === 'timeout');
  const nodeDrops = await dropIdentities(n2, n1.ip, web.ip);
  assert.ok(nodeDrops.length > 0 && nodeDrops.every((id) => id === n1Relabelled), `node 2 dropped node 1's host under node 1's identity ${n1Relabelled}: ${JSON.stringify(nodeDrops)}`);
  await n1.register({ 'meshd.test/tier': 'a' });
  await nodeIdentityOn(n2, n1, (id) => id === n1Id);

  // The other way round: world admits the outside machine and not node 1.
  await w.kube.apply(ingress8080({ fromEntities: ['world'] }));
  await eventually('the outside machine admitted, node 1 dropped', async () =>
    (await tryConnect(outside, web.ip, 8080)) === 'connected' && (await tryConnect(n1.ns, web.ip, 8080)) === 'timeout');
  assert.ok((await dropIdentities(n2, n1.ip, web.ip)).includes(n1Id), 'node 2 dropped node 1 as node 1, not as world');
}

test('node identity, tunnel mode: node 1\'s own traffic is node 1 on node 2 (remote-node, fromNodes), an outside machine is world', { timeout: 600_000 }, (t) => nodeTrafficCase(t, 'tunnel'));

test('node identity, native mode: the same with direct node routes', { timeout: 600_000 }, (t) => nodeTrafficCase(t, 'native'));
