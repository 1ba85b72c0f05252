/**
 * `meshd demo --nodes 2` interrupted (src/demo/demo-nodes.ts): Ctrl-C once
 * the pods run ends it with status 130 and leaves nothing of the run (temp
 * dirs, namespaces, pins, cgroups, processes). Apart from
 * demo-nodes.test.ts so that each full run has its own time limit.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { leftovers, startDemo } from '../helpers/demo-run.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('meshd demo --nodes 2: Ctrl-C once the pods run removes everything and exits 130', { timeout: 900_000 }, async (t) => {
  requirePrivileges();
  const d = startDemo(t, ['--nodes', '2', '--routing-mode', 'tunnel']);
  const first = await Promise.race([d.line(/^node 2 demo-node-2 /), d.exited.then((c) => `exited ${String(c)}`)]);
  assert.match(first, /^node 2 /, `${d.lines.join('\n')}\n${d.stderr.join('\n')}`);
  d.kill('SIGINT');
  assert.equal(await d.exited, 130, d.stderr.join('\n'));
  assert.deepEqual(await leftovers(d), []);
});
