import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { isMeshdError } from '../util/errors.js';
import { KubeClient, kubeRequestCounts, resolveKubeConfig } from './client.js';

function tmp(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-kubeconfig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function kubeconfig(dir: string, file: string, server: string): string {
  const p = join(dir, file);
  writeFileSync(
    p,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );
  return p;
}

function serviceAccount(dir: string): string {
  const sa = join(dir, 'sa');
  mkdirSync(sa);
  writeFileSync(join(sa, 'token'), 'token');
  writeFileSync(join(sa, 'ca.crt'), '');
  return sa;
}

test('an explicit kubeconfig wins over KUBECONFIG, which wins over the in-cluster account', (t) => {
  const dir = tmp(t);
  const explicit = kubeconfig(dir, 'a', 'https://explicit.example:6443');
  const env = kubeconfig(dir, 'b', 'https://env.example:6443');
  const sa = serviceAccount(dir);
  const inCluster = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
  assert.equal(resolveKubeConfig({ kubeconfigPath: explicit, env: { KUBECONFIG: env, ...inCluster }, serviceAccountDir: sa }).server, 'https://explicit.example:6443');
  assert.equal(resolveKubeConfig({ env: { KUBECONFIG: env, ...inCluster }, serviceAccountDir: sa }).server, 'https://env.example:6443');
  const r = resolveKubeConfig({ env: inCluster, serviceAccountDir: sa });
  assert.equal(r.server, 'https://10.96.0.1:443');
  assert.equal(r.from, 'in-cluster service account');
  assert.equal(new KubeClient(r.kubeConfig).server, 'https://10.96.0.1:443');
});

test('k8sServiceHost/k8sServicePort replace the in-cluster address (IPv6 bracketed)', (t) => {
  const sa = serviceAccount(tmp(t));
  const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
  assert.equal(resolveKubeConfig({ env, serviceAccountDir: sa, serviceHost: 'api.internal', servicePort: 6443 }).server, 'https://api.internal:6443');
  assert.equal(resolveKubeConfig({ env: {}, serviceAccountDir: sa, serviceHost: 'fd00::1', servicePort: 6443 }).server, 'https://[fd00::1]:6443');
});

test('KUBECONFIG is a path list; the first file gives the context, missing entries are skipped', (t) => {
  const dir = tmp(t);
  const first = kubeconfig(dir, 'a', 'https://first.example');
  const r = resolveKubeConfig({ env: { KUBECONFIG: `${first}:${join(dir, 'absent')}` } });
  assert.equal(r.server, 'https://first.example');
});

test('no configuration is MESHD_K8S_NO_CONFIG; an unreadable one is MESHD_K8S_CONFIG_INVALID', (t) => {
  const dir = tmp(t);
  assert.throws(() => resolveKubeConfig({ env: {}, serviceAccountDir: join(dir, 'none') }), (e) => isMeshdError(e, 'MESHD_K8S_NO_CONFIG'));
  // A mounted account without an address to reach the server with is not a configuration either.
  assert.throws(() => resolveKubeConfig({ env: {}, serviceAccountDir: serviceAccount(dir) }), (e) => isMeshdError(e, 'MESHD_K8S_NO_CONFIG'));
  assert.throws(() => resolveKubeConfig({ kubeconfigPath: join(dir, 'absent'), env: {} }), (e) => isMeshdError(e, 'MESHD_K8S_CONFIG_INVALID'));
  const noCluster = join(dir, 'empty');
  writeFileSync(noCluster, 'apiVersion: v1\nkind: Config\n');
  assert.throws(() => resolveKubeConfig({ kubeconfigPath: noCluster, env: {} }), (e) => isMeshdError(e, 'MESHD_K8S_CONFIG_INVALID'));
});

test('every request is counted by verb, per client and for the process, whatever the answer', async (t) => {
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/missing')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"kind":"Status","code":404}');
    } else if (req.url?.includes('watch=true')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"2"}}}\n');
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const kc = new KubeConfig();
  // Plain HTTP on loopback: client-node allows it only with TLS verification off.
  kc.loadFromClusterAndUser({ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }, { name: 'u', token: 't' });
  const client = new KubeClient(kc);
  const before = kubeRequestCounts();
  await client.getJson('/api/v1/pods');
  await assert.rejects(client.getJson('/missing'), (e) => isMeshdError(e, 'MESHD_K8S_API_STATUS'));
  await client.send('PATCH', '/api/v1/namespaces/a/pods/p/status', { status: {} });
  await client.send('POST', '/api/v1/namespaces', { metadata: { name: 'a' } });
  let lines = 0;
  await client.watch('/api/v1/pods', { resourceVersion: '1' }, { onOpen: () => undefined, onLine: () => void (lines += 1) }, new AbortController().signal);
  assert.equal(lines, 1);
  assert.deepEqual(client.requests(), { total: 5, byVerb: { GET: 2, PATCH: 1, POST: 1, WATCH: 1 } });
  const after = kubeRequestCounts();
  assert.equal(after.total - before.total, 5);
  assert.equal((after.byVerb.WATCH ?? 0) - (before.byVerb.WATCH ?? 0), 1);
});

/** A self-signed certificate for 127.0.0.1 (server and client certificates in the tests below). */
function selfSigned(dir: string, name: string): { cert: Buffer; key: Buffer } {
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', `${name}.key`, '-out', `${name}.crt`], { cwd: dir, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { cert: readFileSync(join(dir, `${name}.crt`)), key: readFileSync(join(dir, `${name}.key`)) };
}

test('requests share one keep-alive TLS connection; a watch holds its own; a new token keeps it, new TLS credentials replace it', async (t) => {
  const dir = tmp(t);
  const server = selfSigned(dir, 'server');
  const clientCert = selfSigned(dir, 'client');
  const tokens: string[] = [];
  const watches = new Set<ServerResponse>();
  const https = createHttpsServer({ ...server, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    tokens.push(req.headers.authorization ?? '');
    if (req.url?.includes('watch=true')) {
      res.writeHead(200, { 'content-type': 'application/json' }).write('{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"2"}}}\n');
      watches.add(res); // held open until the client aborts
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  const sockets = new Set<TLSSocket>();
  https.on('secureConnection', (s: TLSSocket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  let connections = 0;
  https.on('secureConnection', () => void (connections += 1));
  https.listen(0, '127.0.0.1');
  await once(https, 'listening');
  t.after(async () => {
    for (const w of watches) w.destroy();
    https.closeAllConnections();
    https.close();
  });
  const cluster = { name: 'c', server: `https://127.0.0.1:${(https.address() as AddressInfo).port}`, caData: server.cert.toString('base64'), skipTLSVerify: false };
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser(cluster, { name: 'u', token: 'first' });
  const client = new KubeClient(kc);
  t.after(() => client.close());

  for (let i = 0; i < 20; i++) {
    if (i % 2 === 0) await client.getJson('/api/v1/pods');
    else await client.send('PATCH', '/apis/meshd.io/v1alpha1/meshdidentities/300/status', { status: {} });
  }
  assert.equal(connections, 1);

  // A watch keeps its connection for as long as it runs; the short requests do not wait for it.
  const abort = new AbortController();
  let opened!: () => void;
  const open = new Promise<void>((r) => (opened = r));
  const watching = client.watch('/api/v1/pods', { resourceVersion: '1' }, { onOpen: () => opened(), onLine: () => undefined }, abort.signal);
  await open;
  for (let i = 0; i < 10; i++) await client.getJson('/api/v1/pods');
  assert.equal(connections, 2);
  abort.abort();
  await watching;

  // A rotated token is a header: same connection, new credential.
  kc.loadFromClusterAndUser(cluster, { name: 'u', token: 'second' });
  await client.getJson('/api/v1/pods');
  assert.equal(tokens.at(-1), 'Bearer second');
  assert.equal(connections, 2);

  // New TLS material (a client certificate): a new connection, and the old idle ones are closed.
  kc.loadFromClusterAndUser(cluster, { name: 'u', certData: clientCert.cert.toString('base64'), keyData: clientCert.key.toString('base64') });
  await client.getJson('/api/v1/pods');
  await client.getJson('/api/v1/pods');
  assert.equal(connections, 3);
  const deadline = Date.now() + 5_000;
  while (sockets.size > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(sockets.size, 1);
  const [last] = sockets;
  assert.equal(last?.getPeerCertificate().subject.CN, 'client');
});

test('a DELETE carries its body (DeleteOptions preconditions) with a length, so a kept-alive connection stays in step', async (t) => {
  const bodies: string[] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      bodies.push(`${req.method} ${body}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.on('connection', () => void (connections += 1));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }, { name: 'u', token: 't' });
  const client = new KubeClient(kc);
  t.after(() => client.close());
  const opts = { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion: '7' } };
  await client.send('DELETE', '/apis/meshd.io/v1alpha1/meshdidentities/300', opts);
  await client.send('DELETE', '/apis/meshd.io/v1alpha1/meshdidentities/301', opts);
  await client.getJson('/api/v1/pods');
  assert.deepEqual(bodies, [`DELETE ${JSON.stringify(opts)}`, `DELETE ${JSON.stringify(opts)}`, 'GET ']);
  assert.equal(connections, 1);
});
