// Builds native/ with node-gyp against the headers that came with this Node
// (no header download: the machine has no route to the internet). Skips the
// build when the addon is newer than every source file.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const out = join(nativeDir, 'build', 'Release', 'meshd_native.node');
const sources = [join(nativeDir, 'binding.gyp'), ...readdirSync(join(nativeDir, 'src')).map((f) => join(nativeDir, 'src', f))];
const force = process.argv.includes('--force');

if (!force && existsSync(out)) {
  const built = statSync(out).mtimeMs;
  if (sources.every((s) => statSync(s).mtimeMs <= built)) process.exit(0);
}

const nodedir = resolve(process.execPath, '..', '..');
if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
  console.error(`build-native: Node headers not found under ${nodedir}/include/node; install the nodejs headers`);
  process.exit(1);
}
const gyp = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const env = { ...process.env, npm_config_nodedir: nodedir };
const run = (args) => execFileSync(process.execPath, [gyp, ...args, `--nodedir=${nodedir}`, '--loglevel=error'], { cwd: nativeDir, env, stdio: ['ignore', 'ignore', 'inherit'] });
if (!existsSync(join(nativeDir, 'build', 'Makefile'))) run(['configure']);
run(['build', `-j${Math.max(1, (await import('node:os')).availableParallelism())}`]);
