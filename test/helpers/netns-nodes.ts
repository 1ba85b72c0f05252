/**
 * What the multi-node tests share, on the nodes of src/devcluster/netns-nodes.ts
 * (re-exported here): the policy, identity, restart, join and Service
 * scenarios each routing mode's test runs, and reads of a node's pinned maps.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BpfMap } from '../../native/index.js';
import { IpcacheKey, IpcacheValue } from '../../src/datapath/maps.js';
import { eventually } from '../../src/devcluster/eventually.js';
import type { KubeCluster } from '../../src/devcluster/kube-cluster.js';
import type { KubeletPod } from '../../src/devcluster/kubelet.js';
import { nodeRoutesFor, podExec, type After, type FlowView, type NetnsNode, type NetnsNodes } from '../../src/devcluster/netns-nodes.js';
import { run } from '../../src/util/exec.js';
import { echoServer, longLivedConnection, tryConnect } from './pod-net.js';

export * from '../../src/devcluster/netns-nodes.js';

/** A CiliumNetworkPolicy: pods app=web admit app=client on TCP 8080 only. */
export async function allowClientOn8080(kube: KubeCluster): Promise<void> {
  await kube.apply({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'web-from-client', namespace: 'default' },
    spec: {
      endpointSelector: { matchLabels: { app: 'web' } },
      ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }],
    },
  });
}

/** The drop events `node` reported for src → dst:port. */
export async function droppedFrom(node: NetnsNode, src: string, dst: string, port: number): Promise<FlowView[]> {
  return (await node.flows()).filter((f) => f.type === 'drop' && f.src.ip === src && f.dst.ip === dst && f.dst.port === port);
}

/** The node's pinned whole-address ipcache map (`meshd_ipc_host`), open for `fn`, and the key of an IPv4 address in it. */
function withHostIpcache<T>(node: NetnsNode, fn: (m: BpfMap, key: (ip: string) => Buffer) => T): T {
  const m = BpfMap.fromPin(join(node.pinDir, 'meshd_ipc_host'));
  try {
    return fn(m, (ip) => {
      const addr = Buffer.alloc(16);
      Buffer.from(ip.split('.').map(Number)).copy(addr);
      return IpcacheKey.encode({ prefixlen: 64, family: 4, pad: Buffer.alloc(3), addr });
    });
  } finally {
    m.close();
  }
}

/** Removes the whole-address ipcache row of `ip` from the node's pinned map behind its agent's back; true if there was one. */
export function deletePinnedHostEntry(node: NetnsNode, ip: string): boolean {
  return withHostIpcache(node, (m, key) => m.delete(key(ip)));
}

/** The identity of `ip`'s whole-address row in the node's pinned ipcache, undefined without one. */
export function pinnedHostIdentity(node: NetnsNode, ip: string): number | undefined {
  return withHostIpcache(node, (m, key) => {
    const v = m.lookup(key(ip));
    return v ? IpcacheValue.decode(v).identity : undefined;
  });
}

const BULK = `
const net = require('net');
const [ip, port, n] = process.argv.slice(1);
const total = Number(n);
let got = 0;
const s = net.connect({ host: ip, port: Number(port) }, () => s.end(Buffer.alloc(total, 7)));
s.setTimeout(20000, () => { console.log('timeout ' + got); process.exit(0); });
s.on('data', (d) => { got += d.length; if (got >= total) { console.log(String(got)); process.exit(0); } });
s.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });
`;

/** Sends `bytes` to an echo server from `pod` and returns how many came back (all of them, or the test fails on the number). */
export async function bulkEcho(pod: { ns: string }, ip: string, port: number, bytes: number): Promise<number> {
  const out = (await podExec(pod, process.execPath, ['-e', BULK, ip, String(port), String(bytes)], 60_000)).stdout.trim();
  return Number(out);
}

/** Two nodes' pods: app=client on the first, app=web on the second with TCP echo servers on 8080 and 9090, reachable by IP. */
export async function clientAndWeb(t: After, w: NetnsNodes): Promise<{ client: KubeletPod; web: KubeletPod; clientId: number }> {
  const [n1, n2] = w.nodes;
  assert.ok(n1 && n2);
  const client = await n1.kubelet.runPod('client', { labels: { app: 'client' } });
  const web = await n2.kubelet.runPod('web', { labels: { app: 'web' } });
  await echoServer(t, web.ns, [8080, 9090]);
  await eventually('client on node 1 reaches web on node 2 by IP', async () => (await tryConnect(client.ns, web.ip, 8080)) === 'connected');
  const clientId = await n1.identityOf(client.ip);
  assert.ok(clientId !== undefined && clientId > 255, `client identity ${String(clientId)}`);
  return { client, web, clientId };
}

/** Policy by labels across nodes: 8080 connects, 9090 is dropped on node 2 with a drop event naming the client's identity. */
export async function policyAcrossNodes(w: NetnsNodes, p: { client: KubeletPod; web: KubeletPod; clientId: number }): Promise<void> {
  const n2 = w.nodes[1];
  assert.ok(n2);
  await allowClientOn8080(w.kube);
  await eventually('9090 denied', async () => (await tryConnect(p.client.ns, p.web.ip, 9090)) === 'timeout');
  assert.equal(await tryConnect(p.client.ns, p.web.ip, 8080), 'connected');
  const drops = await droppedFrom(n2, p.client.ip, p.web.ip, 9090);
  assert.ok(drops.length > 0, 'node 2 reported the drop');
  assert.ok(drops.every((d) => d.srcIdentity === p.clientId && d.direction === 'ingress'), JSON.stringify(drops));
}

/** Node 2's agent restarts under a live client → web connection, which keeps carrying data. */
export async function restartUnderLiveConnection(t: After, w: NetnsNodes, p: { client: KubeletPod; web: KubeletPod }): Promise<{ ping(): Promise<boolean> }> {
  const n2 = w.nodes[1];
  assert.ok(n2);
  const live = await longLivedConnection(t, p.client.ns, p.web.ip, 8080);
  assert.ok(await live.ping());
  await n2.restartAgent();
  assert.ok(await live.ping(), 'the connection carries data after the restart');
  assert.equal(await tryConnect(p.client.ns, p.web.ip, 8080), 'connected');
  return live;
}

/** A third node joins (every node routes to every other, and an app=client pod there reaches web on 8080 only), then leaves (the others drop its routes). */
export async function thirdNodeJoins(w: NetnsNodes, mode: 'native' | 'tunnel', web: KubeletPod): Promise<void> {
  const n3 = await w.addNode(`${w.nodes[0]?.name ?? 'n'}-3`);
  for (const n of w.nodes) await nodeRoutesFor(n, w.nodes.filter((o) => o !== n), mode);
  const other = await n3.kubelet.runPod('client3', { labels: { app: 'client' } });
  await eventually('client on node 3 reaches web on node 2', async () => (await tryConnect(other.ns, web.ip, 8080)) === 'connected');
  assert.equal(await tryConnect(other.ns, web.ip, 9090), 'timeout');
  // It leaves: its pod goes, its agent stops, its MeshdNode is removed (as the node GC does), and the others forget its routes.
  await n3.kubelet.deletePod(other);
  await n3.stopAgent();
  const r = await w.kube.kubectl(['delete', 'meshdnodes.meshd.io', n3.name]);
  assert.equal(r.code, 0, r.stderr);
  const rest = w.nodes.filter((n) => n !== n3);
  for (const n of rest) await nodeRoutesFor(n, rest.filter((o) => o !== n), mode);
}

/** One echo exchange from inside a pod with the process in `cgroup` (where the socket LB's hooks attach): 'connected' or why not. */
const VIP_PROBE = "const s = require('net').connect({ host: process.argv[1], port: Number(process.argv[2]) }, () => s.write('hi')); s.once('data', () => { console.log('connected'); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(0); }); setTimeout(() => { console.log('timeout'); process.exit(0); }, 1500);";
export async function connectInCgroup(cgroup: string, pod: { ns: string }, ip: string, port: number): Promise<string> {
  const r = await run('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, 'ip', 'netns', 'exec', pod.ns, process.execPath, '-e', VIP_PROBE, ip, String(port)], { timeoutMs: 10_000 });
  return r.stdout.trim();
}

/**
 * A ClusterIP Service `web` (80 → 8080) whose one backend is the web pod on
 * node 2 (its EndpointSlice written as the controller-manager would), and
 * the client on node 1 reaching it through the VIP. Returns the VIP.
 */
export async function serviceAcrossNodes(w: NetnsNodes, p: { client: KubeletPod; web: KubeletPod }): Promise<string> {
  const n1 = w.nodes[0];
  assert.ok(n1);
  await w.kube.apply([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: [p.web.ip], conditions: { ready: true } }],
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    },
  ]);
  const vip = (await w.kube.kubectl(['get', 'service', 'web', '-n', 'default', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  await eventually(`the client on node 1 reaches web on node 2 through ${vip}`, async () => (await connectInCgroup(n1.cgroup.path, p.client, vip, 80)) === 'connected');
  return vip;
}
