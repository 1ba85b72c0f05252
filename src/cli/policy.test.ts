import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoPath } from '../util/paths.js';

const bin = repoPath('bin', 'meshd.mjs');

function meshd(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: repoPath() });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('every documented example policy passes meshd policy validate', () => {
  const dir = repoPath('examples', 'policies');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 13);
  // One invocation for all files (each process start costs ~0.5 s on a shared machine).
  const r = meshd('policy', 'validate', ...files.map((f) => join('examples', 'policies', f)));
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  const m = /^(\d+) valid policies, 0 problems$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) >= files.length);
  // A directory argument validates the same files.
  const d = meshd('policy', 'validate', join('examples', 'policies'));
  assert.equal(d.status, 0, d.stdout);
  assert.ok(d.stdout.includes(`${m[1]} valid policies, 0 problems`), d.stdout);
});

test('validate prints every problem with file, document index and field path and exits 1', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-policy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'bad.yaml');
  writeFileSync(
    file,
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ok, namespace: default}
spec: {endpointSelector: {}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: default}
spec:
  endpointSelector: {}
  ingress:
    - toPorts: [{ports: [{port: "99999"}]}]
      fromCIDR: [10.0.0.0/40]
`,
  );
  const r = meshd('policy', 'validate', file);
  assert.equal(r.status, 1);
  assert.ok(r.stdout.includes(`${file} document 1: spec.ingress[0].fromCIDR[0]:`), r.stdout);
  assert.ok(r.stdout.includes(`${file} document 1: spec.ingress[0].toPorts[0].ports[0].port: port 99999 is out of range`), r.stdout);
  assert.match(r.stdout, /1 valid policy, 2 problems/);
});

test('validate on a manifest with other kinds: policies checked, other objects listed as skipped, exit 0; refusals and warnings by code', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-policy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'demo.yaml');
  writeFileSync(
    file,
    `apiVersion: v1
kind: Namespace
metadata: {name: ns1}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: leia, namespace: ns1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ns1}
spec: {replicas: 1}
---
apiVersion: cilium.io/v2
kind: CiliumCIDRGroup
metadata: {name: partners}
spec: {externalCIDRs: [192.0.2.0/24]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ok, namespace: ns1}
spec:
  endpointSelector: {}
  ingress: [{fromRequires: [{matchLabels: {env: prod}}]}]
  egress: [{toCIDRSet: [{cidrGroupRef: partners}]}]
`,
  );
  const r = meshd('policy', 'validate', file);
  assert.equal(r.status, 0, r.stdout);
  assert.match(r.stdout, /^1 valid policy, 0 problems; 1 CIDR group, 3 other objects skipped, 1 warning$/m);
  assert.ok(r.stdout.includes(`skipped: ${file} document 2: Deployment web (apps/v1) is not a policy`), r.stdout);
  assert.ok(r.stdout.includes(`warning: ${file} document 4: spec.ingress[0].fromRequires:`), r.stdout);
  const j = meshd('policy', 'validate', file, '-o', 'json');
  const out = JSON.parse(j.stdout.trim().split('\n').pop() ?? '') as { skipped: Array<{ kind: string }>; warnings: Array<{ code: string }> };
  assert.deepEqual(out.skipped.map((s) => s.kind), ['Namespace', 'ServiceAccount', 'Deployment']);
  assert.deepEqual(out.warnings.map((w) => w.code), ['DEPRECATED_FIELD']);
  // A refused field fails the run with its code.
  writeFileSync(file, 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a, namespace: d}\nspec: {endpointSelector: {}, egress: [{toPorts: [{ports: [{port: "443"}], listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: e}, name: l}}]}]}\n');
  const u = meshd('policy', 'validate', file);
  assert.equal(u.status, 1);
  assert.ok(u.stdout.includes('spec.egress[0].toPorts[0].listener: CiliumEnvoyConfig listener references (listener, listener.priority) is not supported by meshd [UNSUPPORTED_FIELD]'), u.stdout);
});

test('trace -o json prints one object per flow, in order, with verdict, l4, l7, policies and direction', () => {
  const r = meshd('policy', 'trace', '--scenario', join('examples', 'trace', 'demo-scenario.yaml'), '-o', 'json');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const out = JSON.parse(lines[lines.length - 1] ?? '') as { flows: Array<Record<string, unknown>> };
  assert.deepEqual(
    out.flows.map((f) => [f.verdict, f.l4, f.l7, f.direction]),
    [
      ['REDIRECTED', 'REDIRECTED', null, 'ingress'],
      ['ALLOWED', 'REDIRECTED', 'ALLOWED', 'ingress'],
      ['DENIED', 'REDIRECTED', 'DENIED', 'ingress'],
      ['DENIED', 'DENIED', null, 'ingress'],
      ['ALLOWED', 'ALLOWED', null, 'egress'],
      ['DENIED', 'DENIED', null, 'egress'],
    ],
  );
  assert.deepEqual(out.flows[0]?.policies, ['default/backend-api']);
  // --dump adds every endpoint's policy and the ipcache (what the map writer and translator read).
  const d = meshd('policy', 'trace', '--scenario', join('examples', 'trace', 'demo-scenario.yaml'), '-o', 'json', '--dump');
  const dumped = JSON.parse(d.stdout.trim().split('\n').pop() ?? '') as { endpoints: Array<{ endpointId: string }>; ipcache: Array<{ prefix: string }> };
  assert.deepEqual(dumped.endpoints.map((e) => e.endpointId).sort(), ['default/backend', 'default/frontend', 'kube-system/coredns']);
  assert.ok(dumped.ipcache.some((c) => c.prefix === '140.82.112.5/32'));
});

test('trace without --scenario, or with a bad scenario, fails clearly', (t) => {
  const none = meshd('policy', 'trace');
  assert.equal(none.status, 2);
  assert.match(none.stderr, /^MESHD_CLI_USAGE: /);
  const sub = meshd('policy', 'frobnicate');
  assert.equal(sub.status, 2);
  assert.match(sub.stderr, /^MESHD_CLI_USAGE: /);
  const dir = mkdtempSync(join(tmpdir(), 'meshd-policy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 's.yaml');
  writeFileSync(file, 'flows: [{src: a/b, dst: c/d, dport: "x"}]\nendpoint: []\n');
  const r = meshd('policy', 'trace', '--scenario', file);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /flows\[0\]\.dport/);
  assert.match(r.stderr, /endpoint: unknown field "endpoint"/);
});
