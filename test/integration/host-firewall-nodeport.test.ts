/**
 * The host firewall next to the nodeport program on the same native device,
 * and traffic that is not the host's. A client namespace is joined to the
 * node by a veth that `devices` names; a backend pod is wired by meshd-cni
 * behind a NodePort Service. The agent first runs without the host firewall
 * (nodeport attached alone), then with it: the host firewall goes in front
 * (tcx runs programs in order and nodeport's "pass" ends the chain), so a
 * host policy that lists only the NodePort port lets the NodePort through
 * (both programs ran) and drops another port of the host (the firewall ran),
 * while the client's connection straight to the pod, forwarded through the
 * same device, passes untouched although the host's ingress is default deny.
 * The stopped agent's firewall goes on enforcing; `meshd uninstall --node`
 * removes it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { uninstallNode } from '../../src/install/uninstall-node.js';
import { run } from '../../src/util/exec.js';
import { AgentNode } from '../helpers/agent-node.js';
import { connectFrom, startPeer } from '../helpers/datapath-peer.js';
import { until } from '../helpers/kube-nodes.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const N = 1 + (process.pid % 200);
const HOST_IP = `10.219.${N}.1`;
const CLIENT_IP = `10.219.${N}.2`;
const BASE = 22000 + (process.pid % 500) * 4;
const HOST_PORT = BASE; // a server of the host, not listed
const NODE_PORT = 30000 + (process.pid % 2000);

function manifests(backend: string | null): string {
  const svc = backend
    ? `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  ports: [{name: http, port: 8080, targetPort: 8080, nodePort: ${NODE_PORT}, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: ["${backend}"], nodeName: test-node, conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
---
`
    : '';
  return `${svc}apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-nodeport-only}
spec:
  nodeSelector: {}
  ingress:
    - fromCIDR: ["${CLIENT_IP}/32"]
      toPorts: [{ports: [{port: "${NODE_PORT}", protocol: TCP}]}]
`;
}

test('the host firewall runs in front of nodeport on a device; forwarded pod traffic passes untouched', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('hfn');
  const hostIf = sb.name('h');
  const client = await sb.netns('cl');
  await sb.vethToHost(client, { hostIf, podIf: 'eth0', hostIp: `${HOST_IP}/24`, podIp: `${CLIENT_IP}/24`, defaultRoute: true });
  await run('sysctl', ['-qw', `net.ipv4.conf.${hostIf}.forwarding=1`]);

  const node = new AgentNode({ devices: [hostIf], 'bpf.lbMapMax': 4096, 'hostFirewall.enabled': false });
  t.after(async () => {
    await node.cleanup();
    await sb.cleanup();
  });
  mkdirSync(node.manifests, { recursive: true });
  node.write('all.yaml', manifests(null));
  await startPeer(sb, null, ['serve', 'H', String(HOST_PORT)]);
  await node.start();
  const pod = await node.addPod('web');
  await startPeer(sb, pod.ns, ['serve', 'P', '8080']);
  node.write('all.yaml', manifests(pod.ip));
  const viaNodePort = async () => connectFrom(sb, client, HOST_IP, NODE_PORT);
  await until('the NodePort reaches the pod (nodeport alone on the device)', async () => ((await viaNodePort()).startsWith('P 8080 ') ? true : undefined));
  assert.equal(await connectFrom(sb, client, HOST_IP, HOST_PORT), `H ${HOST_PORT} ${CLIENT_IP}`, 'no host firewall yet');

  await node.stopAgent();
  node.config['hostFirewall.enabled'] = true;
  const agent = await node.start();
  assert.deepEqual(agent.agent.status().hostFirewall?.devices.map((d) => d.name), [hostIf]);
  assert.equal(agent.agent.status().nodePort?.devices[0]?.name, hostIf);
  await until('the NodePort, listed in the host policy, still reaches the pod', async () => ((await viaNodePort()).startsWith('P 8080 ') ? true : undefined));
  const since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, client, HOST_IP, HOST_PORT), 'TIMEOUT', 'the host firewall runs on the device');
  assert.deepEqual(node.dropReasons(since, CLIENT_IP, HOST_IP, HOST_PORT), ['POLICY_DEFAULT_DENY']);
  assert.equal(await connectFrom(sb, client, pod.ip, 8080), `P 8080 ${CLIENT_IP}`, 'forwarded to a pod: not the host\'s traffic');

  // meshd uninstall --node: the host firewall's links go with the rest of the pins.
  await node.stopAgent();
  assert.equal(await connectFrom(sb, client, HOST_IP, HOST_PORT), 'TIMEOUT', 'the stopped agent\'s host firewall goes on enforcing');
  await uninstallNode(node.config);
  assert.equal(existsSync(join(node.config['bpf.root'], 'meshd')), false);
  assert.equal(await connectFrom(sb, client, HOST_IP, HOST_PORT), `H ${HOST_PORT} ${CLIENT_IP}`, 'uninstalled: nothing judges the host\'s traffic');
});
