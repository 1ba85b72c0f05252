/**
 * The behaviour every xDS mode and transport must show against a real Envoy
 * (run by xds-envoy-sotw.test.ts and xds-envoy-delta.test.ts):
 *   1. listeners, routes, clusters and endpoints arrive and carry traffic;
 *   2. an update (new route + cluster, removed cluster + listener) applies
 *      without restart and without dropping an unaffected keep-alive connection;
 *   3. an invalid resource is NACKed: the last good version stays, the NACK is
 *      reported with Envoy's message (status, log once, metric), and a valid
 *      snapshot afterwards recovers.
 */
import assert from 'node:assert/strict';
import { type Server, createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Client } from 'undici';
import { type EnvoyHandle, startEnvoy } from '../helpers/xds-envoy.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { MemoryLogger } from '../../xds/log.js';
import { XdsServer } from '../../xds/server.js';
import type { SnapshotInput } from '../../xds/snapshot.js';
import { isXdsError } from '../../xds/errors.js';
import { TYPE_URL } from '../../xds/type-urls.js';

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

export function listener(name: string, routeConfig: string): Record<string, unknown> {
  return {
    '@type': TYPE_URL.listeners,
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM,
              stat_prefix: name,
              rds: { route_config_name: routeConfig, config_source: { ads: {}, resource_api_version: 'V3' } },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
            },
          },
        ],
      },
    ],
  };
}

export function edsCluster(name: string): Record<string, unknown> {
  return {
    '@type': TYPE_URL.clusters,
    name,
    type: 'EDS',
    connect_timeout: '1s',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
  };
}

export function staticCluster(name: string, port: number): Record<string, unknown> {
  return {
    '@type': TYPE_URL.clusters,
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
    },
  };
}

export function endpoints(cluster: string, port: number): Record<string, unknown> {
  return {
    '@type': TYPE_URL.endpoints,
    cluster_name: cluster,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  };
}

export function routeConfig(name: string, routes: Array<[prefix: string, cluster: string]>): Record<string, unknown> {
  return {
    '@type': TYPE_URL.routes,
    name,
    virtual_hosts: [{ name: 'all', domains: ['*'], routes: routes.map(([prefix, cluster]) => ({ match: { prefix }, route: { cluster } })) }],
  };
}

export async function upstream(t: TestContext, name: string): Promise<{ port: number; server: Server }> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`${name} ${req.url ?? ''}`);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  t.after(() => new Promise<void>((res) => server.close(() => res())));
  const addr = server.address();
  assert.ok(addr && typeof addr === 'object');
  return { port: addr.port, server };
}

function get(v: unknown, ...path: Array<string | number>): unknown {
  let cur = v;
  for (const p of path) {
    if (typeof p === 'number') cur = Array.isArray(cur) ? cur[p] : undefined;
    else cur = typeof cur === 'object' && cur !== null && !Array.isArray(cur) ? Object.entries(cur).find(([k]) => k === p)?.[1] : undefined;
  }
  return cur;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** A section of /config_dump by its @type suffix. */
async function dumpSection(envoy: EnvoyHandle, suffix: string): Promise<unknown> {
  const dump = await envoy.adminJson('/config_dump');
  const section = arr(get(dump, 'configs')).find((c) => String(get(c, '@type')).endsWith(suffix));
  assert.ok(section, `config_dump has no ${suffix}`);
  return section;
}

export async function activeListeners(envoy: EnvoyHandle): Promise<Map<string, string>> {
  const s = await dumpSection(envoy, 'ListenersConfigDump');
  const out = new Map<string, string>();
  for (const l of arr(get(s, 'dynamic_listeners'))) {
    const active = get(l, 'active_state');
    if (active) out.set(String(get(l, 'name')), String(get(active, 'version_info')));
  }
  return out;
}

export async function dynamicClusters(envoy: EnvoyHandle): Promise<Map<string, string>> {
  const s = await dumpSection(envoy, 'ClustersConfigDump');
  const out = new Map<string, string>();
  for (const c of arr(get(s, 'dynamic_active_clusters'))) out.set(String(get(c, 'cluster', 'name')), String(get(c, 'version_info')));
  return out;
}

/** A fresh TCP connection (fetch() would reuse its pooled keep-alive one). */
function connectOnce(port: number): Promise<void> {
  return new Promise((res, rej) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      res();
    });
    s.once('error', rej);
  });
}

async function httpGet(client: Client, path: string): Promise<{ status: number; body: string }> {
  const r = await client.request({ path, method: 'GET' });
  return { status: r.statusCode, body: await r.body.text() };
}

export interface Transport {
  name: 'unix' | 'tcp';
  listen(dir: string): string;
}

export const TRANSPORTS: Transport[] = [
  { name: 'unix', listen: (dir) => `unix:${join(dir, 'run', 'xds.sock')}` },
  { name: 'tcp', listen: () => '127.0.0.1:0' },
];

export async function envoyBehaviour(t: TestContext, mode: 'sotw' | 'delta', transport: Transport): Promise<void> {
  requirePrivileges();
  const dir = mkdtempSync(join(tmpdir(), `meshd-xds-${mode}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = new MemoryLogger();
  const server = new XdsServer({ log });
  t.after(() => server.close());
  const bound = await server.listen(transport.listen(dir));
  const nodeId = `node-${mode}-${transport.name}`;

  const a = await upstream(t, 'A');
  const b = await upstream(t, 'B');
  const c = await upstream(t, 'C');

  const v1: SnapshotInput = {
    version: 'v1',
    resources: {
      clusters: [edsCluster('a'), staticCluster('c', c.port)],
      endpoints: [endpoints('a', a.port)],
      listeners: [listener('l1', 'r1'), listener('l2', 'r2')],
      routes: [routeConfig('r1', [['/a', 'a']]), routeConfig('r2', [['/', 'c']])],
    },
  };
  server.setSnapshot(nodeId, v1);
  const envoy = await startEnvoy({ xds: bound.address, mode, nodeId });
  t.after(() => envoy.stop());
  /**
   * Version Envoy shows for a resource: SotW tags a resource with the
   * version_info of the response that last changed it (a prefix match allows
   * the "+keep" of a make-before-break step); delta shows the per-resource
   * content hash.
   */
  const expectVersions = (kind: 'listeners' | 'clusters', want: Record<string, string>, got: Map<string, string>): void => {
    const snap = server.cache.getSnapshot(nodeId)?.snapshot;
    assert.deepEqual([...got.keys()].sort(), Object.keys(want).sort(), `${kind} present`);
    for (const [name, sotwVersion] of Object.entries(want)) {
      const v = got.get(name) ?? '';
      if (mode === 'delta') assert.equal(v, snap?.types[kind].items.get(name)?.version, `${kind} ${name}`);
      else assert.ok(v === sotwVersion || v.startsWith(`${sotwVersion}+`), `${kind} ${name}: version ${v}, want ${sotwVersion}`);
    }
  };
  const failMsg = (): string => `\n--- envoy log ---\n${envoy.logs().slice(-4000)}`;

  // 1. everything arrives and carries traffic
  await server.waitForAck(nodeId, 'v1', { timeoutMs: 15_000 }).catch((e: unknown) => assert.fail(`${String(e)}${failMsg()}`));
  assert.equal(await envoy.admin('/ready'), 'LIVE\n');
  expectVersions('listeners', { l1: 'v1', l2: 'v1' }, await activeListeners(envoy));
  expectVersions('clusters', { a: 'v1', c: 'v1' }, await dynamicClusters(envoy));
  const clustersText = await envoy.admin('/clusters');
  assert.match(clustersText, new RegExp(`^a::127\\.0\\.0\\.1:${a.port}::health_flags::healthy$`, 'm'));

  const l1 = new Client(`http://127.0.0.1:${await envoy.listenerPort('l1')}`, { pipelining: 1, keepAliveTimeout: 60_000 });
  t.after(() => l1.close());
  let connects = 0;
  let disconnects = 0;
  l1.on('connect', () => connects++);
  l1.on('disconnect', () => disconnects++);
  assert.deepEqual(await httpGet(l1, '/a'), { status: 200, body: 'A /a' });
  assert.equal((await httpGet(l1, '/b')).status, 404);
  const l2port = await envoy.listenerPort('l2');
  const c1 = await fetch(`http://127.0.0.1:${l2port}/x`);
  assert.equal(await c1.text(), 'C /x');

  // 2. update: a new route to a new cluster; cluster c and listener l2 go away
  const v2: SnapshotInput = {
    version: 'v2',
    resources: {
      clusters: [edsCluster('a'), edsCluster('b')],
      endpoints: [endpoints('a', a.port), endpoints('b', b.port)],
      listeners: [listener('l1', 'r1')],
      routes: [routeConfig('r1', [['/a', 'a'], ['/b', 'b']])],
    },
  };
  server.setSnapshot(nodeId, v2);
  await server.waitForAck(nodeId, 'v2', { timeoutMs: 15_000 }).catch((e: unknown) => assert.fail(`${String(e)}${failMsg()}`));
  // a unchanged keeps v1; b added; c removed
  expectVersions('clusters', { a: 'v1', b: 'v2' }, await dynamicClusters(envoy));
  // l1 untouched (its routes come over RDS); l2 removed
  expectVersions('listeners', { l1: 'v1' }, await activeListeners(envoy));
  assert.deepEqual(await httpGet(l1, '/b'), { status: 200, body: 'B /b' });
  assert.deepEqual(await httpGet(l1, '/a'), { status: 200, body: 'A /a' });
  assert.equal(connects, 1, 'the keep-alive connection survived the update');
  assert.equal(disconnects, 0);
  await assert.rejects(connectOnce(l2port), { code: 'ECONNREFUSED' }, 'listener l2 no longer accepts connections');

  // Make-before-break: cluster b went out before the route using it, and
  // cluster c was removed only after the listener and route updates were ACKed.
  const events = log.entries.map((e) => `${e.msg} ${String(e.fields.type)} ${String(e.fields.version)}`);
  const idx = (ev: string): number => events.indexOf(ev);
  assert.ok(idx('response clusters v2+keep') >= 0, `a first CDS step keeps cluster c:\n${events.join('\n')}`);
  assert.ok(idx('response clusters v2+keep') < idx('response routes v2'), 'new cluster before the route that uses it');
  assert.ok(idx('ACK routes v2') < idx('response clusters v2'), 'removal after the route moved away');
  assert.ok(idx('ACK listeners v2') < idx('response clusters v2'), 'removal after the listener went');

  // 3. an invalid listener is NACKed; v2 stays in force
  const bad = listener('l3', 'r1');
  const chain = get(bad, 'filter_chains', 0, 'filters', 0);
  assert.ok(chain && typeof chain === 'object');
  // a well-formed protobuf that Envoy refuses: an HTTP filter's config where a network filter belongs
  Object.assign(chain, { name: 'not-a-network-filter', typed_config: { '@type': ROUTER } });
  server.setSnapshot(nodeId, { version: 'v3', resources: { ...v2.resources, listeners: [listener('l1', 'r1'), bad] } });
  const nack = await server.waitForAck(nodeId, 'v3', { timeoutMs: 15_000 }).then(
    () => assert.fail(`v3 should have been NACKed${failMsg()}`),
    (e: unknown) => e,
  );
  assert.ok(isXdsError(nack, 'MESHD_XDS_NACKED'), String(nack));
  assert.match(nack.message, /listeners of snapshot v3: .*router/i);
  const lst = server.status(nodeId)?.types.listeners;
  assert.equal(lst?.nacked?.version, 'v3');
  assert.equal(lst?.acked?.version, 'v2');
  // Envoy's own words travel through: "Error adding/updating listener(s) l3: Didn't find a registered implementation for …"
  assert.match(lst?.nacked?.message ?? '', /listener\(s\) l3: .*registered implementation for 'not-a-network-filter'/);
  const nackLogs = log.entries.filter((e) => e.msg.includes('NACK'));
  assert.equal(nackLogs.length, 1, 'logged once');
  assert.equal(nackLogs[0]?.fields.node, nodeId);
  assert.equal(nackLogs[0]?.fields.type, 'listeners');
  assert.equal(nackLogs[0]?.fields.message, lst?.nacked?.message);
  const metrics = await server.metrics.registry.getSingleMetricAsString('meshd_xds_nacks_total');
  assert.match(metrics, /meshd_xds_nacks_total\{type="listeners"\} 1/);
  expectVersions('listeners', { l1: 'v1' }, await activeListeners(envoy));
  const listenersDump = await dumpSection(envoy, 'ListenersConfigDump');
  if (mode === 'sotw') assert.equal(get(listenersDump, 'version_info'), 'v2', 'Envoy kept the last good listener version');
  assert.deepEqual(await httpGet(l1, '/b'), { status: 200, body: 'B /b' });

  // recovery: a valid snapshot after the bad one
  server.setSnapshot(nodeId, { version: 'v4', resources: { ...v2.resources, listeners: [listener('l1', 'r1'), listener('l3', 'r1')] } });
  await server.waitForAck(nodeId, 'v4', { timeoutMs: 15_000 }).catch((e: unknown) => assert.fail(`${String(e)}${failMsg()}`));
  expectVersions('listeners', { l1: 'v1', l3: 'v4' }, await activeListeners(envoy));
  const l3 = await fetch(`http://127.0.0.1:${await envoy.listenerPort('l3')}/a`);
  assert.equal(await l3.text(), 'A /a');
  assert.deepEqual(await httpGet(l1, '/a'), { status: 200, body: 'A /a' });
  assert.equal(connects, 1);
  assert.equal(log.entries.filter((e) => e.msg.includes('NACK')).length, 1);

  // an EDS cluster whose own config changes while its endpoints do not: Envoy
  // re-creates it and must not get stuck warming, waiting for an EDS answer
  const t5 = Date.now();
  server.setSnapshot(nodeId, {
    version: 'v5',
    resources: { ...v2.resources, clusters: [{ ...edsCluster('a'), connect_timeout: '2s' }, edsCluster('b')], listeners: [listener('l1', 'r1'), listener('l3', 'r1')] },
  });
  await server.waitForAck(nodeId, 'v5', { timeoutMs: 15_000 }).catch((e: unknown) => assert.fail(`${String(e)}${JSON.stringify(server.status(nodeId))}\n${log.entries.slice(-12).map((x) => JSON.stringify(x)).join('\n')}${failMsg()}`));
  const clustersDump = await dumpSection(envoy, 'ClustersConfigDump');
  for (let i = 0; i < 100 && arr(get(await dumpSection(envoy, 'ClustersConfigDump'), 'dynamic_warming_clusters')).length > 0; i++) await sleep(20);
  assert.deepEqual(arr(get(await dumpSection(envoy, 'ClustersConfigDump'), 'dynamic_warming_clusters')), [], `no cluster left warming: ${JSON.stringify(clustersDump)}`);
  assert.deepEqual(await httpGet(l1, '/a'), { status: 200, body: 'A /a' });
  assert.ok(Date.now() - t5 < 5000, 'applied without waiting for an EDS fetch timeout');
}
