/**
 * Clients outside the node reach Service backends through bpf/nodeport.c on
 * a native device. The host namespace is the node (an agent in this
 * process); a client namespace is joined to it by a veth that the agent's
 * `devices` names; the backend is a pod wired by meshd-cni. The client
 * reaches a LoadBalancer address, an external IP and the NodePort on the
 * veth's node address; the backend sees the client's own address (no SNAT
 * for a local backend) and the client's connection, made to the frontend,
 * works only because the replies come back from the frontend. A deleted
 * Service stops answering; an externalTrafficPolicy: Local Service without a
 * backend on this node is dropped, with the drop reason in the agent's flows.
 *
 * The load-balancer and external addresses are host-scoped addresses on the
 * veth, as an L2 announcement places them: without meshd the node itself
 * answers (refuses) and nothing is forwarded anywhere.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { resolveDevices } from '../../src/datapath/nodeport/devices.js';
import { uninstallNode } from '../../src/install/uninstall-node.js';
import { isMeshdError } from '../../src/util/errors.js';
import { run } from '../../src/util/exec.js';
import { AgentNode } from '../helpers/agent-node.js';
import { until } from '../helpers/kube-nodes.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const N = 1 + (process.pid % 200);
const HOST_IP = `10.213.${N}.1`;
const CLIENT_IP = `10.213.${N}.2`;
const LB_IP = `10.214.${N}.9`;
const EXT_IP = `10.215.${N}.5`;
const LOCAL_LB_IP = `10.214.${N}.10`;
const PORT = 18080;
const NODE_PORT = 31080;

/** In the backend pod: answers every connection with the peer address it sees. */
const PEER_ECHO = "require('net').createServer((s) => { s.on('error', () => {}); s.end(s.remoteAddress.replace(/^::ffff:/, '')); }).listen(8080, '0.0.0.0', () => console.log('ready'));";
/** In the client namespace: what a connection to argv[1]:argv[2] receives, or why nothing. */
const CLIENT =
  "const s = require('net').connect({ host: process.argv[1], port: Number(process.argv[2]) }); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => { console.log('got ' + d); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(0); }); setTimeout(() => { console.log('timeout'); process.exit(0); }, 1500);";

function services(o: { withWeb: boolean; backend: string }): string {
  const web = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  externalIPs: ["${EXT_IP}"]
  ports: [{name: http, port: ${PORT}, targetPort: 8080, nodePort: ${NODE_PORT}, protocol: TCP}]
status:
  loadBalancer: {ingress: [{ip: "${LB_IP}"}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: ["${o.backend}"], nodeName: test-node, conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
---
`;
  const local = `apiVersion: v1
kind: Service
metadata: {name: local-only, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ports: [{name: http, port: ${PORT}, targetPort: 8080, protocol: TCP}]
status:
  loadBalancer: {ingress: [{ip: "${LOCAL_LB_IP}"}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-only-1, namespace: default, labels: {kubernetes.io/service-name: local-only}}
addressType: IPv4
endpoints: [{addresses: ["10.216.${N}.7"], nodeName: other-node, conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
`;
  return (o.withWeb ? web : '') + local;
}

test('clients outside the node reach a LoadBalancer address, an external IP and a NodePort; the backend sees the client', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('np');
  const hostIf = sb.name('h');
  const client = await sb.netns('cl');
  await sb.vethToHost(client, { hostIf, podIf: 'eth0', hostIp: `${HOST_IP}/24`, podIp: `${CLIENT_IP}/24`, defaultRoute: true });
  // The frontends' addresses as L2 announcements put them: host-scoped, on the device.
  for (const ip of [LB_IP, EXT_IP, LOCAL_LB_IP]) await run('ip', ['addr', 'add', `${ip}/32`, 'dev', hostIf, 'scope', 'host']);
  await run('sysctl', ['-qw', `net.ipv4.conf.${hostIf}.forwarding=1`]);

  const node = new AgentNode({ devices: [hostIf], 'bpf.lbMapMax': 4096 });
  t.after(async () => {
    await node.cleanup();
    await sb.cleanup();
  });
  mkdirSync(node.manifests, { recursive: true });
  node.write('services.yaml', services({ withWeb: false, backend: '' }));
  const agent = await node.start();
  const status = agent.agent.status();
  assert.deepEqual(status.nodePort?.devices.map((d) => [d.name, d.addresses]), [[hostIf, [HOST_IP]]]);

  const pod = await node.addPod('backend');
  const server = spawn('ip', ['netns', 'exec', pod.ns, process.execPath, '-e', PEER_ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => server.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    server.stdout.once('data', () => resolve());
    server.once('exit', (c) => reject(new Error(`backend server exited (${c})`)));
  });
  node.write('services.yaml', services({ withWeb: true, backend: pod.ip }));

  const connect = async (ip: string, port: number) => (await run('ip', ['netns', 'exec', client, process.execPath, '-e', CLIENT, ip, String(port)], { timeoutMs: 10_000 })).stdout.trim();
  for (const [what, ip, port] of [
    ['LoadBalancer address', LB_IP, PORT],
    ['external IP', EXT_IP, PORT],
    ['NodePort on the node address', HOST_IP, NODE_PORT],
  ] as const) {
    const got = await until(`the client reaches the backend through the ${what} ${ip}:${port}`, async () => {
      const r = await connect(ip, port);
      return r.startsWith('got ') ? r : undefined;
    });
    assert.equal(got, `got ${CLIENT_IP}`, `${what}: the backend sees the client's own address`);
  }
  const counters = agent.agent.status().nodePort?.counters;
  assert.ok((counters?.translated ?? 0) >= 3 && (counters?.reverseTranslated ?? 0) >= 3, `translations counted: ${JSON.stringify(counters)}`);

  // externalTrafficPolicy: Local, and the only backend is on another node: dropped, reason reported.
  const since = process.hrtime.bigint();
  assert.equal(await connect(LOCAL_LB_IP, PORT), 'timeout');
  await until('the drop is reported with its reason', () => (node.dropReasons(since, CLIENT_IP, LOCAL_LB_IP, PORT).includes('NO_SERVICE_BACKEND') ? true : undefined), 5_000);

  // The Service goes: its frontends stop answering (the node itself refuses).
  node.write('services.yaml', services({ withWeb: false, backend: pod.ip }));
  await until('the deleted Service stops answering on its LoadBalancer address', async () => ((await connect(LB_IP, PORT)) === 'ECONNREFUSED' ? true : undefined));
  assert.equal(await connect(EXT_IP, PORT), 'ECONNREFUSED');
  assert.equal(await connect(HOST_IP, NODE_PORT), 'ECONNREFUSED');

  // The kernel goes on serving with the agent stopped; `meshd uninstall --node` detaches the programs from the device.
  node.write('services.yaml', services({ withWeb: true, backend: pod.ip }));
  await until('the Service answers again', async () => ((await connect(LB_IP, PORT)) === `got ${CLIENT_IP}` ? true : undefined));
  await node.stopAgent();
  assert.equal(await connect(LB_IP, PORT), `got ${CLIENT_IP}`, 'served with the agent stopped');
  // A restarted agent adopts the pinned links (the device is never without its program) and serves on.
  await node.start();
  assert.equal(await connect(LB_IP, PORT), `got ${CLIENT_IP}`, 'served by a restarted agent');
  await node.stopAgent();
  await uninstallNode(node.config);
  assert.equal(await connect(LB_IP, PORT), 'ECONNREFUSED', 'after uninstall the node itself answers: nothing translates any more');
});

/**
 * A backend on another node, routed through a second native device (as the
 * underlay would carry it): reached with SNAT to the address of that device;
 * its replies come back through this node to the client, from the frontend.
 */
async function remoteBackend(t: TestContext, family: 4 | 6, slot: number): Promise<void> {
  const sb = new Sandbox(`np${family}`);
  const hostIf = sb.name('h');
  const farIf = sb.name('f');
  const client = await sb.netns('cl');
  const far = await sb.netns('far');
  const v6 = family === 6;
  const a = v6
    ? { host: `fd13:${N}::1`, client: `fd13:${N}::2`, farHost: `fd18:${N}::1`, backend: `fd18:${N}::2`, lb: `fd14:${N}::9`, len: 64, full: 128 }
    : { host: HOST_IP, client: CLIENT_IP, farHost: `10.218.${N}.1`, backend: `10.218.${N}.2`, lb: LB_IP, len: 24, full: 32 };
  const nodad = v6 ? ['nodad'] : [];
  await sb.vethToHost(client, { hostIf, podIf: 'eth0' });
  await sb.vethToHost(far, { hostIf: farIf, podIf: 'eth0' });
  for (const [ns, dev, ip, gw] of [
    [client, 'eth0', a.client, a.host],
    [far, 'eth0', a.backend, a.farHost],
  ] as const) {
    await run('ip', ['-n', ns, 'addr', 'add', `${ip}/${a.len}`, 'dev', dev, ...nodad]);
    await run('ip', ['-n', ns, `-${family}`, 'route', 'add', 'default', 'via', gw]);
  }
  await run('ip', ['addr', 'add', `${a.host}/${a.len}`, 'dev', hostIf, ...nodad]);
  await run('ip', ['addr', 'add', `${a.farHost}/${a.len}`, 'dev', farIf, ...nodad]);
  await run('ip', ['addr', 'add', `${a.lb}/${a.full}`, 'dev', hostIf, 'scope', 'host', ...nodad]);
  for (const dev of [hostIf, farIf]) await run('sysctl', ['-qw', `net.ipv${family}.conf.${dev}.forwarding=1`]);

  const node = new AgentNode({ devices: [hostIf, farIf], 'bpf.lbMapMax': 4096 }, slot);
  t.after(async () => {
    await node.cleanup();
    await sb.cleanup();
  });
  mkdirSync(node.manifests, { recursive: true });
  node.write(
    'services.yaml',
    `apiVersion: v1
kind: Service
metadata: {name: far, namespace: default}
spec:
  type: LoadBalancer
  ports: [{name: http, port: ${PORT}, targetPort: 8080, protocol: TCP}]
status:
  loadBalancer: {ingress: [{ip: "${a.lb}"}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: far-1, namespace: default, labels: {kubernetes.io/service-name: far}}
addressType: IPv${family}
endpoints: [{addresses: ["${a.backend}"], nodeName: other-node, conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
`,
  );
  const server = spawn('ip', ['netns', 'exec', far, process.execPath, '-e', PEER_ECHO.replace("'0.0.0.0'", "'::'")], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => server.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    server.stdout.once('data', () => resolve());
    server.once('exit', (c) => reject(new Error(`backend server exited (${c})`)));
  });
  const agent = await node.start();

  const got = await until(`the client reaches the remote backend through ${a.lb} port ${PORT}`, async () => {
    const r = (await run('ip', ['netns', 'exec', client, process.execPath, '-e', CLIENT, a.lb, String(PORT)], { timeoutMs: 10_000 })).stdout.trim();
    return r.startsWith('got ') ? r : undefined;
  });
  assert.equal(got, `got ${a.farHost}`, 'the remote backend sees the address of the device it is reached through');
  const counters = agent.agent.status().nodePort?.counters;
  assert.ok((counters?.snat ?? 0) >= 1 && (counters?.reverseTranslated ?? 0) >= 1, `SNAT and its replies counted: ${JSON.stringify(counters)}`);
}

test('a backend on another node is reached with SNAT to the node address, and its replies come back through this node', (t) => remoteBackend(t, 4, 1));

test('IPv6: a LoadBalancer address and a backend on another node, SNAT both ways', (t) => remoteBackend(t, 6, 4));

test('a device named in devices that does not exist stops the start with its code', async () => {
  await assert.rejects(resolveDevices({ names: ['meshdnone0'] }), (e: unknown) => isMeshdError(e, 'MESHD_NODEPORT_DEVICE_NOT_FOUND'));
  const lo = await resolveDevices({ names: ['lo'] });
  assert.deepEqual(lo.map((d) => [d.name, d.ipv4]), [['lo', []]], 'host-scoped addresses (127.0.0.1) are no node addresses');
});
