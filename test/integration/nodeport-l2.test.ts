/**
 * LoadBalancer Services on a bare segment, end to end: an agent in
 * Kubernetes mode on the host namespace (the node) holds the LB IPAM Lease,
 * gives a Service an address from a pool, announces it on a veth named by a
 * CiliumL2AnnouncementPolicy (and in `devices`), and bpf/nodeport.c on that
 * veth sends a client's connection to the Service's backend pod. The client
 * namespace at the other end resolves the address by ARP to the node's MAC
 * and reaches the backend, which sees the client's own address.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { test } from 'node:test';
import { LB_IP_POOLS_PATH } from '../../src/k8s/cilium-lb-ip-pool.js';
import { L2_POLICIES_PATH } from '../../src/k8s/cilium-l2-announcement-policy.js';
import { KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { run } from '../../src/util/exec.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startKubeCluster } from '../../src/devcluster/kube-cluster.js';
import { FAST_SOURCE, installMeshd, KubeNode, until } from '../helpers/kube-nodes.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const N = 1 + ((process.pid + 97) % 200);
const HOST_IP = `10.217.${N}.1`;
const CLIENT_IP = `10.217.${N}.2`;
const POOL = `10.217.${N}.200`;
const PORT = 18081;

const PEER_ECHO = "require('net').createServer((s) => { s.on('error', () => {}); s.end(s.remoteAddress.replace(/^::ffff:/, '')); }).listen(8080, '0.0.0.0', () => console.log('ready'));";
const CLIENT =
  "const s = require('net').connect({ host: process.argv[1], port: Number(process.argv[2]) }); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => { console.log('got ' + d); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(0); }); setTimeout(() => { console.log('timeout'); process.exit(0); }, 1500);";

test('a client on the segment resolves an L2-announced LoadBalancer address by ARP and reaches a backend pod', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('npl2');
  const made: { node?: KubeNode; agent?: AgentNode } = {};
  // Registered before the cluster's own close (hooks run in the order registered): pods go while the API server runs.
  t.after(async () => {
    await made.node?.kubelet.cleanup();
    await made.agent?.cleanup();
    await sb.cleanup();
  });
  const hostIf = sb.name('h');
  const client = await sb.netns('cl');
  // The client is on the node's segment: the pool address is in its subnet, so it asks by ARP.
  await sb.vethToHost(client, { hostIf, podIf: 'eth0', hostIp: `${HOST_IP}/24`, podIp: `${CLIENT_IP}/24`, defaultRoute: true });
  await run('sysctl', ['-qw', `net.ipv4.conf.${hostIf}.forwarding=1`]);
  const hostMac = (await run('cat', [`/sys/class/net/${hostIf}/address`])).stdout.trim();

  const agent = new AgentNode({ nodeName: 'node-a', devices: [hostIf], 'l2announcements.enabled': true, 'l2announcements.leaseDuration': '3s', 'l2announcements.leaseRetryPeriod': '500ms' }, 3);
  made.agent = agent;
  mkdirSync(agent.manifests, { recursive: true });
  const kube = await startKubeCluster({ t });
  await installMeshd(kube);
  await kube.ensureDefaultServiceAccount('default');
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  await agent.start({ standaloneDir: undefined, kubeconfigPath: sa.kubeconfigPath, kubeSource: FAST_SOURCE });
  const node = (made.node = new KubeNode('node-a', agent, kube));
  const admin = new KubeClient(resolveKubeConfig({ kubeconfigPath: kube.kubeconfigPath }).kubeConfig);
  t.after(() => admin.close());

  const pod = await node.kubelet.runPod('l2-backend', { labels: { app: 'l2-web' }, containerPorts: [8080] });
  const server = spawn('ip', ['netns', 'exec', pod.ns, process.execPath, '-e', PEER_ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => server.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    server.stdout.once('data', () => resolve());
    server.once('exit', (c) => reject(new Error(`backend server exited (${c})`)));
  });

  await admin.send('POST', LB_IP_POOLS_PATH, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'segment' }, spec: { blocks: [{ cidr: `${POOL}/32` }] } });
  await admin.send('POST', L2_POLICIES_PATH, { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumL2AnnouncementPolicy', metadata: { name: 'segment' }, spec: { interfaces: [`^${hostIf}$`], loadBalancerIPs: true } });
  await admin.send('POST', '/api/v1/namespaces/default/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'l2-web' },
    spec: { type: 'LoadBalancer', loadBalancerClass: 'io.cilium/l2-announcer', selector: { app: 'l2-web' }, ports: [{ name: 'http', port: PORT, targetPort: 8080 }] },
  });
  // No controller-manager runs: the Service's EndpointSlice is written as it would write it.
  await admin.send('POST', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'l2-web-1', labels: { 'kubernetes.io/service-name': 'l2-web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [pod.ip], nodeName: 'node-a', conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  });

  const arp = await until(`the client's ARP request for ${POOL} is answered`, async () => {
    const r = await run('ip', ['netns', 'exec', client, 'arping', '-c', '1', '-w', '2', '-I', 'eth0', POOL]).catch(() => ({ stdout: '' }));
    return /reply from \S+ \[([0-9a-fA-F:]{17})\]/.exec(r.stdout)?.[1]?.toLowerCase();
  });
  assert.equal(arp, hostMac, 'the node answers ARP for the address on the announced interface');
  const got = await until(`the client reaches the backend through ${POOL}:${PORT}`, async () => {
    const r = (await run('ip', ['netns', 'exec', client, process.execPath, '-e', CLIENT, POOL, String(PORT)], { timeoutMs: 10_000 })).stdout.trim();
    return r.startsWith('got ') ? r : undefined;
  });
  assert.equal(got, `got ${CLIENT_IP}`, 'the backend pod answered and saw the client\'s own address');
});
