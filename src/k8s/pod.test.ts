import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pod, podIps, podNamedPorts } from './pod.js';

const ok = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web-0', labels: { app: 'web' } },
  spec: { serviceAccountName: 'web', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 9090 }] }] },
  status: { podIPs: [{ ip: '10.0.0.5' }, { ip: 'fd00::5' }] },
};

test('a Pod parses with defaults; named ports and addresses come from the typed object', () => {
  const r = pod.parse(ok);
  assert.ok(r.ok);
  assert.equal(r.value.metadata.namespace, 'default');
  assert.deepEqual(podNamedPorts(r.value), [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  assert.deepEqual(podIps(r.value), ['10.0.0.5', 'fd00::5']);
  const old = pod.parse({ ...ok, status: { podIP: '10.0.0.6' } });
  assert.ok(old.ok);
  assert.deepEqual(podIps(old.value), ['10.0.0.6']);
});

test('kind and apiVersion default to the module’s own (API list items carry neither) but other values are refused', () => {
  const bare = pod.parse({ metadata: { name: 'x' } });
  assert.ok(bare.ok);
  assert.equal(bare.value.kind, 'Pod');
  const other = pod.parse({ ...ok, apiVersion: 'apps/v1' });
  assert.deepEqual(other.ok ? [] : other.problems.map((p) => [p.path, p.code]), [[['apiVersion'], 'INVALID_VALUE']]);
});

test('a bad container port is reported at its exact field path', () => {
  const r = pod.parse({ ...ok, spec: { containers: [{ name: 'c', ports: [{ containerPort: 0 }] }] } });
  assert.deepEqual(r.ok ? [] : r.problems.map((p) => [p.path, p.code]), [[['spec', 'containers', 0, 'ports', 0, 'containerPort'], 'INVALID_VALUE']]);
  const noName = pod.parse({ kind: 'Pod', metadata: {} });
  assert.deepEqual(noName.ok ? [] : noName.problems.map((p) => [p.path, p.code, p.message]), [[['metadata', 'name'], 'WRONG_TYPE', 'required field is missing']]);
});
