/**
 * The CLI against a stand-in agent: a real HTTP server on a unix socket that
 * answers what the test says, right or wrong.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { apiRoutes } from '../api/index.js';
import type { StatusResponse } from '../api/status.js';
import { isMeshdError } from '../util/errors.js';
import { callApi } from './api-client.js';
import { main } from './main.js';
import { renderSource } from './node.js';

const STATUS: StatusResponse = {
  agent: { state: 'running', version: '0.0.0-test', nodeName: 'n1', mode: 'standalone', uptimeS: 12 },
  envoy: {
    envoy: { state: 'ready', pid: 42, version: '1.40.0', restarts: 0, readySince: '2026-01-01T00:00:00.000Z', lastExit: null },
    xds: {
      node: { id: 'n1', cluster: 'meshd' },
      streams: 1,
      types: { listeners: { sent: { version: 'v3', snapshotVersion: 'v3', seq: 3, complete: true, nonce: '3', resources: 2, at: '2026-01-01T00:00:01.000Z' } } },
    },
    ports: [{ key: 'http-ingress', port: 15001 }],
    listeners: [{ name: 'meshd-http-ingress', port: 15001, endpoints: ['default/api'], ackedVersion: 'v3' }],
    lastNack: null,
    lastError: null,
  },
  proxy: { version: 'v3', error: null, errorCode: null, at: '2026-01-01T00:00:01.000Z' },
  datapath: { endpoints: 1, ipcacheEntries: 4, pinDir: '/sys/fs/bpf/meshd', pending: {} },
  source: { type: 'standalone', dir: 'examples/demo' },
  ipam: { mode: 'standalone', state: 'ready', cidr: '10.244.0.0/24', source: 'config', detail: 'ipam.podCIDR', code: null },
  services: null,
  counts: { endpoints: 1, policies: 2, rejectedPolicies: 0, identities: 9, problems: 0 },
};

/** A stand-in agent: path → [HTTP status, JSON body]. */
async function fakeAgent(t: TestContext, answers: Record<string, [number, unknown]>): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-fake-agent-'));
  const sock = join(dir, 'meshd.sock');
  const server: Server = createServer((req, res) => {
    const [status, body] = answers[new URL(req.url ?? '/', 'http://x').pathname] ?? [404, { error: { code: 'MESHD_API_NO_ROUTE', kind: 'not-found', message: 'no route' } }];
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });
  return sock;
}

async function meshdIn(...argv: string[]): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t) });
  return { status, out, err };
}

test('a response of the wrong shape is MESHD_API_RESPONSE_MISMATCH naming the route and the field path', async (t) => {
  const sock = await fakeAgent(t, {
    '/v1/status': [200, { ...STATUS, agent: { ...STATUS.agent, uptimeS: 'long' }, counts: { endpoints: 1 } }],
    '/v1/endpoints': [200, { endpoints: [{ id: 'default/a', identity: 300, ips: '10.0.0.1' }] }],
    '/v1/flows': [200, 'flows'],
  });
  await assert.rejects(callApi(sock, apiRoutes.status), (e: unknown) => {
    assert.ok(isMeshdError(e, 'MESHD_API_RESPONSE_MISMATCH'));
    assert.match(e.message, /^GET \/v1\/status: /);
    assert.match(e.message, /agent\.uptimeS: /);
    assert.match(e.message, /counts\.policies: /);
    return true;
  });
  const r = await meshdIn('endpoint', 'list', '--api-socket', sock);
  assert.equal(r.status, 1);
  assert.equal(r.out, '');
  assert.match(r.err, /^MESHD_API_RESPONSE_MISMATCH: GET \/v1\/endpoints: .*endpoints\[0\]\.ips: /);
  assert.equal(r.err.trimEnd().split('\n').length, 1);
  await assert.rejects(callApi(sock, apiRoutes.flows), (e: unknown) => isMeshdError(e, 'MESHD_API_RESPONSE_MISMATCH') && /\(root\): /.test(e.message));
});

test("an error answer becomes the agent's coded error, with the exit status of its kind", async (t) => {
  const sock = await fakeAgent(t, {
    '/v1/endpoint': [404, { error: { code: 'MESHD_API_ENDPOINT_NOT_FOUND', kind: 'not-found', message: 'no local endpoint default/x' } }],
    '/v1/proxy': [500, { oops: true }],
  });
  const r = await meshdIn('endpoint', 'get', 'default/x', '--api-socket', sock);
  assert.equal(r.status, 4);
  assert.equal(r.err, 'MESHD_API_ENDPOINT_NOT_FOUND: no local endpoint default/x\n');
  const odd = await meshdIn('proxy', 'list', '--api-socket', sock);
  assert.equal(odd.status, 1);
  assert.match(odd.err, /^MESHD_API_RESPONSE_MISMATCH: GET \/v1\/proxy: .*HTTP 500 without a meshd error body/);
});

test('meshd status: a table by default; -o json and -o yaml carry the same validated data', async (t) => {
  const sock = await fakeAgent(t, { '/v1/status': [200, { ...STATUS, extra: 'dropped by the schema' }] });
  process.env.MESHD_API_SOCKET = sock;
  t.after(() => delete process.env.MESHD_API_SOCKET);
  const text = await meshdIn('status');
  assert.equal(text.status, 0, text.err);
  assert.match(text.out, /^Agent: {5}running \(meshd 0\.0\.0-test, node n1, standalone mode, up 12s\)$/m);
  assert.match(text.out, /^Envoy: {5}ready \(Envoy 1\.40\.0, pid 42, restarts 0\)$/m);
  assert.match(text.out, /^listeners +v3 +- +-$/m);
  const json = await meshdIn('status', '-o', 'json');
  const yaml = await meshdIn('status', '-o', 'yaml');
  assert.deepEqual(JSON.parse(json.out), STATUS);
  assert.deepEqual(parseYaml(yaml.out), STATUS);
});

test('meshd status: a held proxy configuration shows its code and the policies of the failed change', async (t) => {
  const held: StatusResponse = {
    ...STATUS,
    envoy: {
      ...(STATUS.envoy as Extract<StatusResponse['envoy'], { envoy: unknown }>),
      lastError: {
        code: 'MESHD_PROXY_ACK_TIMEOUT',
        version: 'v4',
        message: 'Envoy did not ACK v4 within 3000 ms',
        envoyMessage: null,
        change: { listeners: ['meshd-http-egress'], endpoints: ['default/client'], policies: ['default/client-l7'] },
        at: '2026-01-01T00:00:05.000Z',
      },
    },
    proxy: { version: 'v3', error: 'Envoy did not ACK v4 within 3000 ms', errorCode: 'MESHD_PROXY_ACK_TIMEOUT', at: '2026-01-01T00:00:05.000Z' },
    datapath: { ...STATUS.datapath, pending: { 'default/client': 'waiting for the proxy: Envoy did not ACK v4 within 3000 ms' } },
  };
  const sock = await fakeAgent(t, { '/v1/status': [200, held] });
  process.env.MESHD_API_SOCKET = sock;
  t.after(() => delete process.env.MESHD_API_SOCKET);
  const text = await meshdIn('status');
  assert.equal(text.status, 0, text.err);
  assert.match(text.out, /^Proxy: {5}held at v3 since 2026-01-01T00:00:05\.000Z: MESHD_PROXY_ACK_TIMEOUT: /m);
  assert.match(text.out, /^Last proxy error: MESHD_PROXY_ACK_TIMEOUT, version v4 .*; policies: default\/client-l7$/m);
  assert.match(text.out, /^ {2}pending: default\/client: waiting for the proxy/m);
});

test('meshd status: the source line says how long the API server has been gone and why', () => {
  const since = '2026-01-01T00:00:00.000Z';
  const now = Date.parse(since) + 42_000;
  const kinds = {
    Pod: { synced: true, served: true, resourceVersion: '7', objects: 3, lists: 1 },
    CiliumNetworkPolicy: { synced: true, served: false, resourceVersion: '', objects: 0, lists: 1 },
  };
  const gone = renderSource(
    { type: 'kubernetes', server: 'https://127.0.0.1:6443', state: 'disconnected', since, lastError: { code: 'MESHD_K8S_UNREACHABLE', message: 'connect ECONNREFUSED', at: since }, kinds },
    now,
  );
  assert.equal(gone, 'kubernetes https://127.0.0.1:6443: disconnected for 42s; last error MESHD_K8S_UNREACHABLE: connect ECONNREFUSED; not served by the API server: CiliumNetworkPolicy');
  assert.equal(renderSource({ type: 'standalone', dir: 'examples/demo' }), 'standalone, manifests in examples/demo');
});
