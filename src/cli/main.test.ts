import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { repoPath } from '../util/paths.js';

const bin = repoPath('bin', 'meshd.mjs');

test('meshd --version prints the version from package.json', () => {
  const pkg = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string };
  const out = execFileSync(process.execPath, [bin, '--version'], { encoding: 'utf8' });
  assert.equal(out.trim(), pkg.version);
});

test('npx --no-install meshd resolves the package bin from the repository root', () => {
  const pkg = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string };
  const out = execFileSync('npx', ['--no-install', 'meshd', '--version'], { cwd: repoPath(), encoding: 'utf8' });
  assert.equal(out.trim(), pkg.version);
});

test('meshd help lists doctor; an unknown command exits 2 with help on stderr', () => {
  const help = execFileSync(process.execPath, [bin, 'help'], { encoding: 'utf8' });
  assert.match(help, /doctor/);
  const bad = spawnSync(process.execPath, [bin, 'no-such-command'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown command "no-such-command"/);
});
