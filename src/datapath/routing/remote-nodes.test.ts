import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMeshdNode } from '../../k8s/meshd-node.js';
import { inCidr4, parseRoutingCidr } from './cidr.js';
import { remoteNodeOf } from './remote-nodes.js';

const node = (addresses: Array<{ type: string; ip: string }>, podCIDRs = ['10.0.2.0/24']) =>
  parseMeshdNode({ apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdNode', metadata: { name: 'b' }, spec: { podCIDRs, addresses } });

test('a node is routed via its InternalIP, else ExternalIP, else a host address outside the pod ranges', () => {
  assert.deepEqual(remoteNodeOf(node([{ type: 'MeshdHostIP', ip: '192.168.1.2' }, { type: 'InternalIP', ip: '172.16.0.2' }])), { name: 'b', ip: '172.16.0.2', podCIDRs: ['10.0.2.0/24'] });
  assert.equal((remoteNodeOf(node([{ type: 'MeshdHostIP', ip: '192.168.1.2' }, { type: 'ExternalIP', ip: '203.0.113.9' }])) as { ip: string }).ip, '203.0.113.9');
  const hostOnly = node([{ type: 'MeshdHostIP', ip: '127.0.0.1' }, { type: 'MeshdHostIP', ip: '10.0.2.1' }, { type: 'MeshdHostIP', ip: '10.9.0.1' }, { type: 'MeshdHostIP', ip: '192.168.1.2' }]);
  assert.equal((remoteNodeOf(hostOnly, '10.0.0.0/8') as { ip: string }).ip, '192.168.1.2');
  assert.equal((remoteNodeOf(hostOnly) as { ip: string }).ip, '10.9.0.1');
});

test('a node without an IPv4 pod CIDR or address is not routed yet; IPv6 entries are left out', () => {
  assert.equal(typeof remoteNodeOf(node([{ type: 'InternalIP', ip: '172.16.0.2' }], [])), 'string');
  assert.equal(typeof remoteNodeOf(node([{ type: 'InternalIP', ip: 'fd00::2' }])), 'string');
  assert.deepEqual((remoteNodeOf(node([{ type: 'InternalIP', ip: '172.16.0.2' }], ['fd00:1::/64', '10.0.3.7/24'])) as { podCIDRs: string[] }).podCIDRs, ['10.0.3.0/24']);
});

test('CIDR helpers normalise and test membership', () => {
  assert.equal(parseRoutingCidr('10.0.1.7/24'), '10.0.1.0/24');
  assert.equal(parseRoutingCidr('10.0.1.0/33'), undefined);
  assert.equal(parseRoutingCidr('fd00::/64'), undefined);
  assert.ok(inCidr4('10.0.1.200', '10.0.1.0/24'));
  assert.ok(!inCidr4('10.0.2.1', '10.0.1.0/24'));
  assert.ok(inCidr4('1.2.3.4', '0.0.0.0/0'));
});
