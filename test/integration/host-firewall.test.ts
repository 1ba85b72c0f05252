/**
 * The host firewall (bpf/host.c) enforcing a host policy on native devices.
 * The host namespace is the node (an agent in this process); three client
 * namespaces are joined to it by veths that `devices` names: a machine on the
 * underlay (admitted by CIDR), another node (a Node object with its address:
 * the remote-node entity) and a pod of another node (a Pod object with its
 * address and labels). A CiliumClusterwideNetworkPolicy selecting this node
 * by label admits TCP on one port from the underlay client, another port
 * from the pod, a third from one label of the node's own pods, ICMP echo
 * requests from the underlay client, VRRP from other nodes, and lets the host
 * open connections only to one port of the underlay client and to the listed
 * local pods. Checked: what it admits connects, the rest is dropped with a
 * drop event naming the host as destination; replies to the host's own
 * connections pass; IGMP follows the policy; traffic between the host and its
 * local pods (on the pods' veths, not the devices) meets the host policy in
 * both directions; in policyAuditMode nothing is dropped and the events say
 * AUDIT (for a pod closed by its own policy too); with
 * hostFirewall.enabled=false nothing is attached.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FlowRecord } from '../../src/datapath/endpoint/flow-events.js';
import { AgentNode } from '../helpers/agent-node.js';
import { connectFrom, connectFromHost, pingFrom, startPeer } from '../helpers/datapath-peer.js';
import { until } from '../helpers/kube-nodes.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { run } from '../../src/util/exec.js';

const N = 1 + (process.pid % 200);
const HOST1 = `10.217.${N}.1`;
const CLIENT1 = `10.217.${N}.2`;
const HOST2 = `10.218.${N}.1`;
const CLIENT2 = `10.218.${N}.2`;
const HOST3 = `10.220.${N}.1`;
const REMOTE_POD = `10.220.${N}.2`;
const BASE = 21000 + (process.pid % 500) * 8;
const ALLOWED = BASE; // host server, admitted from CLIENT1
const DENIED = BASE + 1; // host server, admitted from no one
const OUT_OK = BASE + 2; // CLIENT1's server the host may reach
const OUT_DENIED = BASE + 3; // CLIENT1's server the host may not reach
const LOCAL = BASE + 4; // host server, admitted from the local pods labelled app=local-client
const POD_PORT = 8080; // the local pods' servers
const VRRP = 112;
const IGMP = 2;
const MARK = `meshd-hostfw-${process.pid}`;

/** In the host namespace: prints "got SRC" for each packet of protocol argv[1] that carries the marker. */
const RAW_RECV = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, int(sys.argv[1]))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(4096)
    if sys.argv[2].encode() in d:
        print("got " + a[0], flush=True)`;

/** In a client namespace: one packet of protocol argv[1] to argv[2] (an IGMPv2 report for IGMP) carrying the marker. */
const RAW_SEND = `import socket, sys
p, ip, mark = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
def csum(b):
    if len(b) % 2: b += b"\\0"
    t = sum((b[i] << 8) + b[i + 1] for i in range(0, len(b), 2))
    while t >> 16: t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF
if p == 2:
    body = bytes([0x16, 0, 0, 0, 224, 0, 0, 251]) + mark
    c = csum(body)
    body = body[:2] + c.to_bytes(2, "big") + body[4:]
else:
    body = bytes([0x31, 1, 100, 0, 0, 1, 0, 0]) + mark
socket.socket(socket.AF_INET, socket.SOCK_RAW, p).sendto(body, (ip, 0))`;

function manifests(o: { igmp: boolean }): string {
  return `apiVersion: v1
kind: Node
metadata: {name: test-node, labels: {hostfw-test: "on"}}
status: {addresses: [{type: InternalIP, address: "${HOST1}"}]}
---
apiVersion: v1
kind: Node
metadata: {name: other-node, labels: {hostfw-test: "other"}}
status: {addresses: [{type: InternalIP, address: "${CLIENT2}"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: remote-client, namespace: default, labels: {app: remote-client}}
spec: {nodeName: other-node}
status: {podIP: "${REMOTE_POD}"}
---
apiVersion: v1
kind: Pod
metadata: {name: lclok, namespace: default, labels: {app: local-client}}
spec: {nodeName: test-node}
---
apiVersion: v1
kind: Pod
metadata: {name: lclno, namespace: default, labels: {app: local-other}}
spec: {nodeName: test-node}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-fw}
spec:
  nodeSelector: {matchLabels: {hostfw-test: "on"}}
  ingress:
    - fromCIDR: ["${CLIENT1}/32"]
      toPorts: [{ports: [{port: "${ALLOWED}", protocol: TCP}]}]
    - fromCIDR: ["${CLIENT1}/32"]
      icmps: [{fields: [{type: EchoRequest, family: IPv4}]}]
    - fromEntities: [remote-node]
      toPorts: [{ports: [{protocol: VRRP}${o.igmp ? ', {protocol: IGMP}' : ''}]}]
    - fromEndpoints: [{matchLabels: {app: remote-client}}]
      toPorts: [{ports: [{port: "${DENIED}", protocol: TCP}]}]
    - fromEndpoints: [{matchLabels: {app: local-client}}]
      toPorts: [{ports: [{port: "${LOCAL}", protocol: TCP}]}]
  egress:
    - toCIDR: ["${CLIENT1}/32"]
      toPorts: [{ports: [{port: "${OUT_OK}", protocol: TCP}]}]
    - toEndpoints: [{matchLabels: {app: local-client}}]
      toPorts: [{ports: [{port: "${POD_PORT}", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: pods-closed, namespace: default}
spec:
  endpointSelector: {}
  ingress: [{}]
`;
}

test('a host policy on the native devices admits only what it lists; audit mode drops nothing and reports; disabled attaches nothing', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('hfw');
  const h1 = sb.name('a');
  const h2 = sb.name('b');
  const c1 = await sb.netns('c1');
  const c2 = await sb.netns('c2');
  await sb.vethToHost(c1, { hostIf: h1, podIf: 'eth0', hostIp: `${HOST1}/24`, podIp: `${CLIENT1}/24`, defaultRoute: true });
  await sb.vethToHost(c2, { hostIf: h2, podIf: 'eth0', hostIp: `${HOST2}/24`, podIp: `${CLIENT2}/24`, defaultRoute: true });
  // A pod of another node (a Pod object with its address), standing behind a third device.
  const h3 = sb.name('c');
  const c3 = await sb.netns('c3');
  await sb.vethToHost(c3, { hostIf: h3, podIf: 'eth0', hostIp: `${HOST3}/24`, podIp: `${REMOTE_POD}/24`, defaultRoute: true });

  const node = new AgentNode({ devices: [h1, h2, h3], 'hostFirewall.enabled': true, 'nodePort.enabled': false, 'bpf.lbMapMax': 4096 });
  t.after(async () => {
    await node.cleanup();
    await sb.cleanup();
  });
  mkdirSync(node.manifests, { recursive: true });
  node.write('host.yaml', manifests({ igmp: false }));
  await startPeer(sb, null, ['serve', 'H', String(ALLOWED), String(DENIED), String(LOCAL)]);
  await startPeer(sb, c1, ['serve', 'C', String(OUT_OK), String(OUT_DENIED)]);
  const agent = await node.start();
  const linkDir = join(node.config['bpf.root'], 'meshd', 'links');
  const hostLinks = () => (existsSync(linkDir) ? readdirSync(linkDir).filter((f) => f.startsWith('hostfw_')).sort() : []);
  assert.equal(hostLinks().length, 6, 'ingress and egress links on the three devices');
  const st = agent.agent.status().hostFirewall;
  assert.deepEqual([st?.auditMode, st?.devices.map((d) => d.name)], [false, [h1, h2, h3]]);
  // A pod behind the same device, closed by its own policy (for audit mode below).
  await run('sysctl', ['-qw', `net.ipv4.conf.${h1}.forwarding=1`]);
  const pod = await node.addPod('web');
  await startPeer(sb, pod.ns, ['serve', 'P', String(POD_PORT)]);
  // Two more local pods: one the host policy lists (app=local-client), one it does not.
  const listed = await node.addPod('lclok');
  const unlisted = await node.addPod('lclno');
  await startPeer(sb, listed.ns, ['serve', 'L', String(POD_PORT)]);
  const kernel = agent.agent.kernelPolicy('node:test-node');
  assert.ok(kernel && kernel.entries.size > 0, 'the host endpoint\'s policy is in the kernel');

  const flowsSince = (since: bigint, pred: (f: FlowRecord) => boolean) => agent.agent.recentFlows().filter((f) => f.monotonicNs >= since && pred(f));
  const dropped = async (what: string, since: bigint, pred: (f: FlowRecord) => boolean) =>
    until(`${what}: a drop event`, () => {
      const hits = flowsSince(since, (f) => f.type === 'drop' && pred(f));
      return hits.length > 0 ? hits : undefined;
    }, 5_000);

  // Ingress: the listed port from the listed client; not another port, not another node.
  await until('the admitted client reaches the admitted port', async () => ((await connectFrom(sb, c1, HOST1, ALLOWED)) === `H ${ALLOWED} ${CLIENT1}` ? true : undefined));
  let since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, c1, HOST1, DENIED), 'TIMEOUT');
  const denied = await dropped('another port', since, (f) => f.src.ip === CLIENT1 && f.dst.port === DENIED);
  assert.deepEqual([denied[0]?.dropReason, denied[0]?.direction, denied[0]?.dstIdentity], ['POLICY_DEFAULT_DENY', 'ingress', 1]);
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, c2, HOST2, ALLOWED), 'TIMEOUT', 'the other node is not admitted on the port');
  const other = await dropped('the other node', since, (f) => f.src.ip === CLIENT2 && f.dst.port === ALLOWED);
  assert.equal(other[0]?.dstIdentity, 1);
  assert.notEqual(other[0]?.srcIdentity, 2, 'the other node is known by its node identity, not world');

  // A pod of another node, by its labels: its port, not the others.
  assert.equal(await connectFrom(sb, c3, HOST3, DENIED), `H ${DENIED} ${REMOTE_POD}`, 'the remote pod is admitted on its port');
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, c3, HOST3, ALLOWED), 'TIMEOUT');
  const podDrop = await dropped('the remote pod on another port', since, (f) => f.src.ip === REMOTE_POD && f.dst.port === ALLOWED);
  assert.ok((podDrop[0]?.srcIdentity ?? 0) >= 256, `the remote pod is judged by its own identity (${podDrop[0]?.srcIdentity})`);

  // ICMP by type: echo requests from the listed client only.
  assert.equal(await pingFrom(sb, c1, HOST1), 'reply 0');
  since = process.hrtime.bigint();
  assert.equal(await pingFrom(sb, c2, HOST2), 'TIMEOUT');
  await dropped('a ping from the other node', since, (f) => f.src.ip === CLIENT2 && f.protocol === 1 && f.icmpType === 8);

  // Egress: the host's own connections, and their replies, only where the policy lets it go.
  assert.equal(await connectFromHost(CLIENT1, OUT_OK), `C ${OUT_OK} ${HOST1}`, 'the reply of the host\'s own connection passes');
  since = process.hrtime.bigint();
  assert.equal(await connectFromHost(CLIENT1, OUT_DENIED), 'TIMEOUT');
  const out = await dropped('the host to a port not listed', since, (f) => f.dst.ip === CLIENT1 && f.dst.port === OUT_DENIED);
  assert.deepEqual([out[0]?.direction, out[0]?.srcIdentity, out[0]?.dropReason], ['egress', 1, 'POLICY_DEFAULT_DENY']);

  // Extended protocols: VRRP from another node admitted, from the underlay client not; IGMP only once listed.
  const vrrp = await startRaw(sb, VRRP);
  const igmp = await startRaw(sb, IGMP);
  const send = (ns: string, proto: number, ip: string) => sb.exec(ns, 'python3', ['-c', RAW_SEND, String(proto), ip, MARK], 10_000);
  await send(c2, VRRP, HOST2);
  await vrrp.waitFor(new RegExp(`^got ${CLIENT2.replace(/\./g, '\\.')}$`), 5_000);
  since = process.hrtime.bigint();
  await send(c1, VRRP, HOST1);
  await dropped('VRRP from the underlay client', since, (f) => f.src.ip === CLIENT1 && f.protocol === VRRP);
  since = process.hrtime.bigint();
  await send(c2, IGMP, HOST2);
  await dropped('IGMP from the other node, not listed', since, (f) => f.src.ip === CLIENT2 && f.protocol === IGMP);
  assert.equal(vrrp.count(new RegExp(`^got ${CLIENT1.replace(/\./g, '\\.')}$`)), 0, 'the dropped VRRP packet never reached the host');
  assert.equal(igmp.count(/^got /), 0, 'the dropped IGMP packet never reached the host');
  node.write('host.yaml', manifests({ igmp: true }));
  await until('IGMP from the other node reaches the host once listed', async () => {
    await send(c2, IGMP, HOST2);
    return igmp.count(/^got /) > 0 ? true : undefined;
  });

  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, c1, pod.ip, 8080), 'TIMEOUT', 'the pod\'s own policy drops the client');
  await dropped('the pod closed by its policy', since, (f) => f.dst.ip === pod.ip && f.dropReason === 'POLICY_DEFAULT_DENY');

  // The node's own pods to a host-network listener: judged by the host's ingress policy on the pods' veths.
  await until('the listed local pod reaches the host listener', async () => ((await connectFrom(sb, listed.ns, HOST1, LOCAL)) === `H ${LOCAL} ${listed.ip}` ? true : undefined));
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, unlisted.ns, HOST1, LOCAL), 'TIMEOUT', 'another local pod is not admitted');
  const localDrop = await dropped('the unlisted local pod', since, (f) => f.src.ip === unlisted.ip && f.dst.port === LOCAL);
  assert.deepEqual([localDrop[0]?.dropReason, localDrop[0]?.direction, localDrop[0]?.dstIdentity], ['POLICY_DEFAULT_DENY', 'ingress', 1]);
  assert.ok((localDrop[0]?.srcIdentity ?? 0) >= 256, `the local pod is judged by its own identity (${localDrop[0]?.srcIdentity})`);
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, listed.ns, HOST1, ALLOWED), 'TIMEOUT', 'the listed pod only on its port');
  await dropped('the listed local pod on another port', since, (f) => f.src.ip === listed.ip && f.dst.port === ALLOWED);
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, c3, HOST3, LOCAL), 'TIMEOUT', 'the pod of another node is not listed for this port');
  await dropped('the remote pod on the local pods\' port', since, (f) => f.src.ip === REMOTE_POD && f.dst.port === LOCAL);
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, c1, HOST1, LOCAL), 'TIMEOUT', 'the underlay is not listed for this port');
  await dropped('the underlay on the local pods\' port', since, (f) => f.src.ip === CLIENT1 && f.dst.port === LOCAL);

  // The host to its own pods: its egress policy (which has rules, so default deny) lists app=local-client only;
  // the pods' own ingress default deny lets the host in (allow-localhost).
  assert.match(await connectFromHost(listed.ip, POD_PORT), new RegExp(`^L ${POD_PORT} `), 'the host reaches the listed pod');
  since = process.hrtime.bigint();
  assert.equal(await connectFromHost(pod.ip, POD_PORT), 'TIMEOUT', 'the host\'s egress policy does not list this pod');
  const hostOut = await dropped('the host to an unlisted local pod', since, (f) => f.dst.ip === pod.ip && f.dst.port === POD_PORT);
  assert.deepEqual([hostOut[0]?.direction, hostOut[0]?.srcIdentity, hostOut[0]?.dropReason], ['egress', 1, 'POLICY_DEFAULT_DENY']);

  // policyAuditMode: the denied port connects, and the event says AUDIT with the reason; for the pod too.
  await node.stopAgent();
  node.config.policyAuditMode = true;
  const audited = await node.start();
  assert.equal(audited.agent.status().hostFirewall?.auditMode, true);
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, c1, HOST1, DENIED), `H ${DENIED} ${CLIENT1}`, 'audit mode drops nothing');
  const audit = await until('an audit event for the connection', () => {
    const hits = audited.agent.recentFlows().filter((f) => f.monotonicNs >= since && f.src.ip === CLIENT1 && f.dst.port === DENIED);
    return hits.length > 0 ? hits : undefined;
  }, 5_000);
  assert.deepEqual(audit.map((f) => [f.type, f.dropReason, f.dstIdentity]), [['audit', 'POLICY_DEFAULT_DENY', 1]], 'one audit event (the connection is tracked), no drop');
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, c1, pod.ip, 8080), `P 8080 ${CLIENT1}`, 'audit mode drops nothing for pods either');
  const podAudit = await until('the pod\'s audit event', () => {
    const hits = audited.agent.recentFlows().filter((f) => f.monotonicNs >= since && f.dst.ip === pod.ip && f.dst.port === 8080);
    return hits.some((f) => f.type === 'audit') ? hits : undefined;
  }, 5_000);
  assert.deepEqual(podAudit.filter((f) => f.type !== 'verdict').map((f) => [f.type, f.dropReason, f.direction]), [['audit', 'POLICY_DEFAULT_DENY', 'ingress']]);
  // Between the host and its local pods too: both directions pass, each reported once as AUDIT.
  const audits = async (what: string, from: bigint, pred: (f: FlowRecord) => boolean) =>
    until(what, () => {
      const hits = audited.agent.recentFlows().filter((f) => f.monotonicNs >= from && pred(f));
      return hits.some((f) => f.type === 'audit') ? hits.filter((f) => f.type !== 'verdict') : undefined;
    }, 5_000);
  since = process.hrtime.bigint();
  assert.equal(await connectFrom(sb, unlisted.ns, HOST1, LOCAL), `H ${LOCAL} ${unlisted.ip}`, 'audit mode lets the unlisted local pod in');
  const localAudit = await audits('the local pod\'s audit event', since, (f) => f.src.ip === unlisted.ip && f.dst.port === LOCAL);
  assert.deepEqual(localAudit.map((f) => [f.type, f.dropReason, f.direction, f.dstIdentity]), [['audit', 'POLICY_DEFAULT_DENY', 'ingress', 1]]);
  since = process.hrtime.bigint();
  assert.match(await connectFromHost(pod.ip, POD_PORT), new RegExp(`^P ${POD_PORT} `), 'audit mode lets the host reach the unlisted pod');
  const hostAudit = await audits('the host\'s egress audit event', since, (f) => f.dst.ip === pod.ip && f.dst.port === POD_PORT);
  assert.deepEqual(hostAudit.map((f) => [f.type, f.dropReason, f.direction, f.srcIdentity]), [['audit', 'POLICY_DEFAULT_DENY', 'egress', 1]]);

  // hostFirewall.enabled=false: nothing attached, nothing judged.
  await node.stopAgent();
  node.config['hostFirewall.enabled'] = false;
  const off = await node.start();
  assert.equal(off.agent.status().hostFirewall, null);
  assert.deepEqual(hostLinks(), []);
  assert.equal(await connectFrom(sb, c2, HOST2, ALLOWED), `H ${ALLOWED} ${CLIENT2}`);
  assert.equal(await connectFrom(sb, unlisted.ns, HOST1, LOCAL), `H ${LOCAL} ${unlisted.ip}`, 'nothing judges the local pods\' traffic to the host');
  assert.equal(off.agent.kernelPolicy('node:test-node'), undefined, 'the host endpoint left the datapath');
});

/** A raw-socket receiver in the host namespace for one protocol (killed by the sandbox's cleanup). */
async function startRaw(sb: Sandbox, proto: number) {
  const proc = spawn('python3', ['-u', '-c', RAW_RECV, String(proto), MARK]);
  const lines: string[] = [];
  let buf = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    lines.push(...parts);
  });
  sb.defer(async () => {
    proc.kill('SIGKILL');
  });
  const waitFor = (re: RegExp, ms = 5_000) => until(`raw receiver ${proto}: ${re}`, () => (lines.some((l) => re.test(l)) ? true : undefined), ms);
  // python's start, not the datapath: slow on a loaded machine
  await waitFor(/^ready$/, 30_000);
  return { waitFor, count: (re: RegExp) => lines.filter((l) => re.test(l)).length };
}
