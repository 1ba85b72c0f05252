import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseEndpointSlice, parseService } from './service-types.js';

const ok = { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] } };

test('a valid Service parses with Kubernetes defaults', () => {
  const r = parseService(ok);
  assert.ok(r.ok);
  assert.equal(r.value.spec.type, 'ClusterIP');
  assert.equal(r.value.spec.ports[0]?.protocol, 'TCP');
  assert.equal(r.value.spec.sessionAffinity, 'None');
});

test('invalid IPs and ports are rejected with their field paths', () => {
  const r = parseService({ ...ok, spec: { clusterIP: '10.96.0.300', externalIPs: ['1.2.3.4', 'x'], ports: [{ port: 0 }, { port: 70000 }] } });
  assert.ok(!r.ok);
  assert.ok(r.errors.some((e) => e.startsWith('spec.clusterIP:')), r.errors.join('\n'));
  assert.ok(r.errors.some((e) => e.startsWith('spec.externalIPs[1]: not an IP address')), r.errors.join('\n'));
  assert.ok(r.errors.includes('spec.ports[0].port: must be 1..65535'), r.errors.join('\n'));
  assert.ok(r.errors.includes('spec.ports[1].port: must be 1..65535'), r.errors.join('\n'));
});

test('duplicate ports and unknown algorithms are rejected', () => {
  const dup = parseService({ ...ok, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }, { port: 80 }] } });
  assert.deepEqual(dup.ok ? [] : dup.errors, ['spec.ports[1]: duplicate TCP/80']);
  const algo = parseService({ ...ok, metadata: { ...ok.metadata, annotations: { 'service.cilium.io/lb-algorithm': 'rr' } } });
  assert.ok(!algo.ok && /lb-algorithm: must be "random" or "maglev"/.test(algo.errors[0] ?? ''));
});

test('an EndpointSlice needs its service label and addresses of its addressType', () => {
  const base = { metadata: { name: 'web-1', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.0.0.1'] }], ports: [{ port: 8080 }] };
  assert.ok(parseEndpointSlice(base).ok);
  const noLabel = parseEndpointSlice({ ...base, metadata: { name: 'web-1' } });
  assert.deepEqual(noLabel.ok ? [] : noLabel.errors, ['metadata.labels.kubernetes.io/service-name: required']);
  const wrong = parseEndpointSlice({ ...base, endpoints: [{ addresses: ['fd00::1'] }] });
  assert.deepEqual(wrong.ok ? [] : wrong.errors, ['endpoints[0].addresses[0]: "fd00::1" is not an IPv4 address']);
  const badPort = parseEndpointSlice({ ...base, ports: [{ port: -1 }] });
  assert.ok(!badPort.ok && badPort.errors[0]?.startsWith('ports[0].port'));
});
