import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endpointSlice, sliceServiceName } from './endpoint-slice.js';

const base = {
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'web-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4',
  endpoints: [{ addresses: ['10.0.0.1'] }],
  ports: [{ port: 8080 }],
};
const paths = (r: ReturnType<typeof endpointSlice.parse>) => (r.ok ? [] : r.problems.map((p) => [p.path, p.code]));

test('an EndpointSlice parses and names its Service', () => {
  const r = endpointSlice.parse(base);
  assert.ok(r.ok);
  assert.equal(sliceServiceName(r.value), 'shop/web');
  assert.equal(r.value.ports[0]?.protocol, 'TCP');
});

test('it needs its service label, addresses of its addressType and valid ports', () => {
  assert.deepEqual(paths(endpointSlice.parse({ ...base, metadata: { name: 'web-1' } })), [[['metadata', 'labels', 'kubernetes.io/service-name'], 'MISSING_LABEL']]);
  assert.deepEqual(paths(endpointSlice.parse({ ...base, endpoints: [{ addresses: ['10.0.0.1', 'fd00::1'] }] })), [[['endpoints', 0, 'addresses', 1], 'WRONG_ADDRESS_FAMILY']]);
  assert.deepEqual(paths(endpointSlice.parse({ ...base, ports: [{ port: -1 }] })), [[['ports', 0, 'port'], 'INVALID_VALUE']]);
  assert.deepEqual(paths(endpointSlice.parse({ ...base, addressType: 'IPX' })), [[['addressType'], 'INVALID_VALUE']]);
});
