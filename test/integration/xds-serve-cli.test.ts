/**
 * `meshd xds serve` as a user runs it: a real Envoy gets the file's
 * resources, picks up edits, and a malformed edit is rejected with its JSON
 * path while the previous snapshot keeps being served.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startEnvoy } from '../helpers/xds-envoy.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { until } from '../../src/devcluster/eventually.js';
import { repoPath } from '../../src/util/paths.js';
import { activeListeners, listener, routeConfig, staticCluster, upstream } from './xds-behavior.js';

test('meshd xds serve: serves a snapshot file to Envoy, reloads edits, rejects a malformed edit with its JSON path', async (t) => {
  requirePrivileges();
  const dir = mkdtempSync(join(tmpdir(), 'meshd-xds-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = await upstream(t, 'A');
  const b = await upstream(t, 'B');
  const file = join(dir, 'snapshot.json');
  const write = (doc: unknown): void => {
    // replace atomically, like an editor would
    writeFileSync(`${file}.tmp`, typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2));
    renameSync(`${file}.tmp`, file);
  };
  const snap = (version: string, routes: Array<[string, string]>, clusterB = staticCluster('b', b.port)): unknown => ({
    version,
    resources: {
      clusters: [staticCluster('a', a.port), clusterB],
      listeners: [listener('web', 'web')],
      routes: [routeConfig('web', routes)],
    },
  });
  write(snap('v1', [['/a', 'a']]));

  const sock = join(dir, 'sock', 'xds.sock');
  const child = spawn(process.execPath, [repoPath('bin', 'meshd.mjs'), 'xds', 'serve', '--snapshot', file, '--listen', `unix:${sock}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  await until('serving line', async () => (stderr.includes('serving') ? true : undefined));
  assert.match(stderr, /serving .*snapshot\.json version v1 \(clusters=2 endpoints=0 listeners=1 routes=1 secrets=0\) on unix:/);
  assert.equal(statSync(sock).mode & 0o777, 0o600, 'socket is owner-only');

  const envoy = await startEnvoy({ xds: { kind: 'unix', path: sock }, mode: 'sotw', nodeId: 'cli-node' });
  t.after(() => envoy.stop());
  const port = await until('listener web', () => envoy.listenerPort('web'));
  const get = async (path: string): Promise<string> => (await fetch(`http://127.0.0.1:${port}${path}`)).text();
  assert.equal(await until('route /a', async () => ((await get('/a')) === 'A /a' ? 'ok' : undefined)), 'ok');

  // an edit: a new route
  write(snap('v2', [['/a', 'a'], ['/b', 'b']]));
  assert.equal(await until('route /b', async () => ((await get('/b')) === 'B /b' ? 'ok' : undefined)), 'ok');
  assert.match(stderr, /reloaded .* version v2/);

  // a malformed edit: rejected with the JSON path, v2 keeps being served
  write(snap('v3', [['/', 'a']], { ...staticCluster('b', b.port), connect_timeout: 5 }));
  await until('rejection', async () => (stderr.includes('rejected') ? true : undefined));
  assert.match(stderr, /\$\.resources\.clusters\[1\]\.connect_timeout: expected a duration string/);
  write('{"version": "v4", "resources": {"clusterz": []}}');
  await until('second rejection', async () => (stderr.includes('clusterz') ? true : undefined));
  assert.match(stderr, /\$\.resources: Unrecognized key: "clusterz"/);
  assert.deepEqual(await activeListeners(envoy), new Map([['web', 'v1']]));
  assert.equal(await get('/b'), 'B /b', 'still serving v2');
  assert.equal((await fetch(`http://127.0.0.1:${port}/x`)).status, 404, 'v3 (route / → a) was never applied');

  // a valid edit afterwards is served again
  write(snap('v5', [['/', 'b']]));
  assert.equal(await until('v5 route', async () => ((await get('/x')) === 'B /x' ? 'ok' : undefined)), 'ok');

  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.match(stderr, /stopped/);
  assert.throws(() => statSync(sock), { code: 'ENOENT' }, 'socket removed on exit');
});
