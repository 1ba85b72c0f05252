/**
 * HTTP L7 policy between a client on node 1 and a server on node 2, in both
 * modes (src/devcluster/netns-nodes.ts, each node with its Envoy):
 *
 * - ingress, on node 2: in tunnel mode the overlay hands the connection to
 *   node 2's proxy on the identity the VNI carried, in native mode
 *   meshd_from_netdev on node 2's eth0 does on the identity of its ipcache;
 *   an allowed request gets 200 from the pod, a denied one Envoy's 403, and
 *   node 2's redirect event names the client's identity.
 * - egress, on node 1: the client pod's hook hands the connection to node 1's
 *   proxy, whose upstream leg crosses to node 2 (through the tunnel with the
 *   client's identity from the proxy's mark, or routed natively); allowed
 *   200, denied 403, and node 1 reports the egress redirect.
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

/** A policy on the pods labelled app=`on`: toward (or from) app=`peer` on 8080/TCP, only GET /public. */
function onlyGetPublic(name: string, on: string, direction: 'ingress' | 'egress', peer: string): object {
  const port = { ports: [{ port: '8080', protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/public' }] } };
  const rule = direction === 'ingress' ? { fromEndpoints: [{ matchLabels: { app: peer } }], toPorts: [port] } : { toEndpoints: [{ matchLabels: { app: peer } }], toPorts: [port] };
  return { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'default' }, spec: { endpointSelector: { matchLabels: { app: on } }, [direction]: [rule] } };
}

for (const mode of ['tunnel', 'native'] as const) {
  test(`${mode} mode: HTTP L7 policy across nodes, ingress on node 2 then egress on node 1 (allowed 200, denied 403, redirected on the client identity)`, { timeout: 600_000 }, async (t) => {
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

  const clientId = await n1.identityOf(client.ip);
  const webId = await n2.identityOf(web.ip);
  // An L7 policy on `on` (node `node`'s proxy answers 403 for the denied path, 200 for the allowed
  // one); that node reports the redirect of the client's connections to web, as `expected` says.
  const enforced = async (policy: object, node: NonNullable<typeof n1>, what: string, expected: (f: Awaited<ReturnType<NonNullable<typeof n1>["flows"]>>[number]) => boolean) => {
    await w.kube.apply(policy);
    await eventually(`the denied path gets 403 from ${what}`, async () => (await get('/private')).startsWith('403 '), 60_000);
    assert.match(await get('/public'), /^200 web 8080 GET \/public from /);
    const redirects = (await node.flows()).filter((f) => f.type === 'redirect' && f.src.ip === client.ip && f.dst.ip === web.ip && f.dst.port === 8080);
    assert.ok(redirects.length > 0, `${what} reported the redirect`);
    assert.ok(redirects.every(expected), JSON.stringify(redirects));
  };
  // Node 2 hands the connection to its proxy on the client's own identity (from the VNI, or its ipcache in native mode).
  await enforced(onlyGetPublic('web-l7', 'web', 'ingress', 'client'), n2, "node 2's proxy", (f) => f.srcIdentity === clientId && f.direction === 'ingress');

  // Egress L7 on node 1 toward the pod on node 2: once node 2's policy is gone (the denied path is served again).
  await w.kube.kubectl(['delete', 'ciliumnetworkpolicy', 'web-l7', '-n', 'default']);
  await eventually('node 2 serves /private again once its L7 policy is deleted', async () => (await get('/private')).startsWith('200 '), 60_000);
  await enforced(onlyGetPublic('client-l7', 'client', 'egress', 'web'), n1, "node 1's proxy", (f) => f.direction === 'egress' && f.srcIdentity === clientId && f.dstIdentity === webId);
});
}
