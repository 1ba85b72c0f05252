/**
 * Node entities against real node addresses (native routing across nodes that
 * are network namespaces, src/devcluster/netns-nodes.ts): the Node objects'
 * InternalIPs are `host` on their own node and a `remote-node` identity
 * carrying the node's labels on the others; `fromEntities: [remote-node]`
 * admits a process in node 2's namespace but not a pod there; `fromNodes`
 * selects node 2 and not node 3 by label; the `kubernetes` EndpointSlice
 * makes node 2's address the API server's (`kube-apiserver` as well as
 * `remote-node`), and `toEntities: [kube-apiserver]` reaches the real API
 * server there and nothing else; node 3 joining and leaving shows in the
 * others' pinned ipcache.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually } from '../helpers/kube-nodes.js';
import { pinnedHostIdentity, podExec, startNetnsNodes, type NetnsNode } from '../helpers/netns-nodes.js';
import { echoServer, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

const API_PORT = 6443;

/** A CiliumNetworkPolicy for the app=web pod, replacing the previous one of that name. */
function webPolicy(spec: Record<string, unknown>): object {
  return { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'web-entities', namespace: 'default' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ...spec } };
}

/** The HTTP status the API server answers a pod with on /readyz, or curl's failure. */
async function apiServerAnswer(pod: { ns: string }, ip: string, port: number): Promise<string> {
  try {
    const code = (await podExec(pod, 'curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', `https://${ip}:${port}/readyz`], 15_000)).stdout.trim();
    return /^\d\d\d$/.test(code) && code !== '000' ? code : `failed (${code})`;
  } catch (e) {
    // curl exits non-zero when nothing answered (28: timed out)
    return `failed (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
  }
}

const ingress8080 = (peer: Record<string, unknown>): object => webPolicy({ ingress: [{ ...peer, toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }] });

async function waitIdentity(node: NetnsNode, ip: string, what: string, ok: (id: number | undefined) => boolean): Promise<number | undefined> {
  let seen: number | undefined;
  await eventually(`${what} (seen ${String(seen)})`, () => {
    seen = pinnedHostIdentity(node, ip);
    return ok(seen);
  }, 60_000);
  return seen;
}

test('node entities: remote-node and fromNodes on real node addresses, kube-apiserver on a node, a node joining and leaving the ipcache', { timeout: 600_000 }, async (t) => {
  requirePrivileges();
  const w = await startNetnsNodes(t, ['mn-e1', 'mn-e2'], { routingMode: 'native' });
  const [n1, n2] = w.nodes;
  assert.ok(n1 && n2);
  await n1.register({ 'meshd.test/tier': 'a' });
  await n2.register({ 'meshd.test/tier': 'x' });

  // Each node's own address is host there; the other's is a remote-node identity with its labels, the same on both.
  await waitIdentity(n1, n1.ip, 'node 1 is host on node 1', (id) => id === 1);
  const n2Id = await waitIdentity(n1, n2.ip, 'node 2 is a labelled remote node on node 1', (id) => id !== undefined && id >= 256);
  await waitIdentity(n2, n2.ip, 'node 2 is host on node 2', (id) => id === 1);
  await waitIdentity(n2, n1.ip, 'node 1 is a labelled remote node on node 2', (id) => id !== undefined && id >= 256 && id !== n2Id);

  const web = await n1.kubelet.runPod('web', { labels: { app: 'web' } });
  const client = await n2.kubelet.runPod('client', { labels: { app: 'client' } });
  await echoServer(t, web.ns, [8080]);
  await eventually('node 2 and its pod reach web before any policy', async () => (await tryConnect(n2.ns, web.ip, 8080)) === 'connected' && (await tryConnect(client.ns, web.ip, 8080)) === 'connected');

  // fromEntities remote-node: node 2's own address (a process in its namespace) is admitted, its pod is not.
  await w.kube.apply(ingress8080({ fromEntities: ['remote-node'] }));
  await eventually('the pod on node 2 is dropped', async () => (await tryConnect(client.ns, web.ip, 8080)) === 'timeout');
  assert.equal(await tryConnect(n2.ns, web.ip, 8080), 'connected');

  // A third node joins: the others learn its address as a remote node.
  const n3 = await w.addNode('mn-e3');
  await n3.register({ 'meshd.test/tier': 'y' });
  const n3Id = await waitIdentity(n1, n3.ip, 'node 3 in node 1\'s ipcache', (id) => id !== undefined && id >= 256 && id !== n2Id);
  await waitIdentity(n2, n3.ip, 'node 3 in node 2\'s ipcache', (id) => id === n3Id);
  await eventually('node 3 reaches web as a remote node', async () => (await tryConnect(n3.ns, web.ip, 8080)) === 'connected');

  // fromNodes by label: node 2 (tier x) and not node 3 (tier y).
  await w.kube.apply(ingress8080({ fromNodes: [{ matchLabels: { 'meshd.test/tier': 'x' } }] }));
  await eventually('node 3 is dropped', async () => (await tryConnect(n3.ns, web.ip, 8080)) === 'timeout');
  assert.equal(await tryConnect(n2.ns, web.ip, 8080), 'connected');
  assert.equal(await tryConnect(client.ns, web.ip, 8080), 'timeout');
  // Node 3's labels change to match: its identity follows and it is admitted.
  await n3.register({ 'meshd.test/tier': 'x' });
  await eventually('node 3, relabelled, is admitted', async () => (await tryConnect(n3.ns, web.ip, 8080)) === 'connected');
  await n3.register({ 'meshd.test/tier': 'y' });

  // The API server "runs on" node 2: reachable at its address, named by the `kubernetes` EndpointSlice.
  await w.exposeApiServer(n2, API_PORT);
  await w.exposeApiServer(n3, API_PORT);
  await echoServer(t, n2.ns, [8081]);
  await w.kube.apply({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'kubernetes', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [n2.ip], conditions: { ready: true } }],
    ports: [{ name: 'https', port: API_PORT, protocol: 'TCP' }],
  });
  const apiId = await waitIdentity(n1, n2.ip, 'node 2\'s address is the API server\'s on node 1', (id) => id !== undefined && id >= 256 && id !== n2Id);
  await waitIdentity(n3, n2.ip, 'and on node 3', (id) => id === apiId);
  assert.equal(await tryConnect(web.ns, n2.ip, 8081), 'connected');
  // Egress of web: the API server's port on kube-apiserver only.
  await w.kube.apply(webPolicy({ egress: [{ toEntities: ['kube-apiserver'], toPorts: [{ ports: [{ port: String(API_PORT), protocol: 'TCP' }] }] }] }));
  await eventually('web reaches nothing else on node 2', async () => (await tryConnect(web.ns, n2.ip, 8081)) === 'timeout');
  const answer = await apiServerAnswer(web, n2.ip, API_PORT);
  assert.match(answer, /^[2-5]\d\d$/, `the API server answered web through node 2's address: ${answer}`);
  // Node 3 has the same port open to the same API server, but is no kube-apiserver.
  assert.match(await apiServerAnswer({ ns: n2.ns }, n3.ip, API_PORT), /^[2-5]\d\d$/, 'node 3 answers from outside the policy');
  assert.match(await apiServerAnswer(web, n3.ip, API_PORT), /^failed/);

  // Node 3 leaves: its Node object goes and the others forget its address.
  await n3.stopAgent();
  await n3.deregister();
  await waitIdentity(n1, n3.ip, 'node 3 gone from node 1\'s ipcache', (id) => id === undefined);
  await waitIdentity(n2, n3.ip, 'node 3 gone from node 2\'s ipcache', (id) => id === undefined);
  // Node 2's address change: the new address is a plain remote node of node 2's labels; the old one, still
  // the API server's in the EndpointSlice but no node's any more, is the reserved kube-apiserver identity.
  await n2.exec('ip', ['addr', 'add', '192.168.77.112/24', 'dev', 'eth0']);
  await n2.register({ 'meshd.test/tier': 'x' }, ['192.168.77.112']);
  await waitIdentity(n1, n2.ip, 'node 2\'s old address is kube-apiserver only on node 1', (id) => id === 7);
  await waitIdentity(n1, '192.168.77.112', 'node 2\'s new address on node 1', (id) => id === n2Id);
});
