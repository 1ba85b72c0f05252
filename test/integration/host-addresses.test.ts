/**
 * The host's own addresses on the kernel: the watcher follows addresses added
 * to and removed from this (the root) namespace; an agent with no Node
 * manifest gives them the host identity, so under a default-deny ingress
 * policy with allow-localhost on, a connection from the host to a local pod
 * gets through while one from a world address is still dropped in the kernel.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdirSync } from 'node:fs';
import { test } from 'node:test';
import { dumpAddresses, watchAddresses } from '../../native/index.js';
import { watchHostAddresses } from '../../src/agent/host-addresses.js';
import { run } from '../../src/util/exec.js';
import { AgentNode } from '../helpers/agent-node.js';
import { Sandbox } from '../helpers/netns.js';
import { echoServer, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';

/** Addresses of the benchmarking range (198.18.0.0/15), distinct per process so parallel runs do not meet. */
const octet = (process.pid % 250) + 1;

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A TCP connection from this (the host's) namespace, from a given source address, exchanging one message. */
function connectFromHost(ip: string, port: number, localAddress: string, timeoutMs = 1500): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: ip, port, localAddress });
    const done = (r: string): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    s.on('connect', () => {
      s.write('hi');
      s.once('data', () => done('connected'));
    });
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : (e.code ?? 'error')));
  });
}

test('host address watcher: addresses added to and removed from the root namespace are followed', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('hw');
  t.after(() => sb.cleanup());
  const ns = await sb.netns('p');
  const hostIf = sb.name('h');
  await sb.vethToHost(ns, { hostIf, podIf: 'eth0' });
  const changes: string[][] = [];
  const errors: unknown[] = [];
  const w = watchHostAddresses({ source: { dump: dumpAddresses, watch: watchAddresses }, debounceMs: 50, onChange: (ips) => changes.push(ips), onError: (e) => errors.push(e) });
  t.after(() => w.close());
  const v4 = `198.19.${octet}.7`;
  const v6 = `2001:db8:${octet.toString(16)}::7`;
  assert.ok(!w.current().includes(v4));

  await run('ip', ['addr', 'add', `${v4}/32`, 'dev', hostIf]);
  await run('ip', ['-6', 'addr', 'add', `${v6}/128`, 'dev', hostIf, 'nodad']);
  await until('both addresses', () => w.current().includes(v4) && w.current().includes(v6));
  // The veth's own IPv6 link-local address (scope link) never counts.
  assert.ok(!w.current().some((ip) => ip.startsWith('fe80:')));
  assert.ok(!w.current().includes('127.0.0.1'));

  await run('ip', ['addr', 'del', `${v4}/32`, 'dev', hostIf]);
  await until('the removal', () => !w.current().includes(v4));
  assert.ok(w.current().includes(v6));
  assert.deepEqual(errors, []);
  assert.ok(changes.length >= 2);
});

const POD = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: server\n  namespace: default\n  labels: {app: server}\n';
const policy = (extra = '') => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-deny, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: nobody}}]
${extra}`;

test('agent without a Node manifest: the host reaches a default-deny pod (allow-localhost), a world address does not', async (t) => {
  requirePrivileges();
  const node = new AgentNode();
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  node.write('pod.yaml', POD);
  node.write('policy.yaml', policy());
  const running = await node.start();
  const engine = running.agent.engine;
  assert.equal(engine.nodeIdentity('test-node')?.local, true, 'the local node is known from the configuration only');

  const server = await node.addPod('server');
  await echoServer(t, server.ns, [8080]);
  // The pod's own loopback never passes the datapath: unaffected by policy, as before.
  assert.equal(await tryConnect(server.ns, '127.0.0.1', 8080), 'connected');

  // A world peer: a namespace routed through the host. Its veth's host end gets an address too (a host address).
  const world = await node.sb.netns('world');
  const worldIf = node.sb.name('w');
  const worldIp = `198.18.${octet}.2`;
  await node.sb.vethToHost(world, { hostIf: worldIf, podIf: 'eth0', hostIp: `198.18.${octet}.1/30`, podIp: `${worldIp}/30`, defaultRoute: true });
  await run('sysctl', ['-qw', `net.ipv4.conf.${worldIf}.forwarding=1`]);
  // An address the host gains while the agent runs, as a node's addresses change.
  const hostIp = `198.19.${octet}.1`;
  await run('ip', ['addr', 'add', `${hostIp}/32`, 'dev', worldIf]);
  await until('the agent to learn the new host address', () => engine.hostAddresses().includes(hostIp));
  assert.equal(engine.identityOfIp(hostIp), 1);
  assert.equal(engine.identityOfIp(worldIp), 2);
  const ipcache = engine.ipcache();
  assert.ok(ipcache.some((e) => e.prefix === `${hostIp}/32` && e.identity === 1));
  assert.ok(!ipcache.some((e) => e.prefix.startsWith('fe80:') || e.prefix.startsWith('127.')), 'no loopback or link-local address in the ipcache');

  await until('the host to reach the pod', async () => (await connectFromHost(server.ip, 8080, hostIp, 800)) === 'connected');
  assert.equal(await tryConnect(world, server.ip, 8080), 'timeout', 'the world peer is dropped in the kernel');

  // The world path itself works: allowing that address lets it through (so the drop above was policy).
  node.write('policy.yaml', policy(`    - fromCIDR: [${worldIp}/32]\n`));
  await until('the world peer to be allowed', async () => (await tryConnect(world, server.ip, 8080, 800)) === 'connected');

  // The address going away takes its host identity with it.
  await run('ip', ['addr', 'del', `${hostIp}/32`, 'dev', worldIf]);
  await until('the agent to forget the host address', () => !engine.hostAddresses().includes(hostIp));
  assert.equal(engine.identityOfIp(hostIp), 2);
});
