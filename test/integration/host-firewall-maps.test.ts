/**
 * bpf/host.c through BPF_PROG_TEST_RUN on the real programs, with the host
 * endpoint written by the EndpointManager into the shared maps as the agent
 * writes it: the host's own traffic judged both ways (ports, whole protocols
 * to the host and to a multicast group, ICMP by type, IPv6), replies through
 * conntrack, forwarded traffic, ARP and neighbour discovery handed on to the
 * device's next program untouched, audit mode and leaving it, and nothing
 * enforced without the host endpoint's row.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { native, openObject } from '../../native/index.js';
import { Host, Identity } from '../../src/datapath/abi.js';
import { adoptPinnedSizes } from '../../src/datapath/device-programs.js';
import { EndpointManager } from '../../src/datapath/endpoint/endpoint-manager.js';
import { HostProgram } from '../../src/datapath/host/maps.js';
import { buildFrame, TcAct, type FrameSpec } from '../../src/datapath/packet.js';
import type { EndpointPolicy, PolicyEntry } from '../../src/policy/types.js';
import { bpfObjectPath } from '../../src/util/paths.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { requirePrivileges } from '../helpers/privileged.js';

const HOST = '10.9.0.1';
const PEER = '10.9.0.2';
const NODE = '10.9.0.3';
const POD = '10.9.1.5';
const HOST6 = 'fd00:9::1';
const PEER6 = 'fd00:9::2';
/** TCX_NEXT as the test run reports it (an unsigned return value): handed on to the device's next program. */
const NEXT = 0xffffffff;
const REMOTE_NODE = 6;

function e(p: Partial<PolicyEntry> & Pick<PolicyEntry, 'verdict'>): PolicyEntry {
  return { remoteIdentity: 0, protocol: 6, port: 0, endPort: 0, derivedFrom: ['host-fw'], ...p };
}

function hostPolicy(revision: number): EndpointPolicy {
  return {
    endpointId: 'node:test',
    identity: Identity.HOST,
    ingress: {
      defaultDeny: true,
      entries: [
        e({ verdict: 'ALLOW', remoteIdentity: 600, port: 22, endPort: 22 }),
        e({ verdict: 'ALLOW', remoteIdentity: 600, protocol: 1, port: 8, endPort: 8 }),
        e({ verdict: 'ALLOW', remoteIdentity: REMOTE_NODE, protocol: 112 }),
      ],
    },
    egress: { defaultDeny: true, entries: [e({ verdict: 'ALLOW', remoteIdentity: 600, port: 443, endPort: 443 })] },
    revision,
  };
}

test('host.c judges the host\'s own traffic with the host endpoint\'s policy and hands everything else on', async (t) => {
  requirePrivileges();
  const pins = tempPinDir('hostfw');
  t.after(() => EndpointManager.destroyPins(pins.path));
  const dp = await EndpointManager.open({ pinDir: pins.path });
  t.after(() => dp.close());
  const obj = openObject(bpfObjectPath('host'), { pinRoot: pins.path });
  t.after(() => obj.close());
  adoptPinnedSizes(obj);
  await obj.load();
  const run = (dir: 'in' | 'out', f: Partial<FrameSpec> & Pick<FrameSpec, 'src' | 'dst'>) =>
    native.progTestRun(obj.programFd(dir === 'in' ? HostProgram.ingress : HostProgram.egress), buildFrame({ proto: 6, sport: 40000, dport: 0, ...f })).retval;

  dp.syncIpcache([
    { prefix: `${HOST}/32`, identity: Identity.HOST },
    { prefix: `${HOST6}/128`, identity: Identity.HOST },
    { prefix: `${PEER}/32`, identity: 600 },
    { prefix: `${PEER6}/128`, identity: 600 },
    { prefix: `${NODE}/32`, identity: REMOTE_NODE },
    { prefix: `${POD}/32`, identity: 500 },
  ]);
  // Before the host endpoint's row exists nothing is enforced.
  assert.equal(run('in', { src: PEER, dst: HOST, dport: 23 }), NEXT);
  await dp.addEndpoint({ endpointId: 'node:test', ifname: 'lo', identity: Identity.HOST, attach: false });
  assert.equal(dp.endpoint('node:test')?.ifindex, Host.EP_KEY);
  dp.updatePolicy(hostPolicy(1));

  // Ingress to the host: the listed port, not another; the reply of the admitted connection passes.
  assert.equal(run('in', { src: PEER, dst: HOST, sport: 40001, dport: 22 }), NEXT);
  assert.equal(run('out', { src: HOST, dst: PEER, sport: 22, dport: 40001, tcpFlags: 0x12 }), NEXT, 'reply through conntrack');
  assert.equal(run('in', { src: PEER, dst: HOST, sport: 40002, dport: 23 }), TcAct.SHOT);
  // Whole protocols: VRRP from another node to the host and to its multicast group; not IGMP, not from a peer that is no node.
  assert.equal(run('in', { src: NODE, dst: HOST, proto: 112 }), NEXT);
  assert.equal(run('in', { src: NODE, dst: '224.0.0.18', proto: 112 }), NEXT);
  assert.equal(run('in', { src: PEER, dst: '224.0.0.18', proto: 112 }), TcAct.SHOT, 'multicast reaching the host is the host\'s');
  assert.equal(run('in', { src: NODE, dst: '224.0.0.22', proto: 2 }), TcAct.SHOT);
  // ICMP by type: echo requests from the peer, their replies; not from the node.
  assert.equal(run('in', { src: PEER, dst: HOST, proto: 1, icmpType: 8, sport: 77 }), NEXT);
  assert.equal(run('out', { src: HOST, dst: PEER, proto: 1, icmpType: 0, dport: 77 }), NEXT);
  assert.equal(run('in', { src: NODE, dst: HOST, proto: 1, icmpType: 8, sport: 78 }), TcAct.SHOT);
  // Egress from the host.
  assert.equal(run('out', { src: HOST, dst: PEER, sport: 50000, dport: 443 }), NEXT);
  assert.equal(run('out', { src: HOST, dst: PEER, sport: 50001, dport: 444 }), TcAct.SHOT);
  // IPv6, and neighbour discovery whatever the policy.
  assert.equal(run('in', { src: PEER6, dst: HOST6, sport: 40003, dport: 22 }), NEXT);
  assert.equal(run('in', { src: PEER6, dst: HOST6, sport: 40004, dport: 23 }), TcAct.SHOT);
  assert.equal(run('in', { src: PEER6, dst: HOST6, proto: 58, icmpType: 135 }), NEXT);
  // Not the host's: forwarded to or from a pod, or between other machines; and ARP.
  assert.equal(run('in', { src: PEER, dst: POD, sport: 40005, dport: 80 }), NEXT);
  assert.equal(run('out', { src: POD, dst: PEER, sport: 80, dport: 40006 }), NEXT);
  assert.equal(run('in', { src: PEER, dst: '192.0.2.9', sport: 40007, dport: 23 }), NEXT);
  const arp = Buffer.alloc(42);
  arp.writeUInt16BE(0x0806, 12);
  assert.equal(native.progTestRun(obj.programFd(HostProgram.ingress), arp).retval, NEXT);

  const m = dp.metrics();
  assert.deepEqual(m.drops.map((d) => `${d.direction} ${d.reason} ${d.packets}`).sort(), ['egress POLICY_DEFAULT_DENY 1', 'ingress POLICY_DEFAULT_DENY 5']);
  const host = dp.endpoint('node:test');
  assert.ok(dp.conntrack().some((c) => c.key.ep_id === host?.epId && c.key.local_port === 22), 'the host\'s connections are tracked under its ep_id');

  // Audit mode: the denied port passes (tracked); leaving it cuts that connection.
  dp.setConfig({ policyAuditMode: true });
  assert.equal(run('in', { src: PEER, dst: HOST, sport: 40010, dport: 23 }), NEXT);
  assert.equal(run('in', { src: PEER, dst: HOST, sport: 40010, dport: 23, tcpFlags: 0x10 }), NEXT);
  dp.setConfig({ policyAuditMode: false });
  assert.equal(run('in', { src: PEER, dst: HOST, sport: 40010, dport: 23, tcpFlags: 0x10 }), TcAct.SHOT, 'revoked once audit mode ends');
  assert.equal(dp.metrics().drops.find((d) => d.reason === 'POLICY_REVOKED')?.packets, 1n);
  // The connection admitted by the policy survives the same change.
  assert.equal(run('in', { src: PEER, dst: HOST, sport: 40001, dport: 22, tcpFlags: 0x10 }), NEXT);

  // Without the host endpoint's row nothing is enforced again.
  dp.removeEndpoint('node:test');
  assert.equal(run('in', { src: PEER, dst: HOST, sport: 40011, dport: 23 }), NEXT);
});
