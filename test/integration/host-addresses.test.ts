/**
 * The host's own addresses on the kernel: the watcher follows addresses added
 * to and removed from this (the root) namespace; an agent with no Node
 * manifest gives them the host identity, so under a default-deny ingress
 * policy with allow-localhost on, a connection from the host to a local pod
 * gets through while one from a world address is still dropped in the kernel.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { test } from 'node:test';
import { dumpAddresses, watchAddresses } from '../../native/index.js';
import { watchHostAddresses } from '../../src/agent/host-addresses.js';
import { run } from '../../src/util/exec.js';
import { AgentNode } from '../helpers/agent-node.js';
import { Sandbox } from '../../src/devcluster/netns.js';
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

/** A TCP connection from this (the host's) namespace, from a given source address if any, exchanging one message. */
function connectFromHost(ip: string, port: number, localAddress: string | null, timeoutMs = 1500): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: ip, port, ...(localAddress === null ? {} : { localAddress }) });
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

/** The IPv6 link-local address of eth0 in `ns`, once duplicate address detection is done. */
async function linkLocalOf(ns: string): Promise<string> {
  let found = '';
  await until(`a link-local address in ${ns}`, async () => {
    const out = (await run('ip', ['-n', ns, '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'])).stdout;
    found = /inet6 (fe80:[0-9a-f:]+)\/64/.exec(out)?.[1] ?? '';
    return found !== '' && !out.includes('tentative');
  });
  return found;
}

/** An IPv6 TCP echo server in `ns` (the shared helper listens on IPv4 only). */
async function echoServer6(t: { after(fn: () => Promise<void>): void }, ns: string, port: number): Promise<void> {
  const script = `require('net').createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); }).listen(${port}, '::', () => console.log('ready'));`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  });
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  assert.equal(line, 'ready');
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
  // A probe from the host over IPv6 link-local (fe80::, scope link) is not the host's: as before, it is
  // world and dropped under default deny (the same address may exist on another link).
  const podLinkLocal = await linkLocalOf(server.ns);
  const hostVeth = running.agent.endpointList().map((e) => e.ifname).find((n): n is string => typeof n === 'string');
  assert.ok(hostVeth, 'the pod has a host-side interface');
  await echoServer6(t, server.ns, 8081);
  // The host end's own link-local address is the source: until its duplicate address detection is done, connect() gets EADDRNOTAVAIL.
  await until(`a usable link-local address on ${hostVeth}`, async () => {
    const out = (await run('ip', ['-6', '-o', 'addr', 'show', 'dev', hostVeth, 'scope', 'link'])).stdout;
    return /inet6 fe80:/.test(out) && !out.includes('tentative');
  });
  assert.equal(await connectFromHost(`${podLinkLocal}%${hostVeth}`, 8081, null), 'timeout');

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

  // Both paths work: allowing those addresses lets them through (so the drops above were policy).
  node.write('policy.yaml', policy(`    - fromCIDR: [${worldIp}/32, "fe80::/10"]\n`));
  await until('the world peer to be allowed', async () => (await tryConnect(world, server.ip, 8080, 800)) === 'connected');
  assert.equal(await connectFromHost(`${podLinkLocal}%${hostVeth}`, 8081, null), 'connected');

  // The address going away takes its host identity with it.
  await run('ip', ['addr', 'del', `${hostIp}/32`, 'dev', worldIf]);
  await until('the agent to forget the host address', () => !engine.hostAddresses().includes(hostIp));
  assert.equal(engine.identityOfIp(hostIp), 2);
});
