/**
 * TLS interception in the running agent, standalone: the example policy
 * (examples/policies/l7-tls-interception.yaml) and Secret manifests in the
 * manifest directory, pods through meshd-cni, the node's Envoy. Rotating the
 * Secret in the directory changes the served certificate; removing it is
 * reported as MESHD_PROXY_SECRET_MISSING while its last good version keeps
 * being served.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { eventually, until } from '../helpers/kube-nodes.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { makePki, startTlsServer, tlsPeer } from '../helpers/tls-peer.js';

function secretManifest(name: string, data: Record<string, string>): string {
  const lines = Object.entries(data).map(([k, v]) => `  ${k}: |\n${v.trim().split('\n').map((l) => `    ${l}`).join('\n')}`);
  return `apiVersion: v1\nkind: Secret\nmetadata: {name: ${name}, namespace: default}\nstringData:\n${lines.join('\n')}\n`;
}

test('agent: TLS interception with Secret manifests from the policy directory, rotated by rewriting them', async (t) => {
  requirePrivileges();
  const upstream = await makePki('tlsaup');
  t.after(() => upstream.remove());
  const intercept = await makePki('tlsain');
  t.after(() => intercept.remove());
  const serverCert = await upstream.leaf('api', 'api server', ['api.example.com']);
  const c1 = await intercept.leaf('p1', 'intercept-1', ['api.example.com']);
  const c2 = await intercept.leaf('p2', 'intercept-2', ['api.example.com']);
  const pem = (f: string) => readFileSync(f, 'utf8');
  const secrets = (c: { crt: string; key: string }, withCa = true) =>
    [secretManifest('intercept', { 'tls.crt': pem(c.crt), 'tls.key': pem(c.key) }), ...(withCa ? [secretManifest('upstream-ca', { 'ca.crt': pem(upstream.ca.crt) })] : [])].join('---\n');

  const node = new AgentNode({ 'envoy.enabled': true });
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  copyFileSync(repoPath('examples', 'demo', 'pods.yaml'), join(node.manifests, 'pods.yaml'));
  copyFileSync(repoPath('examples', 'policies', 'l7-tls-interception.yaml'), join(node.manifests, 'policy.yaml'));
  node.write('secrets.yaml', secrets(c1));
  const running = await node.start();
  const client = await node.addPod('client');
  const api = await node.addPod('api');
  await startTlsServer(api.ns, serverCert.crt, serverCert.key, [8443], (fn) => node.sb.defer(fn));

  const get = (path: string) => tlsPeer(client.ns, ['get', api.ip, '8443', 'api.example.com', path, intercept.ca.crt]);
  const first = await until('an intercepted GET answered', async () => {
    const o = await get('/allowed');
    return o.status === 200 ? o : undefined;
  });
  assert.equal(first.peerCN, 'intercept-1');
  assert.match(first.body ?? '', /^https GET \/allowed api\.example\.com from /);
  assert.deepEqual(await get('/admin'), { ok: true, status: 403, body: 'Access denied', peerCN: 'intercept-1' });

  node.write('secrets.yaml', secrets(c2));
  await eventually('the rotated certificate served', async () => (await get('/allowed')).peerCN === 'intercept-2');

  node.write('secrets.yaml', secrets(c2, false));
  await eventually('the missing Secret reported', () => running.agent.status().proxy?.errorCode === 'MESHD_PROXY_SECRET_MISSING');
  assert.match(running.agent.status().proxy?.error ?? '', /originatingTLS\.secret default\/upstream-ca/);
  const still = await get('/allowed');
  assert.deepEqual([still.status, still.peerCN], [200, 'intercept-2']);
});
