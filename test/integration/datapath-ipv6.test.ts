/**
 * The endpoint datapath with IPv6 on real veths: identities from /128
 * ipcache entries, L3/L4 default deny with replies through conntrack,
 * neighbour discovery unaffected, drop events with IPv6 addresses, and an
 * L7 port redirected to an IPv6 transparent listener.
 * Forwarding is enabled per veth (force_forwarding), never globally.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import type { FlowRecord } from '../../src/datapath/endpoint/flow-events.js';
import type { EndpointPolicy } from '../../src/policy/types.js';
import { run } from '../../src/util/exec.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { connectFrom, startPeer } from '../helpers/datapath-peer.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const ID_A = 3001;
const ID_B = 3002;
const proxyPort = 20000 + (process.pid % 10000);

function only(endpointId: string, identity: number, dir: 'ingress' | 'egress', peer: number, port: number): EndpointPolicy {
  const none = { defaultDeny: false, entries: [] };
  const d = { defaultDeny: true, entries: [{ remoteIdentity: peer, protocol: 6 as const, port, endPort: port, verdict: 'ALLOW' as const, derivedFrom: ['v6'] }] };
  return { endpointId, identity, ingress: dir === 'ingress' ? d : none, egress: dir === 'egress' ? d : none, revision: 1 };
}

test('IPv6 on veths: allow, default deny, replies, drop events, L7 redirect to a transparent listener', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('dp6');
  t.after(() => sb.cleanup());
  const pins = tempPinDir('dp6');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const k = (process.pid % 0xfff0).toString(16);
  const a = (n: number) => `fd00:${k}:a::${n}`;
  const b = (n: number) => `fd00:${k}:b::${n}`;
  const nsA = await sb.netns('a');
  const nsB = await sb.netns('b');
  const hA = sb.name('ha');
  const hB = sb.name('hb');
  await sb.vethToHost(nsA, { hostIf: hA, podIf: 'eth0' });
  await sb.vethToHost(nsB, { hostIf: hB, podIf: 'eth0' });
  for (const [ns, host, ip] of [
    [nsA, hA, a],
    [nsB, hB, b],
  ] as const) {
    await run('ip', ['-6', 'addr', 'add', `${ip(1)}/64`, 'dev', host, 'nodad']);
    await run('ip', ['-n', ns, '-6', 'addr', 'add', `${ip(2)}/64`, 'dev', 'eth0', 'nodad']);
    await run('ip', ['-n', ns, '-6', 'route', 'add', 'default', 'via', ip(1)]);
    await run('sysctl', ['-qw', `net.ipv6.conf.${host}.force_forwarding=1`]);
  }
  // Link-local addresses go through DAD first; neighbour discovery waits for them.
  for (let i = 0; i < 50; i += 1) {
    const pending = await Promise.all([
      run('ip', ['-6', 'addr', 'show', 'dev', hA, 'tentative']),
      run('ip', ['-6', 'addr', 'show', 'dev', hB, 'tentative']),
      run('ip', ['-n', nsA, '-6', 'addr', 'show', 'dev', 'eth0', 'tentative']),
      run('ip', ['-n', nsB, '-6', 'addr', 'show', 'dev', 'eth0', 'tentative']),
    ]);
    if (pending.every((r) => r.stdout.trim() === '')) break;
    await sleep(100);
  }
  await startPeer(sb, nsA, ['serve', 'A', '80']);
  await startPeer(sb, nsB, ['serve', 'B', '80', '81']);

  const dp = await EndpointManager.open({ pinDir: pins.path, proxyPort: () => proxyPort });
  t.after(() => dp.close());
  const events: FlowRecord[] = [];
  const stream = dp.onFlowEvents((r) => events.push(...r));
  t.after(() => stream.close());
  await dp.addEndpoint({ endpointId: 'v6/a', ifname: hA, identity: ID_A, ips: [a(2)] });
  await dp.addEndpoint({ endpointId: 'v6/b', ifname: hB, identity: ID_B, ips: [b(2)] });
  dp.syncIpcache([
    { prefix: `${a(2)}/128`, identity: ID_A },
    { prefix: `${b(2)}/128`, identity: ID_B },
  ]);
  dp.updatePolicy(only('v6/b', ID_B, 'ingress', ID_A, 80));
  dp.updatePolicy(only('v6/a', ID_A, 'egress', ID_B, 80));

  const ev = () => JSON.stringify(events.map((e) => [e.type, e.dropReason ?? e.verdict, e.direction, e.src.ip, e.dst.ip, e.protocol, e.dst.port]));
  assert.equal(await connectFrom(sb, nsA, b(2), 80), `B 80 ${a(2)}`, ev());
  assert.equal(await connectFrom(sb, nsA, b(2), 81), 'TIMEOUT');
  let drop: FlowRecord | undefined;
  for (let i = 0; i < 60 && !drop; i += 1) {
    drop = events.find((e) => e.type === 'drop' && e.dst.port === 81);
    if (!drop) await sleep(50);
  }
  assert.ok(drop, `a drop event; have ${JSON.stringify(events.map((e) => [e.type, e.dropReason, e.dst.ip, e.dst.port]))}`);
  assert.deepEqual(
    [drop.family, drop.dropReason, drop.direction, drop.src.ip, drop.dst.ip, drop.srcIdentity, drop.dstIdentity],
    [6, 'POLICY_DEFAULT_DENY', 'egress', a(2), b(2), ID_A, ID_B],
  );
  // B -> A: A's ingress is open; the replies cross A's default-deny egress through conntrack.
  assert.equal(await connectFrom(sb, nsB, a(2), 80), `A 80 ${b(2)}`);

  // L7 over IPv6: the listener is looked up on [::1]:port, delivered by the IPv6 policy routing rule.
  const table = String(40000 + (process.pid % 20000));
  const prio = String(8000 + (process.pid % 1000));
  await run('ip', ['-6', 'rule', 'add', 'fwmark', '0xb00/0xf00', 'lookup', table, 'priority', prio]);
  sb.defer(() => run('ip', ['-6', 'rule', 'del', 'fwmark', '0xb00/0xf00', 'lookup', table, 'priority', prio]));
  await run('ip', ['-6', 'route', 'add', 'local', '::/0', 'dev', 'lo', 'table', table]);
  sb.defer(() => run('ip', ['-6', 'route', 'flush', 'table', table]));
  const proxy = await startPeer(sb, null, ['tproxy6', String(proxyPort)]);
  dp.updatePolicy({
    ...only('v6/a', ID_A, 'egress', ID_B, 80),
    egress: {
      defaultDeny: true,
      entries: [
        { remoteIdentity: ID_B, protocol: 6, port: 80, endPort: 80, verdict: 'ALLOW', derivedFrom: ['v6'] },
        { remoteIdentity: ID_B, protocol: 6, port: 81, endPort: 81, verdict: 'REDIRECT', l7: { kind: 'http', rules: [{ path: '/' }] }, derivedFrom: ['v6'] },
      ],
    },
    revision: 2,
  });
  assert.equal(await connectFrom(sb, nsA, b(2), 81), `proxy [${b(2)}]:81`);
  await proxy.waitFor(new RegExp(`^accept \\[${a(2)}\\]:\\d+ \\[${b(2)}\\]:81$`));
  assert.equal(await connectFrom(sb, nsA, b(2), 80), `B 80 ${a(2)}`, 'the other port goes straight');
  assert.equal(proxy.count(/^accept /), 1);
});
