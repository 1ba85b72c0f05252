/**
 * The supervisor against a real Envoy: ready detection over the admin unix
 * socket, restart after a crash, graceful stop. The bootstrap here is static
 * (one direct-response listener) so the test needs no xDS server.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { listenerPort } from '../helpers/envoy.js';
import { EnvoySupervisor } from '../../envoy/supervisor.js';

function staticBootstrap(adminSock: string): Record<string, unknown> {
  return {
    node: { id: 'supervisor-test', cluster: 'meshd' },
    admin: { address: { pipe: { path: adminSock } } },
    static_resources: {
      listeners: [
        {
          name: 'hello',
          address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
          enable_reuse_port: false,
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'hello',
                    route_config: {
                      virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'hello from envoy' } } }] }],
                    },
                    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
                  },
                },
              ],
            },
          ],
        },
      ],
    },
  };
}

test('supervisor: starts Envoy, restarts it after a crash, stops it gracefully', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-envoy-sup-'));
  const sup = new EnvoySupervisor({
    bootstrap: staticBootstrap(join(dir, 'admin.sock')),
    workDir: dir,
    drainTimeS: 0,
    backoff: { initialMs: 100 },
  });
  t.after(async () => {
    await sup.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  await sup.start();
  const s1 = sup.status();
  assert.equal(s1.state, 'ready');
  assert.match(s1.version ?? '', /^1\.40\./);
  assert.ok(s1.pid);
  const port1 = await listenerPort(sup, 'hello');
  const r1 = await request(`http://127.0.0.1:${port1}/`);
  assert.equal(await r1.body.text(), 'hello from envoy');

  const readyAgain = new Promise<void>((resolve) => sup.once('ready', () => resolve()));
  process.kill(s1.pid, 'SIGKILL');
  await readyAgain;
  const s2 = sup.status();
  assert.equal(s2.state, 'ready');
  assert.equal(s2.restarts, 1);
  assert.notEqual(s2.pid, s1.pid);
  assert.equal(s2.lastExit?.signal, 'SIGKILL');
  const r2 = await request(`http://127.0.0.1:${await listenerPort(sup, 'hello')}/`);
  assert.equal(await r2.body.text(), 'hello from envoy');

  const pid = s2.pid ?? 0;
  await sup.stop();
  await sup.stop();
  assert.equal(sup.status().state, 'stopped');
  assert.throws(() => process.kill(pid, 0), /ESRCH/);
});

test('supervisor: a bootstrap Envoy rejects fails start() with Envoy\'s reason and leaves no process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-envoy-sup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bad = staticBootstrap(join(dir, 'admin.sock'));
  (bad.static_resources as { listeners: Array<Record<string, unknown>> }).listeners[0]!.no_such_field = 1;
  const sup = new EnvoySupervisor({ bootstrap: bad, workDir: dir, drainTimeS: 0, readyTimeoutMs: 20_000 });
  await assert.rejects(sup.start(), (e: unknown) => e instanceof Error && /exited before it was ready/.test(e.message) && /no_such_field/.test(e.message));
  assert.equal(sup.status().state, 'stopped');
  assert.equal(sup.status().pid, null);
});
