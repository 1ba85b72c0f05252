/**
 * The agent with the node's Envoy: the docs' HTTP example policy from the
 * demo manifests, pods through meshd-cni, requests judged by Envoy on the
 * L7 port and by the kernel elsewhere; the node CLI against the live agent.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startHttpClient } from '../helpers/l7-peers.js';
import { requirePrivileges } from '../helpers/privileged.js';

const SERVER = `require('http').createServer((q, s) => s.end('api ' + q.method + ' ' + q.url)).listen(8080, '0.0.0.0', () => console.log('ready'));
require('http').createServer((q, s) => s.end('metrics')).listen(9090, '0.0.0.0');`;

test('agent with Envoy: HTTP policy through the node proxy, kernel-only port, node CLI, status', async (t) => {
  requirePrivileges();
  const node = new AgentNode({ 'envoy.enabled': true, 'bpf.events.sampleNewConnections': 1 });
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  copyFileSync(repoPath('examples', 'demo', 'pods.yaml'), join(node.manifests, 'pods.yaml'));
  copyFileSync(repoPath('examples', 'demo', 'api-policy.yaml'), join(node.manifests, 'api-policy.yaml'));
  const running = await node.start();
  const client = await node.addPod('client');
  const api = await node.addPod('api');
  const intruder = await node.addPod('intruder');

  const server = spawn('ip', ['netns', 'exec', api.ns, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    server.kill('SIGKILL');
  });
  await new Promise<void>((resolve) => server.stdout.once('data', () => resolve()));

  const base = `http://${api.ip}:8080`;
  const events = { flows: () => running.agent.recentFlows() };
  const fromClient = await startHttpClient(node.sb, client.ns, events);
  const fromIntruder = await startHttpClient(node.sb, intruder.ns, events);
  assert.deepEqual(await fromClient.request({ url: `${base}/api/v1/users` }), { kind: 'answered', status: 200, body: 'api GET /api/v1/users' });
  assert.deepEqual(await fromClient.request({ url: `${base}/api/v1/orders`, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }), {
    kind: 'answered',
    status: 200,
    body: 'api POST /api/v1/orders',
  });
  assert.deepEqual(await fromClient.request({ url: `${base}/admin` }), { kind: 'denied', status: 403, body: 'Access denied' });
  assert.deepEqual(await fromClient.request({ url: `http://${api.ip}:9090/metrics` }), { kind: 'answered', status: 200, body: 'metrics' });
  // No rule admits the intruder: its SYN is dropped at the api's ingress, in the kernel.
  assert.deepEqual(await fromIntruder.request({ url: `${base}/api/v1/users`, timeoutMs: 1500 }), { kind: 'dropped', reason: 'POLICY_DEFAULT_DENY', direction: 'ingress' });

  const cli = async (...args: string[]) => {
    const { stdout } = await promisify(execFile)(process.execPath, [repoPath('bin', 'meshd.mjs'), ...args, '-o', 'json', '--api-socket', running.agent.socketPath('meshd')]);
    return JSON.parse(stdout) as Record<string, unknown>;
  };

  // meshd status: Envoy ready, the listeners' version ACKed, endpoint and policy counts.
  const status = (await cli('status')) as {
    envoy: { envoy: { state: string; version: string }; xds: { types: { listeners?: { acked?: { snapshotVersion: string } } } }; lastNack: unknown; lastError: unknown };
    proxy: { version: string; error: string | null };
    counts: { endpoints: number; policies: number };
  };
  assert.equal(status.envoy.envoy.state, 'ready');
  assert.match(status.envoy.envoy.version, /^1\.40\./);
  assert.equal(status.envoy.xds.types.listeners?.acked?.snapshotVersion, status.proxy.version, 'the served listeners are ACKed');
  assert.equal(status.proxy.error, null);
  assert.equal(status.envoy.lastNack, null);
  assert.equal(status.envoy.lastError, null);
  assert.deepEqual([status.counts.endpoints, status.counts.policies], [3, 1]);

  const endpoints = (await cli('endpoint', 'list')) as { endpoints: Array<{ id: string; identity: number; ips: string[] }> };
  assert.deepEqual(endpoints.endpoints.map((e) => e.id).sort(), ['default/api', 'default/client', 'default/intruder']);
  const apiEp = endpoints.endpoints.find((e) => e.id === 'default/api');
  assert.deepEqual(apiEp?.ips, [api.ip]);

  const ids = (await cli('identity', 'list')) as { identities: Array<{ id: number; labels: string[] }> };
  assert.ok(ids.identities.some((i) => i.id === apiEp?.identity && i.labels.includes('k8s:app=api')), JSON.stringify(ids.identities));

  const kernel = (await cli('bpf', 'policy', 'get', 'default/api')) as { entries: Array<{ verdict: string; proxyPort: number }> };
  const redirects = kernel.entries.filter((e) => e.verdict === 'REDIRECT');
  assert.ok(redirects.length > 0 && redirects.every((e) => e.proxyPort >= node.ports.first && e.proxyPort <= node.ports.last), JSON.stringify(kernel.entries));

  const proxy = (await cli('proxy', 'list')) as { listeners: Array<{ name: string; endpoints: string[]; ackedVersion: string | null }> };
  assert.ok(proxy.listeners.some((l) => l.endpoints.some((e) => e.startsWith('default/api')) && l.ackedVersion !== null), JSON.stringify(proxy.listeners));

  const pol = (await cli('policy', 'get', '--endpoint', 'default/api')) as { policies: Array<{ key: string; state: string }>; endpointPolicies: Array<{ endpointId: string }> };
  assert.deepEqual(pol.policies.map((p) => p.state), ['enforced']);
  assert.deepEqual(pol.endpointPolicies.map((p) => p.endpointId), ['default/api']);

  // Live trace: the same flow format as the offline scenario.
  const flows = join(node.tmp.dir, 'flows.yaml');
  writeFileSync(
    flows,
    [
      'flows:',
      '  - {src: default/client, dst: default/api, dport: 8080, protocol: TCP, http: {method: GET, path: /api/v1/users}}',
      '  - {src: default/client, dst: default/api, dport: 8080, protocol: TCP, http: {method: GET, path: /admin}}',
      '  - {src: default/intruder, dst: default/api, dport: 9090, protocol: TCP}',
      '',
    ].join('\n'),
  );
  const trace = (await cli('policy', 'trace', '--flows', flows)) as { flows: Array<{ verdict: string }> };
  assert.deepEqual(trace.flows.map((f) => f.verdict), ['ALLOWED', 'DENIED', 'DENIED']);
});
