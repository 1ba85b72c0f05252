// Runs the compiled tests with node's built-in test runner, whose summary
// closes the output. Unit tests sit beside the code (src/**/x.test.ts, xds/…);
// tests that need root and the kernel sit under test/integration.
//   node scripts/run-tests.mjs [--unit | --integration] [filter…]
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const dist = join(root, 'dist');
const args = process.argv.slice(2);
const only = args.includes('--unit') ? 'unit' : args.includes('--integration') ? 'integration' : 'all';
const filters = args.filter((a) => !a.startsWith('--'));

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'node_modules') continue;
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const integrationDir = join(dist, 'test', 'integration') + sep;
const files = walk(dist, [])
  .filter((f) => (only === 'all' ? true : only === 'integration' ? f.startsWith(integrationDir) : !f.startsWith(integrationDir)))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort((a, b) => Number(a.startsWith(integrationDir)) - Number(b.startsWith(integrationDir)) || a.localeCompare(b));

if (files.length === 0) {
  console.error('run-tests: no compiled test files found under dist/ (did the build run?)');
  process.exit(1);
}
// What the machine holds before the run, to find what tests leaked afterwards.
const netnsNow = () => {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return new Set((r.stdout ?? '').split('\n').map((l) => l.split(' ')[0]).filter(Boolean));
};
const testDirs = () =>
  ['/sys/fs/bpf', '/sys/fs/cgroup/unified'].flatMap((d) => {
    try {
      return readdirSync(d).filter((n) => n.startsWith('meshd-test-')).map((n) => join(d, n));
    } catch {
      return [];
    }
  });
const netnsBefore = netnsNow();
const dirsBefore = new Set(testDirs());

console.error(`run-tests: ${files.length} test files (${only})`);
const r = spawnSync(
  process.execPath,
  ['--test', '--test-reporter=spec', '--test-timeout=600000', ...files.map((f) => relative(root, f))],
  { cwd: root, stdio: 'inherit', env: { ...process.env, MESHD_TEST: '1' } },
);

// Leak report: tests must remove what they create; anything left is named here (on stderr) and
// removed, so one leaking test neither hides nor disturbs the next run.
const leakedNs = [...netnsNow()].filter((n) => !netnsBefore.has(n));
const leakedDirs = testDirs().filter((d) => !dirsBefore.has(d));
if (leakedNs.length + leakedDirs.length > 0) {
  console.error(`run-tests: LEAK: tests left behind ${[...leakedNs.map((n) => `netns ${n}`), ...leakedDirs].join(', ')}; removing them`);
  for (const n of leakedNs) spawnSync('ip', ['netns', 'del', n]);
  for (const d of leakedDirs) {
    if (d.startsWith('/sys/fs/cgroup/')) spawnSync('rmdir', [d]);
    else rmSync(d, { recursive: true, force: true });
  }
}
process.exit(r.status ?? 1);
