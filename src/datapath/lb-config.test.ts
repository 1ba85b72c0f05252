import assert from 'node:assert/strict';
import { test } from 'node:test';
import { socketLbConfig } from './lb-config.js';

test('socketLB.enabled follows kubeProxyReplacement unless set; defaults match Cilium', () => {
  const d = socketLbConfig({});
  assert.ok(d.ok);
  assert.deepEqual(d.value, {
    enabled: false,
    options: { pinDir: '/sys/fs/bpf/meshd', hostNamespaceOnly: false, algorithm: 'random', lbMapMax: 65536, nodeIPs: [] },
  });
  const kpr = socketLbConfig({ kubeProxyReplacement: 'true', socketLB: { hostNamespaceOnly: true } });
  assert.ok(kpr.ok && kpr.value.enabled && kpr.value.options.hostNamespaceOnly === true);
  const off = socketLbConfig({ kubeProxyReplacement: true, socketLB: { enabled: false } });
  assert.ok(off.ok && !off.value.enabled);
});

test('bad values are rejected with their key path', () => {
  const r = socketLbConfig({ loadBalancer: { algorithm: 'rr' }, bpf: { lbMapMax: 3 }, maglev: { tableSize: 16381 } });
  assert.ok(!r.ok);
  assert.ok(r.errors.some((e) => e.startsWith('loadBalancer.algorithm:')), r.errors.join('\n'));
  assert.ok(r.errors.some((e) => e.startsWith('bpf.lbMapMax:')), r.errors.join('\n'));
  assert.ok(r.errors.some((e) => e.startsWith('maglev.tableSize: only 1021')), r.errors.join('\n'));
});
