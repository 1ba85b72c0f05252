/**
 * HTTP L7 ingress policy on node 2 for a client on node 1, in both modes
 * (test/helpers/netns-nodes.ts, each node with its Envoy): in tunnel mode the
 * overlay hands the connection to node 2's proxy on the identity the VNI
 * carried, in native mode meshd_from_netdev on node 2's eth0 does on the
 * identity of its ipcache; an
 * allowed request gets 200 from the pod, a denied one Envoy's 403, and node
 * 2's redirect event names the client's identity.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { repoPath } from '../../src/util/paths.js';
import { eventually } from '../helpers/kube-nodes.js';
import { nodeRoutesFor, podExec, startNetnsNodes } from '../helpers/netns-nodes.js';
import { requirePrivileges } from '../helpers/privileged.js';

const PEER = repoPath('dist', 'test', 'helpers', 'l7-http-peer.js');
const GET = "require('http').get({ host: process.argv[1], port: 8080, path: process.argv[2], timeout: 3000 }, (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => { console.log(r.statusCode + ' ' + b); process.exit(0); }); }).on('error', (e) => { console.log('error ' + e.code); process.exit(0); }).on('timeout', () => { console.log('timeout'); process.exit(0); });";

for (const mode of ['tunnel', 'native'] as const) {
  test(`${mode} mode: HTTP L7 ingress policy on node 2 for a client on node 1 (allowed 200, denied 403, redirected on the client identity)`, { timeout: 600_000 }, async (t) => {
  requirePrivileges();
  const w = await startNetnsNodes(t, [`mn-${mode[0] ?? ''}l1`, `mn-${mode[0] ?? ''}l2`], { routingMode: mode, envoy: true });
  const [n1, n2] = w.nodes;
  assert.ok(n1 && n2);
  await nodeRoutesFor(n1, [n2], mode);
  const client = await n1.kubelet.runPod('client', { labels: { app: 'client' } });
  const web = await n2.kubelet.runPod('web', { labels: { app: 'web' } });
  const server = spawn('ip', ['netns', 'exec', web.ns, process.execPath, PEER, 'serve', 'web', '8080'], { stdio: ['ignore', 'pipe', 'inherit'] });
  w.defer(() => void server.kill('SIGKILL'));
  const first = await createInterface({ input: server.stdout })[Symbol.asyncIterator]().next();
  assert.equal(first.value, 'ready');
  const get = async (path: string) => (await podExec(client, process.execPath, ['-e', GET, web.ip, path], 20_000)).stdout.trim();
  await eventually('the client reaches web across nodes', async () => (await get('/public')).startsWith('200 '));

  await w.kube.apply({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'web-l7', namespace: 'default' },
    spec: {
      endpointSelector: { matchLabels: { app: 'web' } },
      ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/public' }] } }] }],
    },
  });
  await eventually('the denied path gets 403 from node 2\'s proxy', async () => (await get('/private')).startsWith('403 '), 60_000);
  assert.match(await get('/public'), /^200 web 8080 GET \/public from /);
  // Node 2 handed the connection to its proxy on the client's own identity (from the VNI, or its ipcache in native mode).
  const clientId = await n1.identityOf(client.ip);
  const redirects = (await n2.flows()).filter((f) => f.type === 'redirect' && f.src.ip === client.ip && f.dst.ip === web.ip && f.dst.port === 8080);
  assert.ok(redirects.length > 0, 'node 2 reported the redirect');
  assert.ok(redirects.every((f) => f.srcIdentity === clientId && f.direction === 'ingress'), JSON.stringify(redirects));
});
}
