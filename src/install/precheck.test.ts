import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../agent/config.js';
import { EXIT_STATUS } from '../util/errors.js';
import { evaluateInstall, precheckExitStatus, readCniDir, type NodeFacts } from './precheck.js';

const facts = (over: Partial<NodeFacts> = {}): NodeFacts => ({ cniConfDir: '/etc/cni/net.d', cniConfs: [], cniBackups: [], kubeProxy: [], ...over });
const cfg = (flags: Record<string, string> = {}) => loadConfig({ env: {}, flags });
const byName = (rs: ReturnType<typeof evaluateInstall>, name: string) => {
  const r = rs.find((x) => x.name === name);
  assert.ok(r, `a ${name} check`);
  return r;
};

test('an empty node with the defaults passes; exit status 0', () => {
  const rs = evaluateInstall(facts(), cfg());
  assert.deepEqual(rs.filter((r) => !r.ok), []);
  assert.equal(precheckExitStatus(rs), 0);
});

test('cni.exclusive=true with another configuration: a warning without Istio, a conflict failure with it, naming cni.exclusive', () => {
  const f = facts({ cniConfs: [{ file: '05-meshd.conflist', plugins: ['meshd-cni'] }, { file: '10-flannel.conflist', plugins: ['flannel', 'portmap'] }] });
  const plain = byName(evaluateInstall(f, cfg()), 'cni-configs');
  assert.equal(plain.ok, false);
  assert.equal(plain.required, false);
  assert.match(plain.detail, /10-flannel\.conflist/);
  assert.match(plain.fix ?? '', /cni\.exclusive=false/);
  const rs = evaluateInstall(f, cfg(), 'sidecar');
  const istio = byName(rs, 'cni-configs');
  assert.equal(istio.required, true);
  assert.equal(istio.kind, 'conflict');
  assert.equal(precheckExitStatus(rs), EXIT_STATUS.conflict);
});

test('cni.exclusive=false: other files stay; one sorting before meshd\'s conflist is a warning', () => {
  const ok = byName(evaluateInstall(facts({ cniConfs: [{ file: '05-meshd.conflist', plugins: ['meshd-cni', 'istio-cni'] }, { file: '10-other.conflist', plugins: ['bridge'] }] }), cfg({ 'cni.exclusive': 'false' })), 'cni-configs');
  assert.equal(ok.ok, true);
  assert.match(ok.detail, /istio-cni/);
  const first = byName(evaluateInstall(facts({ cniConfs: [{ file: '00-early.conf', plugins: ['bridge'] }, { file: '05-meshd.conflist', plugins: ['meshd-cni'] }] }), cfg({ 'cni.exclusive': 'false' })), 'cni-configs');
  assert.equal(first.ok, false);
  assert.equal(first.required, false);
});

test('kube-proxy against kubeProxyReplacement', () => {
  const both = byName(evaluateInstall(facts({ kubeProxy: ['iptables nat chain KUBE-SERVICES'] }), cfg()), 'kube-proxy');
  assert.equal(both.ok, false);
  assert.equal(both.required, false);
  assert.match(both.fix ?? '', /kubeProxyReplacement=false/);
  const none = evaluateInstall(facts(), cfg({ kubeProxyReplacement: 'false' }));
  assert.equal(byName(none, 'kube-proxy').ok, false);
  assert.match(byName(none, 'kube-proxy').fix ?? '', /kubeProxyReplacement=true/);
  assert.equal(precheckExitStatus(none), EXIT_STATUS.invalid);
  assert.equal(byName(evaluateInstall(facts({ kubeProxy: ['process kube-proxy (pid 1)'] }), cfg({ kubeProxyReplacement: 'false' })), 'kube-proxy').ok, true);
});

test('Istio sidecar: hostNamespaceOnly and cni.exclusive must be set, each failure names its key; the Istio values pass', () => {
  const rs = evaluateInstall(facts(), cfg(), 'sidecar');
  assert.match(byName(rs, 'istio-socketlb').fix ?? '', /socketLB\.hostNamespaceOnly=true/);
  assert.match(byName(rs, 'istio-cni').fix ?? '', /cni\.exclusive=false/);
  assert.equal(precheckExitStatus(rs), EXIT_STATUS.invalid);
  const good = evaluateInstall(facts(), cfg({ 'socketLB.hostNamespaceOnly': 'true', 'cni.exclusive': 'false' }), 'sidecar');
  assert.deepEqual(good.filter((r) => !r.ok), []);
  assert.equal(good.some((r) => r.name.startsWith('ambient-')), false);
});

test('Istio ambient: masquerade and probe checks; policyEnforcementMode=always warns about 169.254.7.127', () => {
  const base = { 'socketLB.hostNamespaceOnly': 'true', 'cni.exclusive': 'false' };
  const rs = evaluateInstall(facts(), cfg(base), 'ambient');
  assert.equal(byName(rs, 'ambient-masquerade').ok, true);
  assert.equal(byName(rs, 'ambient-probes').ok, true);
  const always = byName(evaluateInstall(facts(), cfg({ ...base, policyEnforcementMode: 'always' }), 'ambient'), 'ambient-probes');
  assert.equal(always.ok, false);
  assert.match(always.fix ?? '', /169\.254\.7\.127\/32/);
});

test('readCniDir sorts as runtimes do, reads chains, and reports a broken file instead of throwing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-precheck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, '10-b.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'b', plugins: [{ type: 'bridge' }, { type: 'portmap' }] }));
  writeFileSync(join(dir, '01-a.conf'), JSON.stringify({ cniVersion: '1.0.0', name: 'a', type: 'ptp' }));
  writeFileSync(join(dir, '20-broken.json'), '{');
  writeFileSync(join(dir, '30-old.conflist.meshd_bak'), '{}');
  writeFileSync(join(dir, 'README'), 'not a configuration');
  const r = readCniDir(dir);
  assert.deepEqual(r.cniConfs.map((c) => [c.file, c.plugins]), [['01-a.conf', ['ptp']], ['10-b.conflist', ['bridge', 'portmap']], ['20-broken.json', []]]);
  assert.ok(r.cniConfs[2]?.unreadable);
  assert.deepEqual(r.cniBackups, ['30-old.conflist.meshd_bak']);
  assert.deepEqual(readCniDir(join(dir, 'missing')), { cniConfs: [], cniBackups: [] });
});

test('hostFirewall.enabled warns that a host policy must list the API server and the nodes, unless in audit mode', () => {
  assert.equal(evaluateInstall(facts(), cfg()).find((r) => r.name === 'host-firewall'), undefined);
  const on = byName(evaluateInstall(facts(), cfg({ 'hostFirewall.enabled': 'true' })), 'host-firewall');
  assert.deepEqual([on.ok, on.required], [false, false]);
  assert.equal(byName(evaluateInstall(facts(), cfg({ 'hostFirewall.enabled': 'true', policyAuditMode: 'true' })), 'host-firewall').ok, true);
});
