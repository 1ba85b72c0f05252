import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { timestampFromNs, type Flow } from './flow.js';
import { FlowObserver } from './observer.js';
import { ObserverServer } from './observer-server.js';
import { loadHubbleProtos } from './protos.js';
import { parsePeer, Relay } from './relay.js';

const T0 = BigInt(Date.now()) * 1_000_000n;

function flow(node: string, i: number, verdict: Flow['verdict'] = 'FORWARDED'): Flow {
  return {
    time: timestampFromNs(T0 + BigInt(i) * 1_000_000n),
    uuid: `${node}-${i}`,
    verdict,
    source: { identity: 300, labels: [] },
    destination: { identity: 301, labels: [] },
    Type: 'L3_L4',
    node_name: node,
    event_type: { type: 5, sub_type: 0 },
    traffic_direction: 'EGRESS',
  };
}

function client(socket: string) {
  const { Observer } = loadHubbleProtos();
  const c = new Observer(`unix:${socket}`, grpc.credentials.createInsecure());
  const unary = (method: string) =>
    new Promise<unknown>((resolve, reject) => {
      const m = c[method];
      if (typeof m !== 'function') throw new Error(method);
      m.call(c, {}, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r)));
    });
  const flows = (req: Record<string, unknown>, until?: (got: Array<Record<string, unknown>>) => boolean) =>
    new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
      const m = c.getFlows;
      if (typeof m !== 'function') throw new Error('getFlows');
      const s: grpc.ClientReadableStream<Record<string, unknown>> = m.call(c, req);
      const got: Array<Record<string, unknown>> = [];
      s.on('data', (d: Record<string, unknown>) => {
        got.push(d);
        if (until?.(got)) s.cancel();
      });
      s.on('end', () => resolve(got));
      s.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve(got) : reject(e)));
    });
  return { unary, flows, close: () => c.close() };
}

test('relay: merges the nodes\' flows in time order, reports an unavailable node, sums ServerStatus, lists nodes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-relay-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const nodes = ['node-a', 'node-b'].map((name) => ({ name, obs: new FlowObserver({ capacity: 63, nodeName: name, version: 'test' }), socket: join(dir, `${name}.sock`) }));
  // node-b is reached over TCP (hubble.listenAddress), node-a over its unix socket.
  const servers = nodes.map((n, i) => new ObserverServer({ observer: n.obs, socketPath: n.socket, ...(i === 1 ? { listenAddress: '127.0.0.1:0' } : {}) }));
  for (const s of servers) await s.listen();
  const tcpPort = servers[1]?.tcpPort;
  assert.ok(tcpPort !== undefined && tcpPort > 0);
  t.after(async () => {
    for (const s of servers) await s.close();
  });
  // Interleaved times: a has the even milliseconds, b the odd ones.
  nodes[0]?.obs.add([0, 2, 4, 6].map((i) => flow('node-a', i)));
  nodes[1]?.obs.add([1, 3, 5, 7].map((i) => flow('node-b', i, i === 5 ? 'DROPPED' : 'FORWARDED')));

  const relay = new Relay({
    peers: [
      { name: 'node-a', address: `unix://${nodes[0]?.socket ?? ''}` },
      { name: 'node-b', address: `127.0.0.1:${tcpPort}` },
      { name: 'node-gone', address: `unix://${join(dir, 'gone.sock')}` },
    ],
    deadlineMs: 1000,
  });
  const relaySocket = join(dir, 'relay.sock');
  await relay.listen({ socketPath: relaySocket });
  t.after(() => relay.close());
  const c = client(relaySocket);
  t.after(() => c.close());

  const last5 = await c.flows({ number: '5' });
  const unavailable = last5.find((r) => r.response_types === 'node_status');
  assert.deepEqual((unavailable?.node_status as { node_names: string[] } | undefined)?.node_names, ['node-gone']);
  const uuids = last5.filter((r) => r.response_types === 'flow').map((r) => (r.flow as { uuid: string }).uuid);
  assert.deepEqual(uuids, ['node-b-3', 'node-a-4', 'node-b-5', 'node-a-6', 'node-b-7']);
  const names = last5.filter((r) => r.response_types === 'flow').map((r) => r.node_name);
  assert.deepEqual(names, ['node-b', 'node-a', 'node-b', 'node-a', 'node-b']);

  const drops = await c.flows({ number: '10', whitelist: [{ verdict: ['DROPPED'] }] });
  assert.deepEqual(drops.filter((r) => r.response_types === 'flow').map((r) => (r.flow as { uuid: string }).uuid), ['node-b-5']);

  const st = (await c.unary('serverStatus')) as { num_flows: string; max_flows: string; num_connected_nodes: { value: number }; num_unavailable_nodes: { value: number }; unavailable_nodes: string[] };
  assert.equal(st.num_flows, '8');
  assert.equal(st.max_flows, '126');
  assert.equal(st.num_connected_nodes.value, 2);
  assert.equal(st.num_unavailable_nodes.value, 1);
  assert.deepEqual(st.unavailable_nodes, ['node-gone']);
  const list = (await c.unary('getNodes')) as { nodes: Array<{ name: string; state: string }> };
  assert.deepEqual(list.nodes.map((n) => `${n.name}:${n.state}`), ['node-a:NODE_CONNECTED', 'node-b:NODE_CONNECTED', 'node-gone:NODE_UNAVAILABLE']);

  // Follow: new flows of both nodes arrive through the relay, in time order.
  const followed = c.flows({ follow: true }, (got) => got.filter((r) => r.response_types === 'flow').length >= 2);
  await new Promise((r) => setTimeout(r, 300));
  nodes[1]?.obs.add([flow('node-b', 21)]);
  nodes[0]?.obs.add([flow('node-a', 20)]);
  const got = await followed;
  assert.deepEqual(got.filter((r) => r.response_types === 'flow').map((r) => (r.flow as { uuid: string }).uuid), ['node-a-20', 'node-b-21']);
});

test('relay peers are NAME=unix:///path or NAME=host:port', () => {
  assert.deepEqual(parsePeer('node-1=unix:///run/hubble.sock'), { name: 'node-1', address: 'unix:///run/hubble.sock' });
  assert.deepEqual(parsePeer('node-2=10.0.0.2:4244'), { name: 'node-2', address: '10.0.0.2:4244' });
  assert.throws(() => parsePeer('10.0.0.2:4244'), (e: unknown) => isMeshdError(e, 'MESHD_OBSERVE_RELAY_PEER'));
});
