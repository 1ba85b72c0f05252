/**
 * The endpoint datapath on real veths: two namespace "pods" (A, B) and a
 * namespace standing for the internet, wired to the host, the tc programs
 * attached by the endpoint manager, policy written from EndpointPolicy values.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import type { FlowRecord } from '../../src/datapath/endpoint/flow-events.js';
import { proxyUpstreamMark } from '../../src/datapath/maps.js';
import type { EndpointPolicy, PolicyEntry } from '../../src/policy/types.js';
import { run } from '../../src/util/exec.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { connectFrom, connectFromHost, pingFrom, startPeer } from '../helpers/datapath-peer.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const ID_A = 1001;
const ID_B = 1002;
const ID_CIDR = (1 << 24) | 1;
const PROXY_PORT = 20000 + (process.pid % 10000);

function allow(remoteIdentity: number, port: number, endPort = port, protocol: 6 | 17 = 6): PolicyEntry {
  return { remoteIdentity, protocol, port, endPort, verdict: 'ALLOW', derivedFrom: ['test/allow'] };
}

function pol(endpointId: string, identity: number, p: { ingress?: PolicyEntry[]; egress?: PolicyEntry[] }, revision: number): EndpointPolicy {
  return {
    endpointId,
    identity,
    ingress: { defaultDeny: p.ingress !== undefined, entries: p.ingress ?? [] },
    egress: { defaultDeny: p.egress !== undefined, entries: p.egress ?? [] },
    revision,
  };
}

async function waitEvent(events: FlowRecord[], pred: (e: FlowRecord) => boolean, ms = 3000): Promise<FlowRecord> {
  const end = Date.now() + ms;
  for (;;) {
    const hit = events.find(pred);
    if (hit) return hit;
    if (Date.now() > end) throw new Error(`no matching flow event; have ${JSON.stringify(events.map((e) => `${e.type}:${e.dropReason ?? ''}:${e.direction}:${e.src.ip}->${e.dst.ip}:${e.dst.port}`))}`);
    await sleep(50);
  }
}

function recent(events: FlowRecord[]): string {
  return events
    .slice(-8)
    .map((e) => `${e.type}:${e.dropReason ?? e.verdict ?? ''}:${e.direction}:${e.src.ip}:${e.src.port}->${e.dst.ip}:${e.dst.port}`)
    .join(' | ');
}

test('endpoint datapath on veths: L3/L4 both directions, replies, deny beats allow, CIDR identity, policy change, L7 redirect, drop events, restart', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('dp');
  t.after(() => sb.cleanup());
  const pins = tempPinDir('dp');
  t.after(() => EndpointManager.destroyPins(pins.path));

  // Unique addressing and routing ids for this run.
  const k = 100 + (process.pid % 150);
  const net = (n: number) => `10.${k}.77.${n}`;
  const inetIp = `198.18.${k % 250}.1`;
  const table = 30000 + (process.pid % 20000);
  const prio = 9000 + (process.pid % 1000);

  const nsA = await sb.netns('a');
  const nsB = await sb.netns('b');
  const nsI = await sb.netns('i');
  const hA = sb.name('ha');
  const hB = sb.name('hb');
  const hI = sb.name('hi');
  await sb.vethToHost(nsA, { hostIf: hA, podIf: 'eth0', hostIp: `${net(1)}/30`, podIp: `${net(2)}/30`, defaultRoute: true });
  await sb.vethToHost(nsB, { hostIf: hB, podIf: 'eth0', hostIp: `${net(5)}/30`, podIp: `${net(6)}/30`, defaultRoute: true });
  await sb.vethToHost(nsI, { hostIf: hI, podIf: 'eth0', hostIp: `${net(9)}/30`, podIp: `${net(10)}/30`, defaultRoute: true });
  await run('ip', ['-n', nsI, 'addr', 'add', `${inetIp}/32`, 'dev', 'lo']);
  await run('ip', ['route', 'add', `${inetIp}/32`, 'via', net(10), 'dev', hI]);
  sb.defer(() => run('ip', ['route', 'del', `${inetIp}/32`]));
  for (const i of [hA, hB, hI]) await run('sysctl', ['-qw', `net.ipv4.conf.${i}.forwarding=1`]);
  // Delivery to the proxy's transparent listener (see docs/datapath.md).
  await run('ip', ['rule', 'add', 'fwmark', '0xb00/0xf00', 'lookup', String(table), 'priority', String(prio)]);
  sb.defer(() => run('ip', ['rule', 'del', 'fwmark', '0xb00/0xf00', 'lookup', String(table), 'priority', String(prio)]));
  await run('ip', ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(table)]);
  sb.defer(() => run('ip', ['route', 'flush', 'table', String(table)]));

  await startPeer(sb, nsB, ['serve', 'B', '80', '81', '82']);
  const srvA = await startPeer(sb, nsA, ['serve', 'A', '80']);
  await startPeer(sb, nsI, ['serve', 'INET', '80', '81']);

  const proxyPort = PROXY_PORT;
  let dp = await EndpointManager.open({ pinDir: pins.path, config: { verdictSample: 1 }, proxyPort: () => proxyPort });
  t.after(() => dp.close());
  const events: FlowRecord[] = [];
  let stream = dp.onFlowEvents((r) => events.push(...r));
  t.after(() => stream.close());
  // A timeout leaves the recent flow events in the report, to tell a policy drop from a lost packet.
  const connect = async (ns: string, ip: string, port: number, opts?: { udp?: boolean }) => {
    const r = await connectFrom(sb, ns, ip, port, opts);
    if (r === 'TIMEOUT') t.diagnostic(`${ns} -> ${ip}:${port} timed out; recent events: ${recent(events)}`);
    return r;
  };
  await dp.addEndpoint({ endpointId: 'test/a', ifname: hA, identity: ID_A, ips: [net(2)] });
  await dp.addEndpoint({ endpointId: 'test/b', ifname: hB, identity: ID_B, ips: [net(6)] });
  dp.syncIpcache([
    { prefix: `${net(2)}/32`, identity: ID_A },
    { prefix: `${net(6)}/32`, identity: ID_B },
    { prefix: `198.18.${k % 250}.0/24`, identity: ID_CIDR },
    ...[1, 5, 9].map((n) => ({ prefix: `${net(n)}/32`, identity: 1 })),
  ]);

  await t.test('no policy: traffic flows and new connections are reported as verdicts', async () => {
    assert.equal(await connect(nsA, net(6), 80), `B 80 ${net(2)}`);
    await waitEvent(events, (e) => e.type === 'verdict' && e.verdict === 'ALLOW' && e.srcIdentity === ID_A && e.dstIdentity === ID_B && e.dst.port === 80);
  });

  await t.test('L3/L4 allow and default deny in both directions, replies pass, CIDR identity', async () => {
    dp.updatePolicy(pol('test/a', ID_A, { egress: [allow(ID_B, 80, 81), allow(ID_CIDR, 80)] }, 1));
    dp.updatePolicy(pol('test/b', ID_B, { ingress: [allow(ID_A, 80)] }, 1));
    events.length = 0;
    assert.equal(await connect(nsA, net(6), 80), `B 80 ${net(2)}`, 'allowed both sides');
    assert.equal(await connect(nsA, net(6), 81), 'TIMEOUT', "B's ingress has no rule for 81");
    const inDrop = await waitEvent(events, (e) => e.type === 'drop' && e.dst.port === 81);
    assert.deepEqual(
      [inDrop.dropReason, inDrop.direction, inDrop.srcIdentity, inDrop.dstIdentity, inDrop.src.ip, inDrop.dst.ip, inDrop.protocol],
      ['POLICY_DEFAULT_DENY', 'ingress', ID_A, ID_B, net(2), net(6), 6],
    );
    assert.equal(await connect(nsA, net(6), 82), 'TIMEOUT', "A's egress allows 80-81 only");
    const egDrop = await waitEvent(events, (e) => e.type === 'drop' && e.dst.port === 82);
    assert.deepEqual([egDrop.dropReason, egDrop.direction, egDrop.srcIdentity, egDrop.dstIdentity], ['POLICY_DEFAULT_DENY', 'egress', ID_A, ID_B]);
    // B -> A: B's egress and A's ingress have no policy; the reply crosses A's default-deny egress through conntrack.
    assert.equal(await connect(nsB, net(2), 80), `A 80 ${net(6)}`);
    // CIDR identity for an address outside the cluster.
    assert.equal(await connect(nsA, inetIp, 80), `INET 80 ${net(2)}`);
    assert.equal(await connect(nsA, inetIp, 81), 'TIMEOUT');
    const cidrDrop = await waitEvent(events, (e) => e.type === 'drop' && e.dst.ip === inetIp);
    assert.equal(cidrDrop.dstIdentity, ID_CIDR);
  });

  await t.test('deny beats allow; established connections keep their verdict unless the change denies them', async () => {
    const held = await startPeer(sb, nsA, ['hold', net(6), '80', '1.5']);
    await held.waitFor(/^B 80 /);
    // An unrelated change (allow 81 on B, deny 81 from anyone on A): the held connection survives.
    dp.updatePolicy(pol('test/b', ID_B, { ingress: [allow(ID_A, 80), allow(ID_A, 81)] }, 2));
    dp.updatePolicy(
      pol('test/a', ID_A, { egress: [allow(ID_B, 80, 81), allow(ID_CIDR, 80), { remoteIdentity: 0, protocol: 6, port: 81, endPort: 81, verdict: 'DENY', derivedFrom: ['test/deny'] }] }, 2),
    );
    events.length = 0;
    assert.equal(await connect(nsA, net(6), 81), 'TIMEOUT', 'deny beats the allow of 80-81');
    const d = await waitEvent(events, (e) => e.type === 'drop' && e.dst.port === 81);
    assert.deepEqual([d.dropReason, d.direction], ['POLICY_DENY', 'egress']);
    held.send('still-there');
    await held.waitFor(/^still-there$/);
    // Now deny 80: the established connection is cut at its next packet.
    dp.updatePolicy(pol('test/a', ID_A, { egress: [allow(ID_CIDR, 80), { remoteIdentity: ID_B, protocol: 6, port: 80, endPort: 80, verdict: 'DENY', derivedFrom: ['test/deny'] }] }, 3));
    held.send('after-deny');
    await held.waitFor(/^TIMEOUT$/, 6000);
    const r = await waitEvent(events, (e) => e.type === 'drop' && e.dropReason === 'POLICY_REVOKED');
    assert.equal(r.dst.port, 80);
    await held.kill();
  });

  await t.test('L7 port is redirected to a transparent listener that sees the original destination; another port is not', async () => {
    const mark = proxyUpstreamMark(ID_A);
    const proxy = await startPeer(sb, null, ['tproxy', String(proxyPort), `0x${mark.toString(16)}`]);
    const srvB = await startPeer(sb, nsB, ['serve', 'B2', '8080', '8081']);
    dp.updatePolicy(
      pol(
        'test/a',
        ID_A,
        { egress: [{ remoteIdentity: ID_B, protocol: 6, port: 8080, endPort: 8080, verdict: 'REDIRECT', l7: { kind: 'http', rules: [{ path: '/' }] }, derivedFrom: ['test/l7'] }, allow(ID_B, 8081)] },
        4,
      ),
    );
    // B admits only A: the proxy's upstream (from the host's address) passes because its mark carries A's identity.
    dp.updatePolicy(pol('test/b', ID_B, { ingress: [allow(ID_A, 8080), allow(ID_A, 8081)] }, 3));
    events.length = 0;
    assert.equal(await connect(nsA, net(6), 8080), `via-proxy B2 8080 ${net(5)}`);
    const acc = await proxy.waitFor(/^accept /);
    assert.match(acc, new RegExp(`^accept ${net(2).replaceAll('.', '\\.')}:\\d+ ${net(6).replaceAll('.', '\\.')}:8080$`), 'the proxy sees the original destination');
    assert.equal(await connect(nsA, net(6), 8081), `B2 8081 ${net(2)}`, 'the port without L7 rules goes straight');
    assert.equal(proxy.count(/^accept /), 1, 'one connection through the proxy');
    assert.equal(srvB.count(/^accept 8080 /), 1);
    assert.equal(srvB.count(new RegExp(`^accept 8081 ${net(2).replaceAll('.', '\\.')}$`)), 1);
    const redir = await waitEvent(events, (e) => e.type === 'redirect');
    assert.deepEqual([redir.proxyPort, redir.dst.port, redir.srcIdentity, redir.dstIdentity], [proxyPort, 8080, ID_A, ID_B]);
    // Without the mark the host is just the host, which B does not admit.
    assert.equal(await connectFromHost(net(6), 8080), 'TIMEOUT');
    // Fail closed: no listener on the proxy port, the L7 flow is dropped with its own reason.
    await proxy.kill();
    assert.equal(await connect(nsA, net(6), 8080), 'TIMEOUT');
    await waitEvent(events, (e) => e.type === 'drop' && e.dropReason === 'PROXY_UNAVAILABLE' && e.dst.port === 8080);
    assert.equal(srvB.count(/^accept 8080 /), 1, 'nothing reached B on the L7 port without the proxy');
  });

  await t.test('a UDP (DNS-like) flow with L7 rules is redirected to a UDP proxy socket that learns the original destination and answers as it', async () => {
    const uproxy = await startPeer(sb, null, ['utproxy', String(proxyPort)]);
    const dns = await startPeer(sb, nsB, ['userve', 'DNS', '5353']);
    dp.updatePolicy(
      pol(
        'test/a',
        ID_A,
        { egress: [{ remoteIdentity: ID_B, protocol: 17, port: 5353, endPort: 5353, verdict: 'REDIRECT', l7: { kind: 'dns', rules: [{ matchPattern: '*' }] }, derivedFrom: ['test/dns'] }, allow(ID_B, 5354, 5354, 17)] },
        9,
      ),
    );
    assert.equal(await connect(nsA, net(6), 5353, { udp: true }), `uproxy ${net(6)}:5353`, 'answered by the proxy, from the original destination');
    await uproxy.waitFor(new RegExp(`^accept ${net(2).replaceAll('.', '\\.')}:\\d+ ${net(6).replaceAll('.', '\\.')}:5353$`));
    assert.equal(dns.count(/./), 1, 'the DNS server saw nothing but its ready line');
    await uproxy.kill();
    assert.equal(await connect(nsA, net(6), 5353, { udp: true }), 'TIMEOUT', 'no proxy: fail closed');
  });

  await t.test("a local destination's ingress L7 port is served at the source's hook; from outside the node it fails closed", async () => {
    const proxy = await startPeer(sb, null, ['tproxy', String(proxyPort), `0x${proxyUpstreamMark(ID_A).toString(16)}`]);
    const srvB = await startPeer(sb, nsB, ['serve', 'B3', '9080', '9081']);
    dp.updatePolicy(pol('test/a', ID_A, {}, 10));
    dp.updatePolicy(
      pol(
        'test/b',
        ID_B,
        { ingress: [{ remoteIdentity: 0, protocol: 6, port: 9080, endPort: 9080, verdict: 'REDIRECT', l7: { kind: 'http', rules: [{ method: 'GET' }] }, derivedFrom: ['test/l7in'] }, allow(ID_A, 9081)] },
        10,
      ),
    );
    events.length = 0;
    assert.equal(await connect(nsA, net(6), 9080), `via-proxy B3 9080 ${net(5)}`);
    await proxy.waitFor(new RegExp(`^accept ${net(2).replaceAll('.', '\\.')}:\\d+ ${net(6).replaceAll('.', '\\.')}:9080$`));
    assert.equal(await connect(nsA, net(6), 9081), `B3 9081 ${net(2)}`);
    assert.equal(proxy.count(/^accept /), 1);
    assert.equal(srvB.count(/^accept 9080 /), 1, 'only the proxy reached the L7 port');
    // From the internet namespace the flow meets the REDIRECT only at B's tc egress: dropped, its own reason.
    assert.equal(await connect(nsI, net(6), 9080), 'TIMEOUT');
    const d = await waitEvent(events, (e) => e.type === 'drop' && e.dropReason === 'PROXY_UNREACHABLE_HOOK');
    assert.deepEqual([d.direction, d.src.ip, d.dst.port], ['ingress', net(10), 9080]);
    await proxy.kill();
  });

  await t.test('policy rewrites between equivalent forms never open a window for an allowed flow', async () => {
    dp.updatePolicy(pol('test/b', ID_B, { ingress: [allow(ID_A, 80)] }, 20));
    // 80-81 is one trie prefix; 80 and 81 are two hash entries: every switch removes one form and adds the other.
    const asRange = (r: number) => pol('test/a', ID_A, { egress: [allow(ID_B, 80, 81), allow(ID_CIDR, 1000 + (r % 7))] }, r);
    const asPorts = (r: number) => pol('test/a', ID_A, { egress: [allow(ID_B, 80), allow(ID_B, 81), allow(ID_CIDR, 2000 + (r % 5))] }, r);
    dp.updatePolicy(asRange(100));
    const loop = await startPeer(sb, nsA, ['loop', net(6), '80', '3']);
    let writes = 0;
    const end = Date.now() + 2500;
    for (let r = 101; Date.now() < end; r += 1) {
      const res = dp.updatePolicy(r % 2 ? asPorts(r) : asRange(r));
      writes += res.puts + res.deletes;
      await sleep(2);
    }
    const line = await loop.waitFor(/^ok \d+ fail \d+$/, 10_000);
    const [, ok, fail] = /^ok (\d+) fail (\d+)$/.exec(line) ?? [];
    assert.ok(Number(ok) > 20, `connections made during the rewrites: ${line}`);
    assert.equal(Number(fail), 0, `${line} after ${writes} map writes; recent events: ${recent(events)}`);
  });

  await t.test('ICMP: a rule for a type allows that type (an echo request by its type, not its identifier) and its replies; another type is dropped', async () => {
    const icmp = (type: number): PolicyEntry => ({ remoteIdentity: ID_A, protocol: 1, port: type, endPort: type, verdict: 'ALLOW', derivedFrom: ['test/icmp'] });
    const ping = () => pingFrom(sb, nsA, net(6));
    dp.updatePolicy(pol('test/a', ID_A, {}, 30));
    dp.updatePolicy(pol('test/b', ID_B, { ingress: [icmp(8)] }, 30));
    events.length = 0;
    assert.equal(await ping(), 'reply 0', 'echo request (type 8) allowed, the reply passes through conntrack');
    await waitEvent(events, (e) => e.type === 'verdict' && e.protocol === 1 && e.icmpType === 8 && e.direction === 'ingress' && e.srcIdentity === ID_A);
    dp.updatePolicy(pol('test/b', ID_B, { ingress: [icmp(13)] }, 31));
    events.length = 0;
    assert.equal(await ping(), 'TIMEOUT', 'only timestamp requests (13) allowed now');
    const drop = await waitEvent(events, (e) => e.type === 'drop' && e.protocol === 1);
    assert.deepEqual([drop.dropReason, drop.direction, drop.icmpType, drop.srcIdentity], ['POLICY_DEFAULT_DENY', 'ingress', 8, ID_A]);
  });

  await t.test('restart: pins keep enforcing while the agent is away, and the new manager adopts them without rewriting', async () => {
    dp.updatePolicy(pol('test/a', ID_A, { egress: [allow(ID_B, 80)] }, 5));
    dp.updatePolicy(pol('test/b', ID_B, { ingress: [allow(ID_A, 80)] }, 4));
    stream.close();
    dp.close();
    assert.equal(await connect(nsA, net(6), 80), `B 80 ${net(2)}`);
    assert.equal(await connect(nsA, net(6), 81), 'TIMEOUT');
    dp = await EndpointManager.open({ pinDir: pins.path, proxyPort: () => proxyPort });
    stream = dp.onFlowEvents((r) => events.push(...r));
    const a = await dp.addEndpoint({ endpointId: 'test/a', ifname: hA, identity: ID_A, ips: [net(2)] });
    await dp.addEndpoint({ endpointId: 'test/b', ifname: hB, identity: ID_B, ips: [net(6)] });
    assert.equal(a.entries.size, 1, 'policy entries read back from the pinned map');
    assert.equal(dp.ipcacheEntries().length, 6, 'ipcache read back');
    const same = dp.updatePolicy(pol('test/a', ID_A, { egress: [allow(ID_B, 80)] }, 5));
    assert.deepEqual([same.changed, same.puts, same.deletes], [false, 0, 0]);
    assert.equal(await connect(nsA, net(6), 80), `B 80 ${net(2)}`);
    assert.equal(await connect(nsA, net(6), 81), 'TIMEOUT');
    assert.equal(srvA.count(/^accept/), 1);
  });
});
