/**
 * The proxy's policy routing (src/proxy/policy-routing.ts): idempotent setup,
 * complete removal. Uses its own table and priority, removed in t.after.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ensurePolicyRouting, removePolicyRouting } from '../../src/proxy/policy-routing.js';
import { run } from '../../src/util/exec.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('policy routing for the proxy mark: set up twice = once; removed completely', async (t) => {
  requirePrivileges();
  const o = { mark: 0xb00, mask: 0xf00, table: 45000 + (process.pid % 10000), priority: 7000 + (process.pid % 1000) };
  t.after(() => removePolicyRouting(o));
  const rules = async () => (await run('ip', ['-4', 'rule', 'show', 'priority', String(o.priority)])).stdout.split('\n').filter((l) => l.includes(`lookup ${o.table}`));
  const routes = async () => (await run('ip', ['-4', 'route', 'show', 'table', String(o.table)])).stdout.trim();
  await ensurePolicyRouting(o);
  await ensurePolicyRouting(o);
  const have = await rules();
  assert.equal(have.length, 1, have.join('\n'));
  assert.match(have[0] ?? '', /fwmark 0xb00\/0xf00 lookup/);
  assert.match(await routes(), /^local default dev lo/);
  await removePolicyRouting(o);
  assert.deepEqual(await rules(), []);
  assert.equal(await routes(), '');
});
