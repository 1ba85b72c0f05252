import assert from 'node:assert/strict';
import { test } from 'node:test';
import { socketLbOptions } from './lb-config.js';

const base = { kubeProxyReplacement: true, 'socketLB.enabled': true, 'socketLB.hostNamespaceOnly': false, 'bpf.root': '/sys/fs/bpf' };

test('configuration keys map onto ServiceManager options; pins go under <bpf.root>/meshd', () => {
  assert.deepEqual(socketLbOptions(base), {
    enabled: true,
    options: { pinDir: '/sys/fs/bpf/meshd', hostNamespaceOnly: false, algorithm: 'random', lbMapMax: 65536 },
  });
  const o = socketLbOptions({ ...base, 'socketLB.hostNamespaceOnly': true, 'loadBalancer.algorithm': 'maglev', 'bpf.lbMapMax': 131072, 'bpf.root': '/run/bpf' });
  assert.deepEqual(o.options, { pinDir: '/run/bpf/meshd', hostNamespaceOnly: true, algorithm: 'maglev', lbMapMax: 131072 });
});

test('the socket LB is off unless both kubeProxyReplacement and socketLB.enabled are on', () => {
  assert.equal(socketLbOptions({ ...base, kubeProxyReplacement: false }).enabled, false);
  assert.equal(socketLbOptions({ ...base, 'socketLB.enabled': false }).enabled, false);
});
