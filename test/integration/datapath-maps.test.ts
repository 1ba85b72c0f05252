/**
 * The endpoint datapath's programs run with BPF_PROG_TEST_RUN against maps
 * written by the endpoint manager: policy semantics (ranges, wildcards, deny
 * beats allow, IPv6), conntrack across a policy change, and refusal of
 * updates that do not fit. The codecs themselves are checked against the
 * object's BTF by bpf-abi.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BPF_ANY, BpfMap, isBpfError, native, openObject } from '../../native/index.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { DatapathError } from '../../src/datapath/endpoint/errors.js';
import { IpcacheError } from '../../src/datapath/endpoint/ipcache.js';
import { Identity } from '../../src/datapath/abi.js';
import { PolicyKey, PolicyValue } from '../../src/datapath/maps.js';
import { buildFrame, TcAct } from '../../src/datapath/packet.js';
import { PinnedMapMismatchError } from '../../src/datapath/pinned-maps.js';
import { TunnelMap } from '../../src/datapath/routing/tunnel-map.js';
import type { EndpointPolicy, PolicyEntry } from '../../src/policy/types.js';
import { isMeshdError } from '../../src/util/errors.js';
import { pinnedMaps, tempPinDir } from '../helpers/bpffs.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const POD = '10.9.0.2';
const PEER = '10.9.0.3';
const OTHER = '10.9.0.4';

function e(p: Partial<PolicyEntry> & Pick<PolicyEntry, 'verdict'>): PolicyEntry {
  return { remoteIdentity: 0, protocol: 6, port: 0, endPort: 0, derivedFrom: ['t/p'], ...p };
}

function pol(egress: PolicyEntry[], revision: number, defaultDeny = true): EndpointPolicy {
  return { endpointId: 't/pod', identity: 500, ingress: { defaultDeny: false, entries: [] }, egress: { defaultDeny, entries: egress }, revision };
}

let sport = 30000;
function verdictOf(dp: EndpointManager, dst: string, dport: number, opts: { proto?: 6 | 17; src?: string; flags?: number; sport?: number } = {}): number {
  sport += 1;
  const frame = buildFrame({ src: opts.src ?? POD, dst, proto: opts.proto ?? 6, sport: opts.sport ?? sport, dport, tcpFlags: opts.flags ?? 0x02 });
  return native.progTestRun(dp.programFds().fromPod, frame).retval;
}

async function world(t: { after: (fn: () => void) => void }, maxEntries?: { meshd_policy?: number; meshd_ipcache?: number }) {
  const pins = tempPinDir('dpmaps');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const dp = await EndpointManager.open({ pinDir: pins.path, ...(maxEntries ? { maxEntries } : {}), proxyPort: () => 15001 });
  t.after(() => dp.close());
  // BPF_PROG_TEST_RUN runs the program as if on ifindex 1 (lo): register without attaching.
  await dp.addEndpoint({ endpointId: 't/pod', ifname: 'lo', identity: 500, attach: false });
  dp.syncIpcache([
    { prefix: `${POD}/32`, identity: 500 },
    { prefix: `${PEER}/32`, identity: 600 },
    { prefix: `${OTHER}/32`, identity: 700 },
    { prefix: 'fd00:9::/64', identity: 800 },
  ]);
  return dp;
}

test('policy lookup: exact port, range, any port, any protocol, wildcard identity, deny beats allow, IPv6', async (t) => {
  requirePrivileges();
  const dp = await world(t);
  dp.updatePolicy(
    pol(
      [
        e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 80 }),
        e({ verdict: 'ALLOW', remoteIdentity: 600, port: 9000, endPort: 9099 }),
        e({ verdict: 'ALLOW', remoteIdentity: 700, protocol: 17 }),
        e({ verdict: 'ALLOW', remoteIdentity: 0, port: 443, endPort: 443 }),
        e({ verdict: 'DENY', remoteIdentity: 0, port: 9050, endPort: 9050 }),
        e({ verdict: 'DENY', remoteIdentity: 700, protocol: 0 }),
        e({ verdict: 'ALLOW', remoteIdentity: 700, port: 22, endPort: 22 }),
        e({ verdict: 'ALLOW', remoteIdentity: 800, port: 80, endPort: 80 }),
      ],
      1,
    ),
  );
  assert.equal(verdictOf(dp, PEER, 80), TcAct.OK);
  assert.equal(verdictOf(dp, PEER, 81), TcAct.SHOT, 'default deny');
  assert.equal(verdictOf(dp, PEER, 9000), TcAct.OK, 'range start');
  assert.equal(verdictOf(dp, PEER, 9099), TcAct.OK, 'range end');
  assert.equal(verdictOf(dp, PEER, 9100), TcAct.SHOT, 'past the range');
  assert.equal(verdictOf(dp, PEER, 9050), TcAct.SHOT, 'a wildcard-identity deny inside an allowed range');
  assert.equal(verdictOf(dp, PEER, 443), TcAct.OK, 'wildcard identity');
  assert.equal(verdictOf(dp, PEER, 53, { proto: 17 }), TcAct.SHOT);
  assert.equal(verdictOf(dp, OTHER, 53, { proto: 17 }), TcAct.SHOT, 'deny of every protocol beats the UDP allow');
  assert.equal(verdictOf(dp, OTHER, 22), TcAct.SHOT, 'deny of every protocol beats a more specific allow');
  assert.equal(verdictOf(dp, OTHER, 443), TcAct.SHOT, 'identity deny beats the wildcard allow');
  assert.equal(verdictOf(dp, 'fd00:9::1', 80, { src: 'fd00:9::2' }), TcAct.OK, 'IPv6');
  assert.equal(verdictOf(dp, 'fd00:9::1', 81, { src: 'fd00:9::2' }), TcAct.SHOT, 'IPv6 default deny');
  assert.equal(verdictOf(dp, '192.0.2.1', 443), TcAct.OK, 'unknown address is world, allowed by the wildcard');
  assert.equal(verdictOf(dp, '192.0.2.1', 80), TcAct.SHOT);
  const m = dp.metrics();
  assert.deepEqual(
    m.drops.map((d) => `${d.direction} ${d.reason} ${d.packets}`).sort(),
    ['egress POLICY_DEFAULT_DENY 5', 'egress POLICY_DENY 4'],
  );
  assert.deepEqual(m.newConnections.egress, { allowed: 6n, redirected: 0n });
});

test('conntrack keeps an allowed connection through an unrelated change and cuts it when the change denies it', async (t) => {
  requirePrivileges();
  const dp = await world(t);
  dp.updatePolicy(pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 80 })], 1));
  assert.equal(verdictOf(dp, PEER, 80, { sport: 41000 }), TcAct.OK);
  const ct = dp.conntrack().find((c) => c.key.local_port === 41000);
  assert.ok(ct, 'the SYN created a conntrack entry');
  assert.equal(ct.entry.dir, 1, 'opened by the endpoint (egress)');
  // the reply finds the same entry: one lookup either way
  assert.equal(native.progTestRun(dp.programFds().toPod, buildFrame({ src: PEER, dst: POD, proto: 6, sport: 80, dport: 41000, tcpFlags: 0x12 })).retval, TcAct.OK);
  assert.equal(dp.conntrack().find((c) => c.key.local_port === 41000)?.entry.packets, 2n);
  assert.equal(dp.conntrack().length, 1);
  const gen0 = ct.entry.gen;
  // Allow moves from an exact port to a range: the connection is still allowed and keeps its entry.
  dp.updatePolicy(pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 90 })], 2));
  assert.equal(verdictOf(dp, PEER, 80, { sport: 41000, flags: 0x10 }), TcAct.OK);
  const ct2 = dp.conntrack().find((c) => c.key.local_port === 41000);
  assert.ok(ct2 && ct2.entry.gen !== gen0, 're-evaluated once under the new generation');
  assert.equal(ct2.entry.packets, 3n);
  // A reset (here from the peer) ends the connection and its entry; a new SYN starts over.
  assert.equal(verdictOf(dp, PEER, 80, { sport: 41002 }), TcAct.OK);
  assert.ok(dp.conntrack().some((c) => c.key.local_port === 41002));
  assert.equal(native.progTestRun(dp.programFds().toPod, buildFrame({ src: PEER, dst: POD, proto: 6, sport: 80, dport: 41002, tcpFlags: 0x04 })).retval, TcAct.OK);
  assert.ok(!dp.conntrack().some((c) => c.key.local_port === 41002), 'the reset removed the entry');
  // Default deny with nothing for port 80: established packets are dropped and the entry removed.
  dp.updatePolicy(pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 81, endPort: 81 })], 3));
  assert.equal(verdictOf(dp, PEER, 80, { sport: 41000, flags: 0x10 }), TcAct.SHOT);
  assert.equal(dp.conntrack().find((c) => c.key.local_port === 41000), undefined);
});

test('a policy that does not fit the map is refused whole, the previous policy stays in force and the condition is reported', async (t) => {
  requirePrivileges();
  const dp = await world(t, { meshd_policy: 16, meshd_ipcache: 8 });
  const small = pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 80 }), e({ verdict: 'ALLOW', remoteIdentity: 700, port: 22, endPort: 22 })], 1);
  dp.updatePolicy(small);
  const dump = () => [dp.mapFds().policy, dp.mapFds().policyExact].flatMap((fd) => native.mapDump(fd).map(([k, v]) => `${fd}:${k.toString('hex')}=${v.toString('hex')}`)).sort();
  const before = dump();
  // 1-1000 needs 13 range prefixes (meshd_policy, capacity 16) besides 1 and 1000 exact; two identities need 26.
  const big = pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 1, endPort: 1000 }), e({ verdict: 'ALLOW', remoteIdentity: 700, port: 1, endPort: 1000 })], 2);
  assert.throws(
    () => dp.updatePolicy(big),
    (err: unknown) =>
      err instanceof DatapathError && err.code === 'MESHD_POLICY_MAP_FULL' && err.detail.map === 'policy' && err.detail.capacity === 16 && err.cause === undefined,
  );
  assert.deepEqual(dump(), before, 'not a single entry written');
  assert.equal(verdictOf(dp, PEER, 80), TcAct.OK);
  assert.equal(verdictOf(dp, PEER, 81), TcAct.SHOT);
  assert.equal(dp.endpoint('t/pod')?.revision, 1);

  // A map filled behind the manager's back: the kernel refuses half-way and the manager rolls back.
  const stranger = PolicyKey.encode({ prefixlen: 96, ep_id: 999, identity: 1, egress: 1, proto: 6, dport: 0 });
  for (let i = 0; i < 16; i += 1) {
    stranger.writeUInt16BE(i + 1, 14);
    native.mapUpdate(dp.mapFds().policy, stranger, PolicyValue.encode({ verdict: 1, pad: 0, proxy_port: 0, rule_id: 0 }), BPF_ANY);
  }
  const withStranger = dump();
  assert.throws(
    () => dp.updatePolicy(pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 83 }), e({ verdict: 'ALLOW', remoteIdentity: 700, port: 22, endPort: 22 })], 3)),
    // refused by the kernel, not by the capacity check: the kernel's error is the cause
    (err: unknown) => err instanceof DatapathError && err.code === 'MESHD_POLICY_MAP_FULL' && isBpfError(err.cause),
  );
  assert.deepEqual(dump(), withStranger, 'rolled back to the exact previous content');
  assert.equal(verdictOf(dp, PEER, 80), TcAct.OK);
  assert.equal(verdictOf(dp, PEER, 81), TcAct.SHOT);

  // ipcache: one prefix (fd00:9::/64) in the trie of capacity 8; whole addresses go to the hash.
  assert.throws(
    () => dp.syncIpcache([...Array.from({ length: 9 }, (_, i) => ({ prefix: `10.10.${i}.0/24`, identity: 900 + i }))]),
    (err: unknown) => err instanceof IpcacheError && err.code === 'MESHD_IPCACHE_FULL',
  );
  assert.equal(dp.ipcacheEntries().length, 4);
  assert.equal(native.mapDump(dp.mapFds().ipcache).length, 1);
  assert.equal(native.mapDump(dp.mapFds().ipcacheHost).length, 3);
});

test('pins of another shape are refused before load with a coded error naming map and field; nothing is changed', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('dpshape');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const first = await EndpointManager.open({ pinDir: pins.path, maxEntries: { meshd_policy: 16 } });
  await first.addEndpoint({ endpointId: 't/kept', ifname: 'lo', identity: 500, attach: false });
  first.updatePolicy({ ...pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 85 })], 1), endpointId: 't/kept' });
  first.close();
  const before = pinnedMaps(pins.path, 'meshd_');
  await assert.rejects(EndpointManager.open({ pinDir: pins.path }), (err: unknown) => {
    assert.ok(isMeshdError(err, 'MESHD_DATAPATH_PINNED_MAP_MISMATCH') && err instanceof PinnedMapMismatchError, String(err));
    assert.equal(err.kind, 'conflict');
    assert.deepEqual([err.mismatch.map, err.mismatch.field, err.mismatch.pinned], ['meshd_policy', 'maxEntries', 16]);
    assert.notEqual(err.mismatch.expected, 16);
    return true;
  });
  assert.deepEqual(pinnedMaps(pins.path, 'meshd_'), before, 'the same maps, none created or replaced, as many entries');
  const again = await EndpointManager.open({ pinDir: pins.path, maxEntries: { meshd_policy: 16 } });
  t.after(() => again.close());
  await again.addEndpoint({ endpointId: 't/kept', ifname: 'lo', identity: 500, attach: false });
  assert.equal(again.updatePolicy({ ...pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 85 })], 2), endpointId: 't/kept' }).changed, false);
});

test('a counters-only pin of another shape (an upgrade added a counter) is replaced; every stateful pin is kept', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('dpmetrics');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const first = await EndpointManager.open({ pinDir: pins.path });
  await first.addEndpoint({ endpointId: 't/kept', ifname: 'lo', identity: 500, attach: false });
  first.updatePolicy({ ...pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 85 })], 1), endpointId: 't/kept' });
  first.close();
  // An older build's counters pin: fewer slots in meshd_metrics (the object loaded over the other, matching pins).
  unlinkSync(join(pins.path, 'meshd_metrics'));
  const older = openObject(bpfObjectPath('lxc'), { pinRoot: pins.path });
  older.setMaxEntries('meshd_metrics', 8);
  await older.load();
  older.close();
  const policyBefore = pinnedMaps(pins.path, 'meshd_pol');
  const metricsPin = join(pins.path, 'meshd_metrics');
  const oldMetrics = BpfMap.fromPin(metricsPin);
  assert.equal(oldMetrics.info.maxEntries, 8);
  oldMetrics.close();
  const now = await EndpointManager.open({ pinDir: pins.path });
  t.after(() => now.close());
  const m = BpfMap.fromPin(metricsPin);
  t.after(() => m.close());
  assert.notEqual(m.info.maxEntries, 8, 'the counters pin now has the shape this build declares');
  assert.deepEqual(pinnedMaps(pins.path, 'meshd_pol'), policyBefore, 'policy pins kept as they were');
  await now.addEndpoint({ endpointId: 't/kept', ifname: 'lo', identity: 500, attach: false });
  assert.equal(now.updatePolicy({ ...pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 85 })], 2), endpointId: 't/kept' }).changed, false, 'the endpoint\'s policy is still in the kernel');
});

test('a datapath config the program would misread is refused with a code; the previous config stays', async (t) => {
  requirePrivileges();
  const dp = await world(t);
  const before = dp.getConfig();
  for (const bad of [{ proxyMark: 0x1b00 }, { proxyIpv4: '10.0.0.256' }, { verdictSample: -1 }]) {
    assert.throws(() => dp.setConfig(bad), (err: unknown) => isMeshdError(err, 'MESHD_DATAPATH_CONFIG_INVALID') && err.kind === 'invalid', JSON.stringify(bad));
  }
  assert.deepEqual(dp.getConfig(), before);
  dp.close();
  assert.throws(() => dp.setConfig({ verdictSample: 1 }), (err: unknown) => isMeshdError(err, 'MESHD_DATAPATH_CLOSED'));
});

test('the tunnel step runs only with the tunnel flag: without it a destination in meshd_tunnel is not encapsulated', async (t) => {
  requirePrivileges();
  const dp = await world(t);
  dp.updatePolicy(pol([e({ verdict: 'ALLOW', remoteIdentity: 0, port: 80, endPort: 80 })], 1));
  const tunnel = TunnelMap.open(dp.pinDir);
  t.after(() => tunnel.close());
  // PEER's /24 belongs to another node, reached through interface 1
  tunnel.sync([{ cidr: '10.9.0.0/24', endpoint: '192.168.50.12' }], 1);
  assert.equal(dp.getConfig().tunnel, false);
  assert.equal(verdictOf(dp, PEER, 80), TcAct.OK, 'native mode: the allowed packet takes the stack, the map is not consulted');
  dp.setConfig({ tunnel: true });
  assert.equal(verdictOf(dp, PEER, 80), TcAct.REDIRECT, 'tunnel mode: encapsulated and redirected to the tunnel device');
  assert.equal(verdictOf(dp, '10.8.0.1', 80), TcAct.OK, 'tunnel mode: a destination outside every pod CIDR of another node stays');
  assert.equal(verdictOf(dp, PEER, 81), TcAct.SHOT, 'a denied packet never reaches the tunnel step');
  dp.setConfig({ tunnel: false });
  assert.equal(verdictOf(dp, PEER, 80), TcAct.OK);
});

test('the host step runs only with the host firewall flag: with the host endpoint\'s row present but the flag off, the pod\'s veth does not judge host traffic', async (t) => {
  requirePrivileges();
  const HOST = '10.9.0.1';
  const sb = new Sandbox('dphf');
  t.after(() => sb.cleanup());
  const veth = await sb.hostLink('p');
  const pins = tempPinDir('dphostfw');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const dp = await EndpointManager.open({ pinDir: pins.path, proxyPort: () => 15001 });
  t.after(() => dp.close());
  // The pod on an interface of its own (ifindex 1, lo, is the host endpoint's key), the host endpoint as the agent registers it.
  await dp.addEndpoint({ endpointId: 't/pod', ifname: veth, identity: 500, attach: false });
  await dp.addEndpoint({ endpointId: 'node:test', ifname: 'lo', identity: Identity.HOST, attach: false });
  dp.syncIpcache([
    { prefix: `${HOST}/32`, identity: Identity.HOST },
    { prefix: `${POD}/32`, identity: 500 },
    { prefix: `${PEER}/32`, identity: 600 },
  ]);
  dp.updatePolicy(pol([e({ verdict: 'ALLOW', remoteIdentity: 0 })], 1, false));
  dp.updatePolicy({
    endpointId: 'node:test',
    identity: Identity.HOST,
    ingress: { defaultDeny: true, entries: [e({ verdict: 'ALLOW', remoteIdentity: 500, port: 22, endPort: 22, derivedFrom: ['host-fw'] })] },
    egress: { defaultDeny: true, entries: [e({ verdict: 'ALLOW', remoteIdentity: 500, port: 8080, endPort: 8080, derivedFrom: ['host-fw'] })] },
    revision: 1,
  });
  const ifindex = native.ifNameToIndex(veth);
  const run = (prog: 'fromPod' | 'toPod', src: string, dst: string, sp: number, dp_: number, flags = 0x02) =>
    native.progTestRun(dp.programFds()[prog], buildFrame({ src, dst, proto: 6, sport: sp, dport: dp_, tcpFlags: flags }), { ifindex }).retval;
  const hostDrops = () => dp.metrics().drops.reduce((n, d) => n + d.packets, 0n);

  assert.equal(dp.getConfig().hostFirewall, false);
  assert.equal(run('fromPod', POD, HOST, 41000, 23), TcAct.OK, 'flag off: pod to host, a port the host policy does not admit, passes');
  assert.equal(run('toPod', HOST, POD, 41001, 9090), TcAct.OK, 'flag off: host to pod, a port the host policy does not admit, passes');
  assert.equal(hostDrops(), 0n);

  dp.setConfig({ hostFirewall: true });
  assert.equal(dp.getConfig().hostFirewall, true);
  assert.equal(run('fromPod', POD, HOST, 41002, 23), TcAct.SHOT, 'flag on: host ingress default deny');
  assert.equal(run('fromPod', POD, HOST, 41003, 22), TcAct.OK, 'flag on: the admitted port');
  assert.equal(run('toPod', HOST, POD, 22, 41003, 0x12), TcAct.OK, 'the reply of the admitted connection, through the host\'s conntrack');
  assert.equal(run('fromPod', POD, HOST, 41003, 22, 0x10), TcAct.OK, 'and its later packets');
  assert.equal(run('toPod', HOST, POD, 41004, 9090), TcAct.SHOT, 'flag on: host egress default deny');
  assert.equal(run('toPod', HOST, POD, 41005, 8080), TcAct.OK, 'flag on: the admitted port');
  assert.equal(run('fromPod', POD, PEER, 41006, 23), TcAct.OK, 'not the host\'s traffic: the pod\'s own policy only');
  assert.equal(run('fromPod', POD, '224.0.0.18', 41007, 23), TcAct.SHOT, 'multicast reaching the host is the host\'s');
  assert.deepEqual(dp.metrics().drops.map((d) => `${d.direction} ${d.reason} ${d.packets}`).sort(), ['egress POLICY_DEFAULT_DENY 1', 'ingress POLICY_DEFAULT_DENY 2']);
  const host = dp.endpoint('node:test');
  assert.ok(dp.conntrack().some((c) => c.key.ep_id === host?.epId && c.key.local_port === 22), 'host connections are tracked under the host\'s ep_id');

  dp.setConfig({ hostFirewall: false });
  assert.equal(run('fromPod', POD, HOST, 41008, 23), TcAct.OK, 'flag off again: not judged');
  assert.equal(run('toPod', HOST, POD, 41009, 9090), TcAct.OK);
});

test('verdict events for new connections: none, all, or one in N', async (t) => {
  requirePrivileges();
  const dp = await world(t);
  dp.updatePolicy(pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 80 })], 1));
  const got: string[] = [];
  const stream = dp.onFlowEvents((rs) => got.push(...rs.map((r) => r.type)));
  t.after(() => stream.close());
  const burst = async (n: number) => {
    got.length = 0;
    for (let i = 0; i < n; i += 1) assert.equal(verdictOf(dp, PEER, 80), TcAct.OK);
    await new Promise((r) => setTimeout(r, 300));
    return got.filter((x) => x === 'verdict').length;
  };
  dp.setConfig({ verdictSample: 0 });
  assert.equal(await burst(200), 0);
  dp.setConfig({ verdictSample: 1 });
  assert.equal(await burst(200), 200);
  dp.setConfig({ verdictSample: 4 });
  const sampled = await burst(800);
  assert.ok(sampled > 120 && sampled < 280, `about one in four of 800: ${sampled}`);
  // established packets never produce verdict events
  dp.setConfig({ verdictSample: 1 });
  assert.equal(verdictOf(dp, PEER, 80, { sport: 50000 }), TcAct.OK);
  await new Promise((r) => setTimeout(r, 300)); // the SYN's own event arrives asynchronously
  got.length = 0;
  for (let i = 0; i < 50; i += 1) verdictOf(dp, PEER, 80, { sport: 50000, flags: 0x10 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(got.length, 0);
});

test('after a restart, endpoints that did not come back are pruned from the pins; ipcache upserts and deletes keep the rest', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('dpprune');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const first = await EndpointManager.open({ pinDir: pins.path });
  await first.addEndpoint({ endpointId: 't/gone', ifname: 'lo', identity: 500, attach: false, ips: ['10.9.0.2'] });
  first.updatePolicy({ ...pol([e({ verdict: 'ALLOW', remoteIdentity: 600, port: 80, endPort: 85 })], 1), endpointId: 't/gone' });
  first.syncIpcache([{ prefix: `${PEER}/32`, identity: 600 }]);
  assert.equal(verdictOf(first, PEER, 80), TcAct.OK);
  first.close();

  const dp = await EndpointManager.open({ pinDir: pins.path });
  t.after(() => dp.close());
  assert.deepEqual(dp.pruneUnclaimed(), { endpoints: 1, policyEntries: 2 });
  const total = (fd: number) => native.mapDump(fd).length;
  const f = dp.mapFds();
  assert.deepEqual([total(f.endpoints), total(f.policy), total(f.policyExact), total(f.epIps), total(f.ct)], [0, 0, 0, 0, 0]);

  dp.upsertIpcache([{ prefix: '10.20.0.0/16', identity: 901 }]);
  dp.upsertIpcache([{ prefix: `${PEER}/32`, identity: 601 }]);
  assert.deepEqual(
    dp.ipcacheEntries().sort((a, b) => a.prefix.localeCompare(b.prefix)),
    [
      { prefix: '10.20.0.0/16', identity: 901 },
      { prefix: `${PEER}/32`, identity: 601 },
    ],
  );
  dp.deleteIpcache(['10.20.0.0/16', '10.99.0.0/16']);
  assert.deepEqual(dp.ipcacheEntries(), [{ prefix: `${PEER}/32`, identity: 601 }]);

  // The same list synced again is not diffed (nothing changed)…
  const desired = [{ prefix: `${PEER}/32`, identity: 602 }];
  assert.deepEqual(dp.syncIpcache(desired), { puts: 1, deletes: 0, size: 1 });
  assert.deepEqual(dp.syncIpcache(desired), { puts: 0, deletes: 0, size: 1 });
  // …unless something else wrote the ipcache in between: then the same list puts it back.
  dp.upsertIpcache([{ prefix: '10.21.0.0/16', identity: 903 }]);
  assert.deepEqual(dp.syncIpcache(desired), { puts: 0, deletes: 1, size: 1 });
  assert.deepEqual(dp.ipcacheEntries(), [{ prefix: `${PEER}/32`, identity: 602 }]);
});
