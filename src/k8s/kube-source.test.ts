/**
 * What KubeSource does when the API server is not there, on a real refused
 * connection (a loopback port nobody listens on). Everything it does with a
 * server is tested against a real kube-apiserver: test/integration/k8s-source.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { isMeshdError } from '../util/errors.js';
import { KubeClient, resolveKubeConfig } from './client.js';
import { KubeSource } from './kube-source.js';

/** A loopback port that was free a moment ago: connecting to it is refused. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  await new Promise((r) => srv.close(r));
  assert.ok(addr !== null && typeof addr === 'object');
  return addr.port;
}

test('no API server: start() waits (nothing delivered), the state says disconnected with the error, stop() makes start() reject', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-kube-source-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfigPath = join(dir, 'kubeconfig');
  const server = `https://127.0.0.1:${await closedPort()}`;
  writeFileSync(
    kubeconfigPath,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );
  const source = new KubeSource({ client: new KubeClient(resolveKubeConfig({ kubeconfigPath, env: {} }).kubeConfig), backoff: { initialMs: 50, maxMs: 200 } });
  assert.equal(source.connection().state, 'connecting');
  let batches = 0;
  const started = source.start({ onBatch: () => void batches++, onProblems: () => undefined });
  const outcome = started.then(
    () => 'resolved',
    (e: unknown) => e,
  );
  const deadline = Date.now() + 10_000;
  while (source.connection().state !== 'disconnected' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const conn = source.connection();
  assert.equal(conn.state, 'disconnected');
  assert.equal(conn.server, server);
  assert.equal(conn.lastError?.code, 'MESHD_K8S_UNREACHABLE');
  assert.ok(Object.values(conn.kinds).every((k) => !k.synced));
  await new Promise((r) => setTimeout(r, 300)); // several retries later, still nothing
  assert.equal(batches, 0);
  await source.stop();
  assert.ok(isMeshdError(await outcome, 'MESHD_K8S_SOURCE_STOPPED'));
  await source.stop(); // idempotent
});
