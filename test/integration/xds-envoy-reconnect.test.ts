/**
 * The control plane restarts (same unix socket path): Envoy keeps serving
 * with what it has, reconnects, and resynchronises. In delta mode it reports
 * what it holds (initial_resource_versions), so only what changed meanwhile
 * is sent again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startEnvoy } from '../helpers/xds-envoy.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { MemoryLogger } from '../../xds/log.js';
import { XdsServer } from '../../xds/server.js';
import type { SnapshotInput } from '../../xds/snapshot.js';
import { edsCluster, endpoints, listener, routeConfig, upstream } from './xds-behavior.js';

for (const mode of ['sotw', 'delta'] as const) {
  test(`xDS ${mode}: Envoy survives a control-plane restart and resynchronises`, async (t) => {
    requirePrivileges();
    const dir = mkdtempSync(join(tmpdir(), `meshd-xds-restart-${mode}-`));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const sock = `unix:${join(dir, 'xds.sock')}`;
    const a = await upstream(t, 'A');
    const b = await upstream(t, 'B');
    const snap = (version: string, extra: boolean): SnapshotInput => ({
      version,
      resources: {
        clusters: [edsCluster('a'), ...(extra ? [edsCluster('b')] : [])],
        endpoints: [endpoints('a', a.port), ...(extra ? [endpoints('b', b.port)] : [])],
        listeners: [listener('l1', 'r1')],
        routes: [routeConfig('r1', extra ? [['/a', 'a'], ['/b', 'b']] : [['/a', 'a']])],
      },
    });
    const nodeId = `restart-${mode}`;

    const first = new XdsServer({ log: new MemoryLogger() });
    const bound = await first.listen(sock);
    first.setSnapshot(nodeId, snap('v1', false));
    const envoy = await startEnvoy({ xds: bound.address, mode, nodeId });
    t.after(() => envoy.stop());
    await first.waitForAck(nodeId, 'v1', { timeoutMs: 15_000 });
    const port = await envoy.listenerPort('l1');
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/a`)).text(), 'A /a');

    await first.close();
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/a`)).text(), 'A /a', 'Envoy keeps serving without its control plane');

    // a new server process would start with a new cache: same content as before plus cluster b and a route to it
    const log = new MemoryLogger();
    const second = new XdsServer({ log });
    t.after(() => second.close());
    await second.listen(sock);
    second.setSnapshot(nodeId, snap('v2', true));
    await second.waitForAck(nodeId, 'v2', { timeoutMs: 20_000 });
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/b`)).text(), 'B /b');
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/a`)).text(), 'A /a');
    const clusterResponses = log.entries.filter((e) => e.msg === 'response' && e.fields.type === 'clusters');
    if (mode === 'delta') {
      // Envoy told us it holds a (same content): only b travels
      assert.deepEqual(clusterResponses.map((e) => e.fields.resources), [1]);
    } else {
      assert.deepEqual(clusterResponses.map((e) => e.fields.resources), [2], 'SotW always sends the whole set');
    }
  });
}
