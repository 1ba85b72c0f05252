import assert from 'node:assert/strict';
import { test } from 'node:test';
import { node, nodeIps } from './node.js';

test('a Node parses; its IP addresses are the *IP entries', () => {
  const r = node.parse({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'n1', labels: { zone: 'a' } },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.1.5' }, { type: 'Hostname', address: 'n1' }, { type: 'ExternalIP', address: '203.0.113.5' }] },
  });
  assert.ok(r.ok);
  assert.deepEqual(nodeIps(r.value), ['192.168.1.5', '203.0.113.5']);
  const bare = node.parse({ kind: 'Node', metadata: { name: 'n2' } });
  assert.ok(bare.ok);
  assert.deepEqual(nodeIps(bare.value), []);
});

test('an address without its type is reported at its path', () => {
  const r = node.parse({ kind: 'Node', metadata: { name: 'n1' }, status: { addresses: [{ address: '192.168.1.5' }] } });
  assert.deepEqual(r.ok ? [] : r.problems.map((p) => [p.path, p.code]), [[['status', 'addresses', 0, 'type'], 'WRONG_TYPE']]);
});
