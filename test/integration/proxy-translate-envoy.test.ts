/**
 * The translator's output judged by a real Envoy: the configuration must be
 * accepted (`--mode validate`), and the RBAC it produces must let through
 * exactly the requests the docs' HTTP example allows, over HTTP/1.1 and
 * HTTP/2, answering the rest with 403 "Access denied".
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { findEnvoy } from '../../envoy/binary.js';
import { freePort, httpUpstream, listenerPort, startEnvoy, staticCluster } from '../helpers/envoy.js';
import type { EndpointPolicy, PolicyEntry } from '../../src/policy/types.js';
import { buildHttpConnectionManager } from '../../src/proxy/http-connection-manager.js';
import { proxyUpstreamMark } from '../../src/datapath/maps.js';
import { buildRbac } from '../../src/proxy/rbac.js';
import { translateL7 } from '../../src/proxy/translate.js';

const CLIENT_ID = 1001;
const OTHER_ID = 1002;

/** The docs' HTTP example: GET /api/v1/users, GET /api/v1/products, POST /api/v1/orders with JSON. */
function exampleEntries(remoteIdentity: number, port = 8080): PolicyEntry[] {
  return [
    {
      remoteIdentity,
      protocol: 6,
      port,
      endPort: port,
      verdict: 'REDIRECT',
      derivedFrom: ['default/api-l7'],
      l7: {
        kind: 'http',
        rules: [
          { method: 'GET', path: '/api/v1/users' },
          { method: 'GET', path: '/api/v1/products' },
          { method: 'POST', path: '/api/v1/orders', headers: [{ name: 'Content-Type', value: 'application/json' }] },
        ],
      },
    },
  ];
}

function policy(id: string, ingress: PolicyEntry[], egress: PolicyEntry[] = []): EndpointPolicy {
  return { endpointId: id, identity: 2000, revision: 1, ingress: { defaultDeny: true, entries: ingress }, egress: { defaultDeny: false, entries: egress } };
}

const ports = { portFor: (_k: string, d: string) => (d === 'ingress' ? 15001 : 15002) };

function stripType(r: Record<string, unknown>): Record<string, unknown> {
  const { '@type': _t, ...rest } = r;
  return rest;
}

test('translated listeners and clusters are accepted by Envoy', async (t) => {
  const out = translateL7({
    endpoints: [
      { policy: policy('default/api', exampleEntries(CLIENT_ID), exampleEntries(0)), ips: ['10.0.1.20'] },
      { policy: policy('default/web', [{ remoteIdentity: 0, protocol: 6, port: 80, endPort: 80, verdict: 'ALLOW', derivedFrom: ['x'] }]), ips: ['10.0.1.21'] },
    ],
    identityIps: new Map([[CLIENT_ID, ['10.0.1.10']]]),
    ports,
    accessLog: true,
  });
  assert.deepEqual(
    out.listeners.map((l) => [l.name, (l.address as { socket_address: { port_value: number } }).socket_address.port_value]),
    [
      ['meshd-http-egress', 15002],
      ['meshd-http-ingress', 15001],
    ],
  );
  assert.deepEqual(out.redirects, [
    { endpointId: 'default/api', direction: 'egress', kind: 'http', proxyPort: 15002 },
    { endpointId: 'default/api', direction: 'ingress', kind: 'http', proxyPort: 15001 },
  ]);
  // Ingress: a chain for the client identity (source = its addresses) and the fallback chain;
  // egress: the endpoint's own chain and the one toward the local destination with ingress rules (itself here).
  const chainNames = (l: Record<string, unknown>) => (l.filter_chains as Array<{ name: string }>).map((c) => c.name);
  // (first, the guard that closes connections made straight to the proxy port)
  assert.deepEqual(chainNames(out.listeners[1] ?? {}), ['direct-connection', 'default/api/ingress/id1001', 'default/api/ingress/any']);
  assert.deepEqual(chainNames(out.listeners[0] ?? {}), ['direct-connection', 'default/api/egress', 'default/api/egress/to/default/api']);
  // One original-destination cluster per client identity, its upstream marked with that identity.
  assert.deepEqual(
    out.clusters.map((c) => [c.name, (c.upstream_bind_config as { socket_options: Array<{ int_value: number }> }).socket_options[0]?.int_value]),
    [
      ['meshd-original-dst-id2', proxyUpstreamMark(2)],
      ['meshd-original-dst-id1001', proxyUpstreamMark(1001)],
      ['meshd-original-dst-id2000', proxyUpstreamMark(2000)],
    ],
  );
  const dir = mkdtempSync(join(tmpdir(), 'meshd-translate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'bootstrap.json');
  writeFileSync(
    file,
    JSON.stringify({
      node: { id: 'validate', cluster: 'meshd' },
      static_resources: {
        listeners: out.listeners.map(stripType),
        clusters: [...out.clusters.map(stripType), { name: 'meshd-als', type: 'STATIC', load_assignment: { cluster_name: 'meshd-als', endpoints: [] } }],
      },
    }),
  );
  await promisify(execFile)(findEnvoy().path, ['--mode', 'validate', '-c', file, '--log-level', 'error'], { timeout: 60_000 });
});

/**
 * A loopback listener on `port` with the translator's chain split and RBAC:
 * one chain per identity (source = its addresses) and a fallback chain for
 * everyone else, routed to a static upstream. The RBAC permissions include
 * the destination port, which here is the listener's own port (through the
 * datapath it is the original destination's).
 */
function rbacBootstrap(adminSock: string, port: number, upstreamPort: number, entries: PolicyEntry[], identityIps: Map<number, string[]>): Record<string, unknown> {
  const hcm = (rbac: Record<string, unknown>) => ({
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: buildHttpConnectionManager({ statPrefix: 'rbac_test', rbac: [rbac], cluster: 'upstream' }),
  });
  const chains = [...identityIps].map(([identity, ips]) => ({
    filter_chain_match: { source_prefix_ranges: ips.map((ip) => ({ address_prefix: ip, prefix_len: 32 })) },
    filters: [hcm(buildRbac({ entries, defaultDeny: true, subjects: [{ identity, match: null }] }))],
  }));
  chains.push({ filter_chain_match: { source_prefix_ranges: [] }, filters: [hcm(buildRbac({ entries, defaultDeny: true, subjects: [] }))] });
  return {
    node: { id: 'rbac-test', cluster: 'meshd' },
    admin: { address: { pipe: { path: adminSock } } },
    static_resources: {
      // No SO_REUSEPORT: another process's listener must never share this port with ours.
      listeners: [{ name: 'rbac', address: { socket_address: { address: '127.0.0.1', port_value: port } }, enable_reuse_port: false, filter_chains: chains }],
      clusters: [staticCluster('upstream', upstreamPort)],
    },
  };
}


test('RBAC from the HTTP example allows exactly the listed requests (HTTP/1.1 and HTTP/2)', async (t) => {
  const up = await httpUpstream(t);
  const lp = await freePort();
  const { sup } = await startEnvoy(t, (admin) => rbacBootstrap(admin, lp, up.port, exampleEntries(CLIENT_ID, lp), new Map([[CLIENT_ID, ['127.0.0.1']]])));
  const port = await listenerPort(sup);
  const base = `http://127.0.0.1:${port}`;
  const cases: Array<[string, string, Record<string, string>, number]> = [
    ['GET', '/api/v1/users', {}, 200],
    ['GET', '/api/v1/products', {}, 200],
    ['GET', '/api/v1/users?page=2', {}, 200],
    ['POST', '/api/v1/orders', { 'content-type': 'application/json' }, 200],
    ['POST', '/api/v1/orders', { 'content-type': 'text/plain' }, 403],
    ['POST', '/api/v1/orders', {}, 403],
    ['DELETE', '/api/v1/users', {}, 403],
    ['GET', '/api/v1/users/1', {}, 403],
    ['GET', '/api/v1//users/../admin', {}, 403],
    ['GET', '/admin', {}, 403],
  ];
  for (const [method, path, headers, want] of cases) {
    const r = await request(base + path, { method, headers });
    const body = await r.body.text();
    assert.equal(r.statusCode, want, `${method} ${path} ${JSON.stringify(headers)}`);
    if (want === 403) assert.equal(body, 'Access denied');
    else assert.equal(body, `upstream ${method} ${path}`);
  }
  const denied = up.seen.filter((s) => s.url === '/admin' || s.method === 'DELETE');
  assert.deepEqual(denied, [], 'denied requests never reach the upstream');

  // HTTP/2 with prior knowledge (how gRPC clients talk): same rules.
  const session = h2connect(base);
  t.after(() => session.close());
  const h2 = (path: string, method: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const s = session.request({ ':method': method, ':path': path });
      let body = '';
      let status = 0;
      s.setEncoding('utf8');
      s.on('response', (h) => (status = Number(h[':status'])));
      s.on('data', (d: string) => (body += d));
      s.on('end', () => resolve({ status, body }));
      s.on('error', reject);
      s.end();
    });
  assert.deepEqual(await h2('/api/v1/users', 'GET'), { status: 200, body: 'upstream GET /api/v1/users' });
  assert.deepEqual(await h2('/api/v1/secret', 'GET'), { status: 403, body: 'Access denied' });
});

test('RBAC principals: a peer whose address is not the allowed identity is denied', async (t) => {
  const up = await httpUpstream(t);
  // Only identity OTHER_ID (127.0.0.2) is allowed; the client connects from 127.0.0.1.
  const lp = await freePort();
  const { sup } = await startEnvoy(t, (admin) => rbacBootstrap(admin, lp, up.port, exampleEntries(OTHER_ID, lp), new Map([[OTHER_ID, ['127.0.0.2']]])));
  const port = await listenerPort(sup);
  const r = await request(`http://127.0.0.1:${port}/api/v1/users`);
  assert.equal(r.statusCode, 403);
  assert.equal(await r.body.text(), 'Access denied');
  const from2 = new Agent({ localAddress: '127.0.0.2' });
  t.after(() => from2.close());
  const r2 = await request(`http://127.0.0.1:${port}/api/v1/users`, { dispatcher: from2 });
  assert.equal(r2.statusCode, 200);
  assert.equal(await r2.body.text(), 'upstream GET /api/v1/users');
});

test('RBAC permissions include the destination port: a rule for another port allows nothing here', async (t) => {
  const up = await httpUpstream(t);
  const lp = await freePort();
  const { sup } = await startEnvoy(t, (admin) => rbacBootstrap(admin, lp, up.port, exampleEntries(0, lp === 65535 ? lp - 1 : lp + 1), new Map()));
  const port = await listenerPort(sup);
  const r = await request(`http://127.0.0.1:${port}/api/v1/users`);
  assert.equal(r.statusCode, 403);
  assert.equal(await r.body.text(), 'Access denied');
});

test('RBAC: wildcard rows apply to an identity only where it has no row of its own; L4 rows allow every request', async (t) => {
  const up = await httpUpstream(t);
  const lp = await freePort();
  const entries: PolicyEntry[] = [
    // Anyone: GET /public on this port.
    { remoteIdentity: 0, protocol: 6, port: lp, endPort: lp, verdict: 'REDIRECT', derivedFrom: ['p/any'], l7: { kind: 'http', rules: [{ method: 'GET', path: '/public' }] } },
    // 127.0.0.2's identity has its own (complete) row: GET /mine only.
    { remoteIdentity: OTHER_ID, protocol: 6, port: lp, endPort: lp, verdict: 'REDIRECT', derivedFrom: ['p/other'], l7: { kind: 'http', rules: [{ method: 'GET', path: '/mine' }] } },
    // 127.0.0.1's identity is allowed at L4 on every port.
    { remoteIdentity: CLIENT_ID, protocol: 6, port: 0, endPort: 0, verdict: 'ALLOW', derivedFrom: ['p/l4'] },
  ];
  const { sup } = await startEnvoy(t, (admin) =>
    rbacBootstrap(admin, lp, up.port, entries, new Map([[OTHER_ID, ['127.0.0.2']], [CLIENT_ID, ['127.0.0.1']]])),
  );
  const port = await listenerPort(sup);
  const from2 = new Agent({ localAddress: '127.0.0.2' });
  t.after(() => from2.close());
  const status = async (path: string, dispatcher?: Agent) => {
    const r = await request(`http://127.0.0.1:${port}${path}`, dispatcher ? { dispatcher } : {});
    await r.body.text();
    return r.statusCode;
  };
  assert.equal(await status('/mine', from2), 200);
  assert.equal(await status('/public', from2), 403, 'the wildcard row does not apply where the identity has its own row');
  assert.equal(await status('/anything'), 200, 'an L4 allow lets every request through');
});
