/**
 * LB IPAM as the agent runs it (src/agent/run.ts wiring), end to end: an
 * agent in Kubernetes mode holds the `meshd-lb-ipam` Lease, gives a
 * LoadBalancer Service an address from a pool, and its socket LB serves that
 * address — a pod connecting to it reaches the Service's backend.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { LB_IP_POOLS_PATH } from '../../src/k8s/cilium-lb-ip-pool.js';
import { LbServiceSchema } from '../../src/lbipam/lb-service.js';
import { startKubeNodes, until } from '../helpers/kube-nodes.js';
import { run } from '../../src/util/exec.js';
import { echoServer } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

/** One echo exchange from inside `ns`, the process in the agent's cgroup (where the socket LB's hooks attach): 'connected' or why not. */
const PROBE = "const s = require('net').connect({ host: process.argv[1], port: 80 }, () => s.write('hi')); s.once('data', () => { console.log('connected'); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(0); }); setTimeout(() => { console.log('timeout'); process.exit(0); }, 1500);";
async function connectInCgroup(cgroup: string, ns: string, ip: string): Promise<string> {
  const r = await run('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, 'ip', 'netns', 'exec', ns, process.execPath, '-e', PROBE, ip], { timeoutMs: 10_000 });
  return r.stdout.trim();
}

test('an agent allocates a LoadBalancer address and a pod reaches the Service through it', async (t) => {
  requirePrivileges();
  const { kube, nodes, defer } = await startKubeNodes(t, ['node-a']);
  const [a] = nodes;
  assert.ok(a);
  const admin = new KubeClient(resolveKubeConfig({ kubeconfigPath: kube.kubeconfigPath }).kubeConfig);
  defer(() => admin.close());
  const server = await a.kubelet.runPod('lb-server', { labels: { app: 'lb-server' }, containerPorts: [8080] });
  const client = await a.kubelet.runPod('lb-client', { labels: { app: 'lb-client' } });
  await echoServer({ after: defer }, server.ns, [8080]);

  await admin.send('POST', LB_IP_POOLS_PATH, { apiVersion: 'cilium.io/v2', kind: 'CiliumLoadBalancerIPPool', metadata: { name: 'lb' }, spec: { blocks: [{ cidr: '10.90.0.0/30' }] } });
  await admin.send('POST', '/api/v1/namespaces/default/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'lb-web' },
    spec: { type: 'LoadBalancer', selector: { app: 'lb-server' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  });
  // No controller-manager runs: the Service's EndpointSlice is written as it would write it.
  await admin.send('POST', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'lb-web-1', labels: { 'kubernetes.io/service-name': 'lb-web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [server.ip], conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  });

  const ip = await until('lb-web has a load-balancer address', async () => {
    const s = LbServiceSchema.parse(await admin.getJson('/api/v1/namespaces/default/services/lb-web'));
    return s.status?.loadBalancer?.ingress?.[0]?.ip;
  });
  assert.equal(ip, '10.90.0.0');
  assert.equal(a.running.loadBalancers?.lbIpam.isLeader(), true, 'the agent holds the LB IPAM Lease');
  await until(`a pod reaches lb-web through ${ip}`, async () => ((await connectInCgroup(a.agent.cgroup.path, client.ns, ip)) === 'connected' ? true : undefined));
});
