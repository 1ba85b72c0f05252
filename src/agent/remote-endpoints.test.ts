import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildMeshdEndpoint, type MeshdEndpointStatus } from '../k8s/meshd-endpoint.js';
import { remoteEndpointOf } from './remote-endpoints.js';

const status: MeshdEndpointStatus = {
  nodeName: 'node-b',
  endpointID: 3,
  identity: { id: 4100, labels: ['k8s:app=remote', 'k8s:io.kubernetes.pod.namespace=default'] },
  networking: { addresses: [{ ipv4: '10.99.0.5', ipv6: 'fd00::5' }] },
  namedPorts: [{ name: 'http', port: 80, protocol: 'TCP' }],
  state: 'ready',
  policy: { ingress: { enforcing: false }, egress: { enforcing: false } },
  health: { healthy: true, lastUpdate: '' },
};

test('an object becomes the remote endpoint the engine gets: labels as a label set, every address, named ports', () => {
  const r = remoteEndpointOf(buildMeshdEndpoint({ namespace: 'default', name: 'r1', status }));
  assert.ok(r.ok);
  assert.equal(r.value.id, 'default/r1');
  assert.equal(r.value.labels.key, 'k8s:app=remote;k8s:io.kubernetes.pod.namespace=default');
  assert.deepEqual(r.value.ips, ['10.99.0.5', 'fd00::5']);
  assert.deepEqual(r.value.ports, [{ name: 'http', port: 80, protocol: 'TCP' }]);
  assert.equal(r.value.identity, 4100);
});

test('a label that is not source:key=value is refused with its path', () => {
  const r = remoteEndpointOf(buildMeshdEndpoint({ namespace: 'default', name: 'r1', status: { ...status, identity: { id: 4100, labels: ['k8s:app=remote', 'noSource'] } } }));
  assert.ok(!r.ok);
  assert.equal(r.path, 'status.identity.labels[1]');
});
