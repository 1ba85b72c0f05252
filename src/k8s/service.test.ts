import assert from 'node:assert/strict';
import { test } from 'node:test';
import { service, serviceClusterIps } from './service.js';

const ok = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } };
const paths = (r: ReturnType<typeof service.parse>) => (r.ok ? [] : r.problems.map((p) => [p.path, p.code]));

test('a valid Service parses with Kubernetes defaults', () => {
  const r = service.parse(ok);
  assert.ok(r.ok);
  assert.equal(r.value.spec.type, 'ClusterIP');
  assert.equal(r.value.spec.ports[0]?.protocol, 'TCP');
  assert.equal(r.value.spec.sessionAffinity, 'None');
  assert.deepEqual(r.value.metadata.labels, {});
  assert.deepEqual(serviceClusterIps(r.value), ['10.96.0.10']);
  const headless = service.parse({ ...ok, spec: { clusterIP: 'None' } });
  assert.ok(headless.ok);
  assert.deepEqual(serviceClusterIps(headless.value), []);
});

test('invalid IPs and ports are rejected at their field paths', () => {
  const r = service.parse({ ...ok, spec: { clusterIP: '10.96.0.300', externalIPs: ['1.2.3.4', 'x'], ports: [{ port: 0 }, { port: 70000 }] } });
  assert.deepEqual(paths(r), [
    [['spec', 'clusterIP'], 'INVALID_VALUE'],
    [['spec', 'externalIPs', 1], 'INVALID_VALUE'],
    [['spec', 'ports', 0, 'port'], 'INVALID_VALUE'],
    [['spec', 'ports', 1, 'port'], 'INVALID_VALUE'],
  ]);
});

test('duplicate ports and unknown algorithms are rejected by the semantic checks', () => {
  assert.deepEqual(paths(service.parse({ ...ok, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }, { port: 80 }] } })), [[['spec', 'ports', 1], 'DUPLICATE_PORT']]);
  const algo = service.parse({ ...ok, metadata: { ...ok.metadata, annotations: { 'service.cilium.io/lb-algorithm': 'rr' } } });
  assert.deepEqual(paths(algo), [[['metadata', 'annotations', 'service.cilium.io/lb-algorithm'], 'INVALID_ANNOTATION']]);
});
