/**
 * The agent end to end on the kernel (Envoy off): manifests in a directory,
 * pods created through meshd-cni, policy enforced by the datapath; an agent
 * restart under a live connection; a policy edit; a broken file; status.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode, type TestPod } from '../helpers/agent-node.js';
import { echoServer, longLivedConnection, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

const PODS = ['client', 'server', 'intruder']
  .map((n) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${n}\n  namespace: default\n  labels: {app: ${n}}\n`)
  .join('---\n');

const policy = (from: string) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-l4, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: ${from}}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;

async function until(what: string, fn: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('agent: CNI pods, L4 policy in the kernel, restart under a live connection, policy edit, status', async (t) => {
  requirePrivileges();
  // A non-default socket-LB map size: the endpoint program shares those maps by pin and must size them alike.
  const node = new AgentNode({ 'bpf.lbMapMax': 4096 });
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  node.write('pods.yaml', PODS);
  node.write('policy.yaml', policy('client'));
  await node.start();

  const client = await node.addPod('client');
  const server = await node.addPod('server');
  const intruder = await node.addPod('intruder');
  await echoServer(t, server.ns, [8080, 9090]);
  /** No answer to the SYN, and the datapath reports dropping it at the server's ingress for `reason`. */
  const dropped = async (from: TestPod, port: number, reason = 'POLICY_DEFAULT_DENY', timeoutMs?: number): Promise<boolean> => {
    const since = process.hrtime.bigint();
    if ((await tryConnect(from.ns, server.ip, port, timeoutMs)) !== 'timeout') return false;
    for (let i = 0; i < 20 && node.dropReasons(since, from.ip, server.ip, port).length === 0; i++) await sleep(50);
    assert.deepEqual(node.dropReasons(since, from.ip, server.ip, port), [reason], `${from.name} -> ${port}: dropped in the kernel for ${reason}`);
    return true;
  };

  assert.equal(await tryConnect(client.ns, server.ip, 8080), 'connected');
  assert.ok(await dropped(intruder, 8080), 'intruder is dropped in the kernel');
  assert.ok(await dropped(client, 9090), 'only 8080 is allowed');

  const conn = await longLivedConnection(t, client.ns, server.ip, 8080);
  assert.ok(await conn.ping());

  // Agent down: the kernel keeps enforcing and the connection keeps working.
  await node.stopAgent();
  assert.ok(await conn.ping(), 'established connection survives the agent stopping');
  const before = node.kernelDrops('POLICY_DEFAULT_DENY', 'ingress');
  assert.equal(await tryConnect(intruder.ns, server.ip, 8080), 'timeout', 'still enforced while the agent is away');
  assert.ok(node.kernelDrops('POLICY_DEFAULT_DENY', 'ingress') > before, 'dropped in the kernel (its counter), with nobody reading events');

  // Agent up again: adopts the pins and the registered endpoints.
  const running = await node.start();
  assert.ok(await conn.ping(), 'established connection survives the agent restart');
  assert.equal(running.agent.endpointList().length, 3);
  assert.equal(await tryConnect(client.ns, server.ip, 8080), 'connected');

  // A broken edit is rejected and the last good version stays.
  node.write('policy.yaml', policy('client').replace('port: "8080"', 'port: "80800"'));
  await until('the broken file to be reported', async () =>
    running.agent.policyView().problems.some((p) => p.file === 'policy.yaml' && p.path === 'spec.ingress[0].toPorts[0].ports[0].port'),
  );
  assert.equal(await tryConnect(client.ns, server.ip, 8080), 'connected');

  // meshd status over the local API, as a user runs it.
  const { stdout } = await promisify(execFile)(process.execPath, [repoPath('bin', 'meshd.mjs'), 'status', '-o', 'json', '--api-socket', running.agent.socketPath('meshd')]);
  const status = JSON.parse(stdout) as { agent: { state: string }; counts: { endpoints: number; policies: number }; envoy: { state: string } };
  assert.equal(status.agent.state, 'running');
  assert.equal(status.counts.endpoints, 3);
  assert.equal(status.counts.policies, 1);
  assert.equal(status.envoy.state, 'disabled');

  // Relabelling a pod gives it a new identity; the datapath follows (the intruder becomes a client).
  node.write('pods.yaml', PODS.replace('labels: {app: intruder}', 'labels: {app: client}'));
  await until('the relabelled intruder to be allowed', async () => (await tryConnect(intruder.ns, server.ip, 8080, 800)) === 'connected');
  assert.ok(await dropped(intruder, 9090), 'still only 8080');

  // A valid edit that no longer allows the client takes effect for new connections.
  node.write('policy.yaml', policy('nobody'));
  await until('the edit to deny the client', () => dropped(client, 8080, 'POLICY_DEFAULT_DENY', 800));
});
