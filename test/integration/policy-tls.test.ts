/**
 * TLS interception (terminatingTLS / originatingTLS) end to end: the example
 * policy examples/policies/l7-tls-interception.yaml → engine → the node's real
 * Envoy (certificates over SDS) → the real kernel datapath → pods in
 * namespaces. Certificates are made in the test with the machine's openssl:
 * an "upstream" CA that signed the api server's certificate, and an
 * "intercept" CA whose leaf the proxy presents to the client.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { traceFlow, type TraceFlow } from '../../src/policy/trace.js';
import type { SecretData } from '../../src/proxy/sds.js';
import { repoPath } from '../../src/util/paths.js';
import { startL7World } from '../helpers/l7-world.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { makePki, startTlsServer, tlsPeer, type TlsOutcome } from '../helpers/tls-peer.js';

const POLICY = readFileSync(repoPath('examples', 'policies', 'l7-tls-interception.yaml'), 'utf8');

test('TLS interception through the node Envoy and the kernel datapath: HTTP rules over TLS, TLS upstream verified, secrets over SDS rotated without a listener change, a broken secret keeps its last good version', async (t) => {
  requirePrivileges();
  const upstream = await makePki('tlsup');
  t.after(() => upstream.remove());
  const intercept = await makePki('tlsin');
  t.after(() => intercept.remove());
  const serverCert = await upstream.leaf('api', 'api server', ['api.example.com']);
  const proxyCert1 = await intercept.leaf('proxy1', 'intercept-1', ['api.example.com']);
  const proxyCert2 = await intercept.leaf('proxy2', 'intercept-2', ['api.example.com']);
  const pem = (f: string) => readFileSync(f, 'utf8');
  const secrets = (cert: { crt: string; key: string }, ca = upstream.ca.crt): SecretData =>
    new Map<string, Record<string, string>>([
      ['default/intercept', { 'tls.crt': pem(cert.crt), 'tls.key': pem(cert.key) }],
      ['default/upstream-ca', { 'ca.crt': pem(ca) }],
    ]);

  const w = await startL7World(t, { tag: 'tlsi', octet: 96, portBase: 24000, pods: [['client', 0], ['api', 4]], policies: POLICY });
  const { sb, pod, engine, proxy, sync } = w;
  const api = pod('api');
  const server = await startTlsServer(api.ns, serverCert.crt, serverCert.key, [8443], (fn) => sb.defer(fn));
  const hostApi = w.net(5);

  const r = await sync(proxy, { secrets: secrets(proxyCert1) });
  assert.deepEqual(r.redirects, [{ endpointId: 'default/client', direction: 'egress', kind: 'tls', proxyPort: proxy.proxyPort('tls', 'egress') }]);

  const get = (path: string): Promise<TlsOutcome> => tlsPeer(pod('client').ns, ['get', api.ip, '8443', 'api.example.com', path, intercept.ca.crt]);
  const stat = async (name: string): Promise<number> => {
    const s = await proxy.adminRequest(`/stats?filter=${encodeURIComponent(`^${name.replaceAll('.', '\\.')}$`)}`);
    const m = new RegExp(`${name.replaceAll('.', '\\.')}: (\\d+)`).exec(s.body);
    return m ? Number(m[1]) : 0;
  };
  const trace = (path: string) => {
    const f: TraceFlow = { src: 'default/client', dst: 'default/api', dport: 8443, protocol: 'TCP', tls: { sni: 'api.example.com' }, http: { method: 'GET', path } };
    return traceFlow(engine, { flows: [f] }, f).verdict;
  };

  await t.test('an allowed GET is terminated with the policy certificate and sent on over TLS, with the SNI, verified against the trusted CA', async () => {
    const o = await get('/allowed/items');
    assert.deepEqual(o, { ok: true, status: 200, body: `https GET /allowed/items api.example.com from ${hostApi}`, peerCN: 'intercept-1' });
    assert.ok(server.conns().some((l) => l === `conn 8443 api.example.com ${hostApi}`), 'the server saw a TLS connection from the node with the SNI');
    assert.equal(trace('/allowed/items'), 'ALLOWED');
  });

  await t.test('a denied path gets 403 over TLS and never reaches the server', async () => {
    const before = server.conns().length;
    assert.deepEqual(await get('/admin'), { ok: true, status: 403, body: 'Access denied', peerCN: 'intercept-1' });
    assert.equal(server.conns().length, before);
    assert.equal(trace('/admin'), 'DENIED');
  });

  await t.test('rotating the secret changes the served certificate over SDS, without a listener change', async () => {
    const modified = await stat('listener_manager.listener_modified');
    const added = await stat('listener_manager.listener_added');
    await sync(proxy, { secrets: secrets(proxyCert2) });
    assert.equal((await get('/allowed')).peerCN, 'intercept-2');
    assert.equal(await stat('listener_manager.listener_modified'), modified, 'no listener was modified');
    assert.equal(await stat('listener_manager.listener_added'), added, 'no listener was added');
  });

  await t.test('a missing or invalid secret is reported with its code, naming the reference; its last good version stays served and the rest applies', async () => {
    const missing = new Map(secrets(proxyCert2));
    missing.delete('default/upstream-ca');
    const r1 = await sync(proxy, { secrets: missing });
    assert.deepEqual(r1.secretProblems.map((p) => p.code), ['MESHD_PROXY_SECRET_MISSING']);
    assert.ok(r1.secretProblems[0]?.message.includes('originatingTLS.secret default/upstream-ca'), r1.secretProblems[0]?.message);
    const broken = new Map(secrets(proxyCert2));
    broken.set('default/intercept', { 'tls.crt': 'not a certificate', 'tls.key': pem(proxyCert2.key) });
    const r2 = await sync(proxy, { secrets: broken });
    assert.deepEqual(r2.secretProblems.map((p) => p.code), ['MESHD_PROXY_SECRET_INVALID']);
    assert.ok(r2.secretProblems[0]?.message.includes('terminatingTLS.secret default/intercept'), r2.secretProblems[0]?.message);
    assert.deepEqual(await get('/allowed'), { ok: true, status: 200, body: `https GET /allowed api.example.com from ${hostApi}`, peerCN: 'intercept-2' });
    assert.deepEqual(await get('/admin'), { ok: true, status: 403, body: 'Access denied', peerCN: 'intercept-2' }, 'the HTTP rules still apply');
    // Fixed again: no problem left.
    assert.deepEqual((await sync(proxy, { secrets: secrets(proxyCert2) })).secretProblems, []);
  });

  await t.test('an upstream whose certificate the trusted CA did not sign is refused (503), not forwarded in clear', async () => {
    await sync(proxy, { secrets: secrets(proxyCert2, intercept.ca.crt) });
    const o = await get('/allowed');
    assert.equal(o.status, 503, JSON.stringify(o));
    assert.equal(o.peerCN, 'intercept-2');
    // With the right CA again, the same request goes through.
    await sync(proxy, { secrets: secrets(proxyCert2) });
    assert.equal((await get('/allowed')).status, 200);
  });
});
