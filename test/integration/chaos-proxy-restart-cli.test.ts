/**
 * `meshd proxy restart` against a running agent: the CLI asks the agent
 * (POST /v1/proxy/restart), the Envoy is replaced make-before-break, a
 * request through the L7 policy keeps being answered, and `meshd status`
 * shows the new instance and the replacement.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startHttpClient } from '../helpers/l7-peers.js';
import { requirePrivileges } from '../helpers/privileged.js';

const SERVER = `require('http').createServer((q, s) => s.end('api ' + q.url)).listen(8080, '0.0.0.0', () => console.log('ready'));`;

test('meshd proxy restart: the agent replaces its Envoy, requests keep being answered, status shows the new one', { timeout: 240_000 }, async (t) => {
  requirePrivileges();
  const node = new AgentNode({ 'envoy.enabled': true });
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  copyFileSync(repoPath('examples', 'demo', 'pods.yaml'), join(node.manifests, 'pods.yaml'));
  copyFileSync(repoPath('examples', 'demo', 'api-policy.yaml'), join(node.manifests, 'api-policy.yaml'));
  const running = await node.start();
  const client = await node.addPod('client');
  const api = await node.addPod('api');
  const server = spawn('ip', ['netns', 'exec', api.ns, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => server.kill('SIGKILL'));
  await new Promise<void>((resolve) => server.stdout.once('data', () => resolve()));
  const fromClient = await startHttpClient(node.sb, client.ns, { flows: () => running.agent.recentFlows() });
  const url = `http://${api.ip}:8080/api/v1/users`;
  assert.deepEqual(await fromClient.request({ url }), { kind: 'answered', status: 200, body: 'api /api/v1/users' });

  const cli = async (...args: string[]) => {
    const { stdout } = await promisify(execFile)(process.execPath, [repoPath('bin', 'meshd.mjs'), ...args, '-o', 'json', '--api-socket', running.agent.socketPath('meshd')]);
    return JSON.parse(stdout) as unknown;
  };
  type Status = { envoy: { envoy: { state: string; pid: number; replacements: number; instances: Array<{ id: string; pid: number; state: string }> } } };
  const before = (await cli('status')) as Status;
  assert.equal(before.envoy.envoy.instances.length, 1);
  const restarted = (await cli('proxy', 'restart')) as { replaced: number; instances: string[] };
  assert.equal(restarted.replaced, 1);
  assert.equal(restarted.instances.length, 1);
  const after = (await cli('status')) as Status;
  assert.equal(after.envoy.envoy.state, 'ready');
  assert.equal(after.envoy.envoy.replacements, 1);
  assert.deepEqual(after.envoy.envoy.instances.map((i) => i.id), restarted.instances);
  assert.notEqual(after.envoy.envoy.pid, before.envoy.envoy.pid, 'a new Envoy');
  assert.throws(() => process.kill(before.envoy.envoy.pid, 0), 'the old Envoy is gone');
  assert.deepEqual(await fromClient.request({ url }), { kind: 'answered', status: 200, body: 'api /api/v1/users' });
  assert.deepEqual(await fromClient.request({ url: `http://${api.ip}:8080/admin` }), { kind: 'denied', status: 403, body: 'Access denied' });
});
