import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMeshdError } from '../../util/errors.js';
import { decodeFlowEvent, FlowEventError, formatIp } from './flow-events.js';
import { FlowEvent } from '../maps.js';

test('a drop event decodes into a flow record with reason, direction, identities and 5-tuple', () => {
  const saddr = Buffer.alloc(16);
  saddr.set([10, 1, 0, 2]);
  const daddr = Buffer.alloc(16);
  daddr.set([10, 1, 0, 3]);
  const raw = FlowEvent.encode({
    ts_ns: 123n,
    type: 1,
    reason: 1,
    ep_id: 7,
    src_identity: 1000,
    dst_identity: 2000,
    ifindex: 42,
    saddr,
    daddr,
    sport: 40000,
    dport: 80,
    proto: 6,
    family: 4,
    dir: 1,
    verdict: 2,
    proxy_port: 0,
    tcp_flags: 0x12,
    icmp_type: 0,
  });
  assert.deepEqual(decodeFlowEvent(raw), {
    monotonicNs: 123n,
    type: 'drop',
    dropReason: 'POLICY_DENY',
    direction: 'egress',
    verdict: 'DENY',
    endpointNumericId: 7,
    ifindex: 42,
    srcIdentity: 1000,
    dstIdentity: 2000,
    family: 4,
    protocol: 6,
    src: { ip: '10.1.0.2', port: 40000 },
    dst: { ip: '10.1.0.3', port: 80 },
    tcpFlags: 0x12,
  });
});

test('malformed records are refused with a stable code', () => {
  assert.throws(() => decodeFlowEvent(Buffer.alloc(8)), (e: unknown) => e instanceof FlowEventError && isMeshdError(e, 'MESHD_FLOW_EVENT_MALFORMED'));
  const bad = FlowEvent.encode({ ...FlowEvent.zero(), type: 99, family: 4 });
  assert.throws(() => decodeFlowEvent(bad), (e: unknown) => isMeshdError(e, 'MESHD_FLOW_EVENT_MALFORMED'));
});

test('IPv6 addresses are printed compressed', () => {
  const a = Buffer.alloc(16);
  a.writeUInt16BE(0xfd00, 0);
  a.writeUInt16BE(1, 14);
  assert.equal(formatIp(6, a), 'fd00::1');
});

test('an audit event decodes with the reason of the drop that did not happen', () => {
  const raw = FlowEvent.encode({
    ts_ns: 5n, type: 4, reason: 2, ep_id: 3, src_identity: 600, dst_identity: 1, ifindex: 9,
    saddr: Buffer.alloc(16, 0), daddr: Buffer.alloc(16, 0), sport: 40000, dport: 23, proto: 6, family: 4, dir: 0,
    verdict: 2, proxy_port: 0, tcp_flags: 0x02, icmp_type: 0,
  });
  const r = decodeFlowEvent(raw);
  assert.deepEqual([r.type, r.dropReason, r.direction, r.dstIdentity], ['audit', 'POLICY_DEFAULT_DENY', 'ingress', 1]);
});
