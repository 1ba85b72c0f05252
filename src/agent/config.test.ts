import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMeshdError } from '../util/errors.js';
import { ConfigError, configFlags, loadConfig } from './config.js';

function tmpFile(t: { after(fn: () => void): void }, content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'config.yaml');
  writeFileSync(f, content);
  return f;
}

test('defaults follow Cilium: default enforcement, exclusive CNI, socket LB in every namespace', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.policyEnforcementMode, 'default');
  assert.equal(c['cni.exclusive'], true);
  assert.equal(c['socketLB.hostNamespaceOnly'], false);
  assert.deepEqual(c['proxy.portRange'], [10000, 20000]);
});

test('file (nested Helm-style values) < environment < flags', (t) => {
  const f = tmpFile(t, 'socketLB:\n  hostNamespaceOnly: true\ncni:\n  exclusive: false\npolicyEnforcementMode: always\n');
  const fromFile = loadConfig({ file: f, env: {} });
  assert.equal(fromFile['socketLB.hostNamespaceOnly'], true);
  assert.equal(fromFile['cni.exclusive'], false);
  assert.equal(fromFile.policyEnforcementMode, 'always');
  const withEnv = loadConfig({ file: f, env: { MESHD_POLICYENFORCEMENTMODE: 'never', MESHD_CNI_EXCLUSIVE: 'true' } });
  assert.equal(withEnv.policyEnforcementMode, 'never');
  assert.equal(withEnv['cni.exclusive'], true);
  const { flags, rest } = configFlags(['--cni.exclusive=false', '--set', 'policyEnforcementMode=default', '--standalone', 'dir']);
  assert.deepEqual(rest, ['--standalone', 'dir']);
  const withFlags = loadConfig({ file: f, env: { MESHD_CNI_EXCLUSIVE: 'true' }, flags });
  assert.equal(withFlags['cni.exclusive'], false);
  assert.equal(withFlags.policyEnforcementMode, 'default');
});

test('unknown keys and bad values are rejected with a stable code naming the key and the file', (t) => {
  const f = tmpFile(t, 'socketLB:\n  hostNamespaceOnyl: true\n');
  assert.throws(
    () => loadConfig({ file: f, env: {} }),
    (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_UNKNOWN_KEY') && e instanceof ConfigError && e.keys.includes('socketLB.hostNamespaceOnyl') && e.message.includes(f),
  );
  const g = tmpFile(t, 'proxy:\n  portRange: "20000-10000"\nipam:\n  podCIDR: 10.0.0.0/33\n');
  assert.throws(
    () => loadConfig({ file: g, env: {} }),
    (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_INVALID') && e instanceof ConfigError && e.kind === 'invalid' && ['proxy.portRange', 'ipam.podCIDR'].every((k) => e.keys.includes(k) && e.message.includes(k)),
  );
  assert.throws(() => loadConfig({ env: {}, flags: { 'no.such': '1' } }), (e: unknown) => e instanceof ConfigError && e.code === 'MESHD_CONFIG_UNKNOWN_KEY' && e.keys[0] === 'no.such');
  assert.throws(() => configFlags(['--set', 'novalue']), (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_INVALID') && e.message.includes('novalue'));
});

test('a file that cannot be read or parsed is an error naming it, never the defaults', (t) => {
  const missing = join(tmpdir(), `meshd-config-missing-${process.pid}.yaml`);
  assert.throws(() => loadConfig({ file: missing, env: {} }), (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_UNREADABLE') && e.kind === 'not-found' && e.message.includes(missing));
  const bad = tmpFile(t, 'socketLB: [unclosed\n');
  assert.throws(() => loadConfig({ file: bad, env: {} }), (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_INVALID') && e.message.includes(bad));
  const list = tmpFile(t, '- a\n- b\n');
  assert.throws(() => loadConfig({ file: list, env: {} }), (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_INVALID') && e.message.includes(list));
});

test('k8sServiceHost/k8sServicePort/k8sKubeconfigPath: unset by default, set from a file, the environment or flags', (t) => {
  const d = loadConfig({ env: {} });
  assert.equal(d.k8sServiceHost, undefined);
  assert.equal(d.k8sKubeconfigPath, undefined);
  const f = tmpFile(t, 'k8sServiceHost: 10.0.0.1\nk8sServicePort: 6443\n');
  const c = loadConfig({ file: f, env: { MESHD_K8SKUBECONFIGPATH: '/etc/meshd/kubeconfig' }, flags: { k8sServicePort: '443' } });
  assert.equal(c.k8sServiceHost, '10.0.0.1');
  assert.equal(c.k8sServicePort, 443);
  assert.equal(c.k8sKubeconfigPath, '/etc/meshd/kubeconfig');
  assert.throws(() => loadConfig({ env: {}, flags: { k8sServicePort: '70000' } }), (e) => isMeshdError(e, 'MESHD_CONFIG_INVALID') && e instanceof ConfigError && e.keys.includes('k8sServicePort'));
});

test('identityAllocationMode is crd by default; the identity GC takes durations as Cilium writes them', (t) => {
  const d = loadConfig({ env: {} });
  assert.equal(d.identityAllocationMode, 'crd');
  assert.equal(d['identityGC.leaseNamespace'], 'kube-system');
  assert.equal(d['identityGC.gracePeriod'], 15 * 60_000);
  assert.equal(d['identityGC.interval'], 60_000);
  const f = tmpFile(t, 'identityAllocationMode: local\nidentityGC:\n  gracePeriod: 1h30m\n  interval: 500ms\n  leaseNamespace: meshd\n');
  const c = loadConfig({ file: f, env: {} });
  assert.equal(c.identityAllocationMode, 'local');
  assert.equal(c['identityGC.gracePeriod'], 90 * 60_000);
  assert.equal(c['identityGC.interval'], 500);
  assert.equal(c['identityGC.leaseNamespace'], 'meshd');
  assert.equal(loadConfig({ env: { MESHD_IDENTITYGC_GRACEPERIOD: '45s' } })['identityGC.gracePeriod'], 45_000);
  assert.throws(() => loadConfig({ env: {}, flags: { identityAllocationMode: 'kvstore' } }), (e) => isMeshdError(e, 'MESHD_CONFIG_INVALID') && e instanceof ConfigError && e.keys.includes('identityAllocationMode'));
  for (const bad of ['15', '0s', '1d', 'm'])
    assert.throws(() => loadConfig({ env: {}, flags: { 'identityGC.gracePeriod': bad } }), (e) => isMeshdError(e, 'MESHD_CONFIG_INVALID') && e instanceof ConfigError && e.keys.includes('identityGC.gracePeriod'), bad);
});

test('pod CIDR keys follow Cilium: cluster-pool from 10.0.0.0/8 in /24 blocks; the pool list from nested values, a flag or the environment', (t) => {
  const c = loadConfig({ env: {} });
  assert.equal(c['ipam.mode'], 'cluster-pool');
  assert.deepEqual(c['ipam.operator.clusterPoolIPv4PodCIDRList'], ['10.0.0.0/8']);
  assert.equal(c['ipam.operator.clusterPoolIPv4MaskSize'], 24);
  assert.equal(c['ipam.podCIDR'], undefined, 'unset: standalone falls back, Kubernetes mode uses ipam.mode');
  const f = tmpFile(t, 'ipam:\n  mode: kubernetes\n  operator:\n    clusterPoolIPv4PodCIDRList: [10.8.0.0/16, 10.9.0.0/16]\n    clusterPoolIPv4MaskSize: 26\n');
  const fromFile = loadConfig({ file: f, env: {} });
  assert.equal(fromFile['ipam.mode'], 'kubernetes');
  assert.deepEqual(fromFile['ipam.operator.clusterPoolIPv4PodCIDRList'], ['10.8.0.0/16', '10.9.0.0/16']);
  assert.equal(fromFile['ipam.operator.clusterPoolIPv4MaskSize'], 26);
  assert.deepEqual(loadConfig({ env: { MESHD_IPAM_OPERATOR_CLUSTERPOOLIPV4PODCIDRLIST: '10.1.0.0/16, 10.2.0.0/16' } })['ipam.operator.clusterPoolIPv4PodCIDRList'], ['10.1.0.0/16', '10.2.0.0/16']);
  assert.equal(loadConfig({ env: {}, flags: configFlags(['--nodeGC.gracePeriod=2m']).flags })['nodeGC.gracePeriod'], 120_000);
  assert.throws(() => loadConfig({ env: {}, flags: { 'ipam.operator.clusterPoolIPv4PodCIDRList': '10.1.0.0/16,nope' } }), (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_INVALID') && e instanceof ConfigError && e.keys.some((k) => k.startsWith('ipam.operator.clusterPoolIPv4PodCIDRList')));
  assert.throws(() => loadConfig({ env: {}, flags: { 'ipam.mode': 'multi-pool' } }), (e: unknown) => isMeshdError(e, 'MESHD_CONFIG_INVALID'));
});

test('hubble.* and prometheus.*: Cilium defaults; the buffer capacity must be 2^n-1; the metrics list from a file or a flag', (t) => {
  const d = loadConfig({ env: {} });
  assert.deepEqual([d['hubble.enabled'], d['hubble.eventBufferCapacity'], d['hubble.metrics.port'], d['prometheus.port']], [true, 4095, 9965, 9962]);
  assert.deepEqual(d['hubble.metrics.enabled'], []);
  assert.throws(() => loadConfig({ env: {}, flags: { 'hubble.eventBufferCapacity': '4096' } }), (e: unknown) => e instanceof ConfigError && e.code === 'MESHD_CONFIG_INVALID' && e.keys.includes('hubble.eventBufferCapacity'));
  const f = tmpFile(t, 'hubble:\n  eventBufferCapacity: 65535\n  metrics:\n    enabled: [flow, "httpV2:exemplars=true"]\n');
  assert.deepEqual(loadConfig({ file: f, env: {} })['hubble.metrics.enabled'], ['flow', 'httpV2:exemplars=true']);
  assert.deepEqual(loadConfig({ env: {}, flags: { 'hubble.metrics.enabled': 'drop,tcp dns' } })['hubble.metrics.enabled'], ['drop', 'tcp', 'dns']);
});

test('devices and nodePort.* as Cilium writes them: a list or "a,b"; nodePort.enabled unset follows kubeProxyReplacement', () => {
  const c = loadConfig({ env: { MESHD_DEVICES: 'eth0, eth1' } });
  assert.deepEqual(c.devices, ['eth0', 'eth1']);
  assert.equal(c['nodePort.enabled'], undefined);
  assert.equal(c['loadBalancer.mode'], 'snat');
  assert.deepEqual(loadConfig({ env: {}, flags: { 'nodePort.enabled': 'false' } })['nodePort.enabled'], false);
  assert.throws(() => loadConfig({ env: {}, flags: { devices: 'eth0,bad/name' } }), (e: unknown) => e instanceof ConfigError && e.code === 'MESHD_CONFIG_INVALID' && e.keys.some((k) => k.startsWith('devices')));
  assert.throws(() => loadConfig({ env: {}, flags: { 'loadBalancer.mode': 'dsr' } }), (e: unknown) => e instanceof ConfigError && e.code === 'MESHD_CONFIG_INVALID' && e.keys.includes('loadBalancer.mode'));
});

test('routing keys: Cilium names and defaults (native, vxlan on 8472, MTU auto); a bad value names its key', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.routingMode, 'native');
  assert.equal(c.tunnelProtocol, 'vxlan');
  assert.equal(c.tunnelPort, 8472);
  assert.equal(c.autoDirectNodeRoutes, false);
  assert.equal(c.MTU, 0);
  const t = loadConfig({ env: {}, flags: { routingMode: 'tunnel', tunnelPort: '4789', ipv4NativeRoutingCIDR: '10.0.0.0/8', MTU: '1400' } });
  assert.equal(t.routingMode, 'tunnel');
  assert.equal(t.tunnelPort, 4789);
  assert.equal(t.ipv4NativeRoutingCIDR, '10.0.0.0/8');
  assert.equal(t.MTU, 1400);
  for (const [key, value] of [['routingMode', 'overlay'], ['tunnelProtocol', 'ipip'], ['tunnelPort', '0'], ['ipv4NativeRoutingCIDR', '10.0.0.1']] as const) {
    assert.throws(
      () => loadConfig({ env: {}, flags: { [key]: value } }),
      (e: unknown) => e instanceof ConfigError && e.code === 'MESHD_CONFIG_INVALID' && e.keys.includes(key),
    );
  }
});

test('envoy.idleTimeoutDurationSeconds and envoy.httpRetryCount: Cilium defaults, validated', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c['envoy.idleTimeoutDurationSeconds'], 60);
  assert.equal(c['envoy.httpRetryCount'], 3);
  const set = loadConfig({ env: { MESHD_ENVOY_IDLETIMEOUTDURATIONSECONDS: '4', MESHD_ENVOY_HTTPRETRYCOUNT: '0' } });
  assert.equal(set['envoy.idleTimeoutDurationSeconds'], 4);
  assert.equal(set['envoy.httpRetryCount'], 0);
  assert.throws(() => loadConfig({ env: { MESHD_ENVOY_IDLETIMEOUTDURATIONSECONDS: '0' } }), /envoy\.idleTimeoutDurationSeconds/);
});
