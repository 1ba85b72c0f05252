import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ENVOY_BIN_ENV, findEnvoy } from './binary.js';

function fakeExecutable(): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-envoy-'));
  const path = join(dir, 'envoy');
  writeFileSync(path, '#!/bin/sh\n', { mode: 0o755 });
  return { dir, path };
}

test('findEnvoy: an explicit configured path wins over the environment', (t) => {
  const a = fakeExecutable();
  const b = fakeExecutable();
  t.after(() => {
    rmSync(a.dir, { recursive: true });
    rmSync(b.dir, { recursive: true });
  });
  const saved = process.env[ENVOY_BIN_ENV];
  process.env[ENVOY_BIN_ENV] = b.path;
  t.after(() => {
    if (saved === undefined) delete process.env[ENVOY_BIN_ENV];
    else process.env[ENVOY_BIN_ENV] = saved;
  });
  assert.deepEqual(findEnvoy(a.path), { path: a.path, source: 'config' });
  assert.deepEqual(findEnvoy(), { path: b.path, source: 'env' });
});

test('findEnvoy: a configured path that is not executable is an error naming the key', () => {
  assert.throws(() => findEnvoy('/nonexistent/envoy'), /envoy\.binaryPath: \/nonexistent\/envoy is not an executable/);
});
