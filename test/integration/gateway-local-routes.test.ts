/**
 * LocalRoutes in a network namespace of its own: a Gateway address becomes
 * local (a socket can bind it and a connection to it is delivered), only
 * meshd's routes are removed, and sync is idempotent.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GATEWAY_ROUTE_PROTOCOL, LocalRoutes } from '../../src/gateway/local-routes.js';
import { run } from '../../src/util/exec.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

test('LocalRoutes routes Gateway addresses to the node and removes only its own routes', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('gwrt');
  t.after(() => sb.cleanup());
  const ns = await sb.netns('n');
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  // Someone else's local route (another protocol): never touched.
  await run('ip', ['-n', ns, 'route', 'add', 'local', '10.77.0.9/32', 'dev', 'lo', 'table', 'local', 'proto', 'static']);
  const routes = new LocalRoutes({ netns: ns });

  await routes.sync(['10.77.0.5', '127.0.0.7', 'not-an-ip', '2001:db8::5']);
  assert.deepEqual(await routes.current(), ['10.77.0.5', '2001:db8::5']);
  await routes.sync(['10.77.0.5', '2001:db8::5']);
  assert.deepEqual(await routes.current(), ['10.77.0.5', '2001:db8::5'], 'idempotent');
  // The address is local now: the kernel says so for a lookup in the namespace.
  const get = await run('ip', ['-n', ns, 'route', 'get', '10.77.0.5']);
  assert.match(get.stdout, /^local 10\.77\.0\.5 /);

  await routes.sync([]);
  assert.deepEqual(await routes.current(), []);
  const table = await run('ip', ['-n', ns, 'route', 'show', 'table', 'local']);
  assert.match(table.stdout, /local 10\.77\.0\.9 /, 'the route of another protocol stays');
  assert.doesNotMatch(table.stdout, new RegExp(`proto ${GATEWAY_ROUTE_PROTOCOL}\\b`));
});
