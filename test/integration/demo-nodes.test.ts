/**
 * `meshd demo --nodes 2` (src/demo/demo-nodes.ts) as a user runs it: a child
 * process whose temp dirs live under a directory of this test (TMPDIR).
 *
 * - tunnel mode: every row of the one-node demo matches across two nodes,
 *   the output names the routing mode and which pods run on which node, and
 *   afterwards nothing of the run is left (temp dirs, namespaces, pins,
 *   cgroups, processes). Native mode runs the same way (docs/routing.md);
 *   it is left out here to keep `npm test` within its time.
 * - Ctrl-C once the pods run: demo-nodes-interrupt.test.ts.
 * - without the Kubernetes binaries: a clear message naming the setup
 *   command, exit status 1, nothing made; bad arguments are usage errors.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { leftovers, startDemo } from '../helpers/demo-run.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('meshd demo --nodes 2 --routing-mode tunnel: every row matches across two nodes, the output names the mode and the nodes, nothing is left', { timeout: 900_000 }, async (t) => {
  requirePrivileges();
  const d = startDemo(t, ['--nodes', '2', '--routing-mode', 'tunnel']);
  const code = await d.exited;
  const left = await leftovers(d);
  const out = d.lines.join('\n');
  assert.equal(code, 0, `${out}\n${d.stderr.join('\n')}`);
  assert.match(out, /^routing mode: tunnel$/m);
  assert.match(out, /^node 1 demo-node-1 +underlay 192\.168\.77\.11 +pods 10\.201\.1\.0\/24: client 10\.201\.1\.\d+, intruder 10\.201\.1\.\d+$/m);
  assert.match(out, /^node 2 demo-node-2 +underlay 192\.168\.77\.12 +pods 10\.201\.2\.0\/24: api 10\.201\.2\.\d+$/m);
  const rows = d.lines.filter((l) => / → api:\d+ /.test(l));
  assert.equal(rows.length, 9, out);
  assert.ok(rows.every((r) => r.endsWith('  ok')), rows.join('\n'));
  assert.equal(rows.filter((r) => /\s+200\s+200\s+via Envoy/.test(r)).length, 3, rows.join('\n'));
  assert.equal(rows.filter((r) => /\s+403\s+403\s+via Envoy/.test(r)).length, 3, rows.join('\n'));
  assert.equal(rows.filter((r) => /dropped\s+dropped\s+dropped in kernel\s+POLICY_\w*DENY/.test(r)).length, 2, rows.join('\n'));
  assert.match(out, /every row matches \(routing mode tunnel,/);
  assert.match(out, /^demo-node-2:\n\$ meshd observe --server unix:\/\//m);
  assert.deepEqual(left, []);
});

test('meshd demo --nodes 2 without the Kubernetes binaries says to run the setup and makes nothing; bad arguments are usage errors', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'meshd-demo-cache-'));
  t.after(() => rmSync(empty, { recursive: true, force: true }));
  const d = startDemo(t, ['--nodes', '2'], { MESHD_CACHE_DIR: empty });
  assert.equal(await d.exited, 1);
  const err = d.stderr.join('\n');
  assert.match(err, /etcd, kube-apiserver, kubectl are not in .*meshd-demo-cache-.*k8s\/v[\d.]+\/bin/);
  assert.match(err, /Run the setup first .*: npm run setup/);
  assert.deepEqual(readdirSync(d.tmp), []);
  for (const [args, re] of [
    [['--nodes', '3'], /--nodes takes 1 or 2, not "3"/],
    [['--nodes', '2', '--routing-mode', 'vxlan'], /--routing-mode takes native or tunnel, not "vxlan"/],
    [['--routing-mode', 'tunnel'], /--routing-mode needs --nodes 2/],
  ] as const) {
    const u = startDemo(t, [...args]);
    assert.equal(await u.exited, 2, args.join(' '));
    assert.match(u.stderr.join('\n'), re);
  }
});
