/**
 * The agent's own API-server traffic under a host policy, with the API server
 * on the underlay (test/helpers/netns-nodes.ts; a machine of its own on the
 * underlay forwards to the real kube-apiserver, and the `kubernetes`
 * EndpointSlice names its address). Node 2's agent reaches the API server
 * through its eth0 (`devices`), where `hostFirewall.enabled` enforces a
 * CiliumClusterwideNetworkPolicy selecting node 2: egress only to
 * `kube-apiserver` on the API port, ingress only from `remote-node` on the
 * ports it lists. Ports it does not list are dropped both ways, while node
 * 2's agent keeps its watch: a policy change made after the host policy is
 * enforced reaches node 2's datapath, before and after an agent restart
 * under the policy.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { eventually } from '../helpers/kube-nodes.js';
import { pinnedHostIdentity, startNetnsNodes, type NetnsNode } from '../helpers/netns-nodes.js';
import { echoServer, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { underlayHost } from '../helpers/underlay-host.js';

/** The API server's machine on the underlay (no node), and its port there. */
const API_IP = '192.168.77.250';
const API_PORT = 6443;
/** A port that machine also listens on, which node 2's host policy does not list. */
const OTHER_PORT = 8090;

function hostPolicy(ingressPorts: readonly string[]): object {
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumClusterwideNetworkPolicy',
    metadata: { name: 'node2-host' },
    spec: {
      nodeSelector: { matchLabels: { 'meshd.test/hostfw': 'on' } },
      ingress: [{ fromEntities: ['remote-node'], toPorts: [{ ports: ingressPorts.map((port) => ({ port, protocol: 'TCP' })) }] }],
      egress: [{ toEntities: ['kube-apiserver'], toPorts: [{ ports: [{ port: String(API_PORT), protocol: 'TCP' }] }] }],
    },
  };
}

/** The agents' kubeconfig with the API server at `ip:port` (the serving certificate names localhost). */
function kubeconfigAt(from: string, to: string, ip: string, port: number): string {
  const kc: unknown = JSON.parse(readFileSync(from, 'utf8'));
  assert.ok(typeof kc === 'object' && kc !== null && 'clusters' in kc && Array.isArray(kc.clusters), `${from}: no clusters`);
  for (const c of kc.clusters as Array<{ cluster: Record<string, unknown> }>) {
    c.cluster.server = `https://${ip}:${port}`;
    c.cluster['tls-server-name'] = 'localhost';
  }
  writeFileSync(to, JSON.stringify(kc), { mode: 0o600 });
  return to;
}

/** The node's established TCP connections to ip:port, as `ss` lists them. */
async function connectionsTo(node: NetnsNode, ip: string, port: number): Promise<string[]> {
  const out = (await node.exec('ss', ['-Htn', 'state', 'established', 'dst', `${ip}:${port}`])).stdout;
  return out.split('\n').filter((l) => l.trim() !== '');
}

test('host firewall: node 2\'s agent keeps its API-server watch through its eth0 under a host policy that lists kube-apiserver and drops unlisted ports', { timeout: 600_000 }, async (t) => {
  requirePrivileges();
  const w = await startNetnsNodes(t, ['mn-h1', 'mn-h2'], { routingMode: 'native', config: { 'hostFirewall.enabled': true, devices: ['eth0'] } });
  const [n1, n2] = w.nodes;
  assert.ok(n1 && n2);
  const api = await underlayHost(w, 'api', API_IP, []);
  await w.exposeApiServer({ ns: api, ip: API_IP }, API_PORT);
  await echoServer(t, api, [OTHER_PORT]);
  await w.kube.apply({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'kubernetes', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [API_IP], conditions: { ready: true } }],
    ports: [{ name: 'https', port: API_PORT, protocol: 'TCP' }],
  });
  await n1.register({ 'meshd.test/tier': 'a' });
  await n2.register({ 'meshd.test/tier': 'b', 'meshd.test/hostfw': 'on' });

  // Node 2's agent talks to the API server on the underlay, through eth0.
  n2.kubeconfig = kubeconfigAt(w.kubeconfigPath, join(n2.tmp.dir, 'kubeconfig-underlay.json'), API_IP, API_PORT);
  await n2.restartAgent();
  assert.ok((await connectionsTo(n2, API_IP, API_PORT)).length > 0, 'node 2\'s agent is connected to the API server on the underlay');
  await eventually('node 2 knows the API server\'s address and node 1\'s', () => pinnedHostIdentity(n2, API_IP) === 7 && (pinnedHostIdentity(n2, n1.ip) ?? 0) >= 256, 60_000);

  await echoServer(t, n2.ns, [8081, 8082]);
  await eventually('before the host policy node 1 reaches node 2 on both ports and node 2 the other port of the API machine', async () =>
    (await tryConnect(n1.ns, n2.ip, 8081)) === 'connected' && (await tryConnect(n1.ns, n2.ip, 8082)) === 'connected' && (await tryConnect(n2.ns, API_IP, OTHER_PORT)) === 'connected');

  // The host policy: node 2 admits node 1 on 8081 only and sends only to the API server's port.
  await w.kube.apply(hostPolicy(['8081']));
  await eventually('node 1 is dropped on 8082', async () => (await tryConnect(n1.ns, n2.ip, 8082)) === 'timeout');
  assert.equal(await tryConnect(n1.ns, n2.ip, 8081), 'connected');
  assert.equal(await tryConnect(api, n2.ip, 8081), 'timeout', 'the API machine is no remote node');
  assert.equal(await tryConnect(n2.ns, API_IP, OTHER_PORT), 'timeout', 'node 2 sends nothing to an unlisted port');
  assert.equal(await tryConnect(n1.ns, API_IP, OTHER_PORT), 'connected', 'node 1 has no host policy');

  // A change made now reaches node 2's datapath over its watch through the host firewall.
  await w.kube.apply(hostPolicy(['8081', '8082']));
  await eventually('node 1 admitted on 8082 after the change', async () => (await tryConnect(n1.ns, n2.ip, 8082)) === 'connected', 60_000);

  // A restart under the policy: the agent's new connections pass it, it syncs, and the next change arrives too.
  await n2.restartAgent();
  assert.ok((await connectionsTo(n2, API_IP, API_PORT)).length > 0, 'node 2\'s restarted agent is connected through eth0');
  await w.kube.apply(hostPolicy(['8081']));
  await eventually('node 1 dropped on 8082 again after the second change', async () => (await tryConnect(n1.ns, n2.ip, 8082)) === 'timeout', 60_000);
  assert.equal(await tryConnect(n1.ns, n2.ip, 8081), 'connected');
  assert.equal(await tryConnect(n2.ns, API_IP, OTHER_PORT), 'timeout');
  const drops = (await n2.flows()).filter((f) => f.type === 'drop' && f.src.ip === n1.ip && f.dst.ip === n2.ip && f.dst.port === 8082);
  assert.ok(drops.length > 0, 'node 2 reported its host firewall\'s drops');
});
