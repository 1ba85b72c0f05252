import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { findEnvoy } from '../../envoy/binary.js';
import { buildBootstrap, XDS_CLUSTER } from '../../envoy/bootstrap.js';

/** Envoy itself is the judge: `envoy --mode validate` parses and checks the bootstrap. */
async function envoyValidates(bootstrap: Record<string, unknown>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bootstrap-'));
  try {
    const file = join(dir, 'bootstrap.json');
    writeFileSync(file, JSON.stringify(bootstrap));
    await promisify(execFile)(findEnvoy().path, ['--mode', 'validate', '-c', file, '--log-level', 'error'], { timeout: 60_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('bootstrap with ADS over a unix socket and a unix admin socket is valid for Envoy (delta)', async () => {
  const b = buildBootstrap({ nodeId: 'node-a', xds: { unix: '/run/meshd/xds.sock' }, admin: { unix: '/run/meshd/admin.sock' } });
  assert.deepEqual(b.node, { id: 'node-a', cluster: 'meshd' });
  const dyn = b.dynamic_resources as { ads_config: { api_type: string; grpc_services: Array<{ envoy_grpc: { cluster_name: string } }> } };
  assert.equal(dyn.ads_config.api_type, 'DELTA_GRPC');
  assert.equal(dyn.ads_config.grpc_services[0]?.envoy_grpc.cluster_name, XDS_CLUSTER);
  await envoyValidates(b);
});

test('bootstrap with state-of-the-world ADS over loopback TCP is valid for Envoy', async () => {
  const b = buildBootstrap({ nodeId: 'node-b', xdsMode: 'sotw', xds: { host: '127.0.0.1', port: 18000 }, admin: { host: '127.0.0.1', port: 0 } });
  assert.equal((b.dynamic_resources as { ads_config: { api_type: string } }).ads_config.api_type, 'GRPC');
  await envoyValidates(b);
});
