/**
 * The real `hubble` CLI (built by scripts/hubble-cli.sh from the pinned cilium
 * module) against `meshd relay` in front of two node observers and one node
 * that is down: `hubble status` counts the nodes as Hubble Relay reports
 * them, `hubble list nodes` lists their states, `hubble observe` gets both
 * nodes' flows merged in time order; `meshd observe` works against it too.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { z } from 'zod';
import { timestampFromNs, type Flow } from '../../src/observe/flow.js';
import { FlowObserver } from '../../src/observe/observer.js';
import { ObserverServer } from '../../src/observe/observer-server.js';
import { repoPath } from '../../src/util/paths.js';

const run = promisify(execFile);
const T0 = BigInt(Date.now()) * 1_000_000n;

const flow = (node: string, i: number, verdict: Flow['verdict']): Flow => ({
  time: timestampFromNs(T0 + BigInt(i) * 1_000_000n),
  uuid: `${node}-${i}`,
  verdict,
  IP: { source: `10.0.${i}.1`, destination: '10.0.0.9', ipVersion: 'IPv4' },
  l4: { protocol: 'TCP', TCP: { source_port: 40000 + i, destination_port: 8080 } },
  source: { identity: 300, labels: ['k8s:app=client'], namespace: 'default', pod_name: `client-${node}` },
  destination: { identity: 301, labels: ['k8s:app=api'], namespace: 'default', pod_name: 'api' },
  Type: 'L3_L4',
  node_name: node,
  event_type: { type: verdict === 'DROPPED' ? 1 : 5, sub_type: 0 },
  traffic_direction: 'INGRESS',
  ...(verdict === 'DROPPED' ? { drop_reason_desc: 'POLICY_DENIED' } : {}),
});

test('the hubble CLI against meshd relay: status with connected and unavailable nodes, nodes, merged flows', async (t) => {
  const hubble = (await run('bash', [repoPath('scripts', 'hubble-cli.sh'), '--print-bin'])).stdout.trim();
  assert.ok(existsSync(hubble), `${hubble} is missing: run scripts/hubble-cli.sh (setup does)`);
  const dir = mkdtempSync(join(tmpdir(), 'meshd-relay-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const nodes = ['node-a', 'node-b'].map((name) => ({ name, obs: new FlowObserver({ capacity: 255, nodeName: name, version: 'test' }), socket: join(dir, `${name}.sock`) }));
  for (const n of nodes) {
    const s = new ObserverServer({ observer: n.obs, socketPath: n.socket });
    await s.listen();
    t.after(() => s.close());
  }
  nodes[0]?.obs.add([flow('node-a', 0, 'FORWARDED'), flow('node-a', 2, 'DROPPED')]);
  nodes[1]?.obs.add([flow('node-b', 1, 'DROPPED'), flow('node-b', 3, 'FORWARDED')]);

  // meshd relay as its own process, as an operator runs it.
  const relaySock = join(dir, 'relay.sock');
  const peers = [...nodes.map((n) => `${n.name}=unix://${n.socket}`), `node-down=unix://${join(dir, 'down.sock')}`];
  const relay = spawn(process.execPath, [repoPath('bin', 'meshd.mjs'), 'relay', '--socket', relaySock, ...peers.flatMap((p) => ['--peer', p])], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => {
    relay.kill('SIGKILL');
  });
  let err = '';
  relay.stderr.on('data', (b: Buffer) => (err += b.toString()));
  for (let i = 0; i < 300 && !err.includes('listening'); i += 1) await new Promise((r) => setTimeout(r, 100));
  assert.match(err, /listening on unix:/);
  const server = `unix://${relaySock}`;

  const status = (await run(hubble, ['status', '--server', server], { timeout: 30_000 })).stdout;
  assert.match(status, /Current\/Max Flows:\s+4\/510/);
  assert.match(status, /Connected Nodes:\s+2\/3/);
  assert.match(status, /Unavailable Nodes:\s+1[\s\S]*node-down/);

  const list = (await run(hubble, ['list', 'nodes', '--server', server, '-o', 'json'], { timeout: 30_000 })).stdout;
  const states = z.array(z.object({ name: z.string(), state: z.string() })).parse(JSON.parse(list)).map((n) => `${n.name}:${n.state}`).sort();
  assert.deepEqual(states, ['node-a:NODE_CONNECTED', 'node-b:NODE_CONNECTED', 'node-down:NODE_UNAVAILABLE']);

  const lines = (await run(hubble, ['observe', '--server', server, '--last', '10', '-o', 'jsonpb'], { timeout: 30_000 })).stdout.split('\n').filter((l) => l.trim() !== '');
  const flows = lines.flatMap((l) => {
    const r = z.object({ flow: z.object({ uuid: z.string() }).optional(), node_name: z.string().optional() }).parse(JSON.parse(l));
    return r.flow ? [`${r.node_name ?? ''}:${r.flow.uuid}`] : [];
  });
  assert.deepEqual(flows, ['node-a:node-a-0', 'node-b:node-b-1', 'node-a:node-a-2', 'node-b:node-b-3']);

  const drops = (await run(process.execPath, [repoPath('bin', 'meshd.mjs'), 'observe', '--server', server, '--verdict', 'DROPPED'], { timeout: 30_000 })).stdout;
  assert.equal(drops.trim().split('\n').length, 2, drops);
  assert.match(drops, /default\/client-node-b:40001 \(ID:300\) -> default\/api:8080 \(ID:301\) drop DROPPED \(POLICY_DENIED\)/);
});
