import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoPath } from '../util/paths.js';

const bin = repoPath('bin', 'meshd.mjs');
const meshd = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 20_000 });

test('meshd xds serve: usage errors exit 2', () => {
  const r = meshd('xds', 'serve');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^MESHD_CLI_USAGE: .*--snapshot FILE is required/);
  const bad = meshd('xds', 'serve', '--snapshot', 'x.json', '--bogus');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^MESHD_CLI_USAGE: .*unknown option --bogus/);
  const sub = meshd('xds', 'frobnicate');
  assert.equal(sub.status, 2);
  assert.match(sub.stderr, /^MESHD_CLI_USAGE: .*unknown subcommand "frobnicate"/);
});

test('meshd xds serve: a malformed snapshot at start exits 1 naming the JSON path; a non-loopback address is refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-xds-cli-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 's.json');
  writeFileSync(file, JSON.stringify({ version: 'v1', resources: { clusters: [{ '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name: 'c', type: 'STATICC' }] } }));
  const r = meshd('xds', 'serve', '--snapshot', file, '--listen', '127.0.0.1:0');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /\$\.resources\.clusters\[0\]\.type: "STATICC" is not a value of envoy\.config\.cluster\.v3\.Cluster\.DiscoveryType/);
  writeFileSync(file, JSON.stringify({ version: 'v1', resources: {} }));
  const open = meshd('xds', 'serve', '--snapshot', file, '--listen', '0.0.0.0:18000');
  assert.equal(open.status, 1);
  assert.match(open.stderr, /only loopback addresses are served/);
});
