// Runs the compiled tests with node's built-in test runner, whose summary
// closes the output. Unit tests sit beside the code (src/**/x.test.ts, xds/…);
// tests that need root and the kernel sit under test/integration.
//   node scripts/run-tests.mjs [--unit | --integration] [filter…]
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearInterval, setInterval } from 'node:timers';

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
// A compiled test whose source was moved or deleted is stale output of an earlier build: not run.
const hasSource = (f) => existsSync(join(root, relative(dist, f)).replace(/\.js$/, '.ts'));
const files = walk(dist, [])
  .filter(hasSource)
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
      // no bpffs or no cgroup v1/v2 hybrid mount here: no test can have left anything there
      return [];
    }
  });
// Policy-routing rules (both families), one line each without its priority's padding.
const rulesNow = () =>
  ['-4', '-6'].flatMap((fam) =>
    (spawnSync('ip', [fam, 'rule', 'show'], { encoding: 'utf8' }).stdout ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map((l) => `${fam} ${l}`),
  );
const netnsBefore = netnsNow();
const rulesBefore = new Set(rulesNow());
const dirsBefore = new Set(testDirs());
// The agent's default pin directory: no test may pin there (each has its own bpf.root).
const DEFAULT_PINS = '/sys/fs/bpf/meshd';
const defaultPinsBefore = existsSync(DEFAULT_PINS);

// The processes of this run (the test files run in children of `node --test`), polled while it
// runs: test helpers put their process id into the names of what they create, so what another
// run on the same machine creates meanwhile is neither reported nor removed as ours.
const ours = new Set();
let childrenKnown = true;
function collect(pid) {
  let kids;
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch (e) {
    // ENOENT: the process has exited meanwhile (nothing to collect); anything else: no such file on this kernel
    if (e?.code !== 'ENOENT') childrenKnown = false;
    return;
  }
  for (const k of kids) {
    ours.add(k);
    collect(k);
  }
}
// Network namespaces: test helpers record each one they create in this run's list
// (src/devcluster/netns.ts addTestNetns), so the check never touches another run's.
const netnsLogDir = mkdtempSync(join(tmpdir(), 'meshd-test-netns-'));
const netnsLog = join(netnsLogDir, 'created');
const netnsOfThisRun = () => {
  try {
    return new Set(readFileSync(netnsLog, 'utf8').split('\n').filter(Boolean));
  } catch {
    return new Set();
  }
};
// A rule of this run: the proxy's default policy routing (table 2004) that was not there before,
// or a per-run one of test/helpers/l7-world.ts (table 40000 + pid % 20000 of one of our processes).
// Table 2004's rule is one per host, shared by every agent on it: while another test run or
// benchmark is running on the machine, it may be theirs, and removing it would break their proxies.
const ancestors = () => {
  const out = new Set();
  for (let pid = process.pid; pid > 1; ) {
    out.add(pid);
    try {
      pid = Number(/^\d+ \(.*\) \S+ (\d+)/s.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? 0);
    } catch {
      break;
    }
  }
  return out;
};
const othersRunning = () => {
  const mine = ancestors();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || mine.has(Number(d)) || ours.has(Number(d))) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes('scripts/run-tests.mjs') || /dist\/bench\/[^/]+\.js/.test(cmd)) return true;
  }
  return false;
};
let sharedRuleChecked = true;
const ruleOfOurs = (line) => {
  const table = Number(/ lookup (\d+)/.exec(line)?.[1] ?? NaN);
  if (table === 2004) {
    if (othersRunning()) sharedRuleChecked = false;
    return sharedRuleChecked;
  }
  return table >= 40000 && table < 60000 && (!childrenKnown || [...ours].some((pid) => 40000 + (pid % 20000) === table));
};
const dirOfOurs = (d) => {
  const m = /^meshd-test-(\d+)-/.exec(d.split('/').pop() ?? '');
  return !childrenKnown || (m !== null && ours.has(Number(m[1])));
};

// Two test files run at a time (MESHD_TEST_CONCURRENCY; 1 runs them one by one): on two cores,
// much of a file's time is spent waiting (a kube-apiserver starting, an Envoy, timeouts). Node's
// runner takes the files in path order whatever order they are given in.
const concurrency = Math.max(1, Number(process.env.MESHD_TEST_CONCURRENCY ?? '2') || 1);

console.error(`run-tests: ${files.length} test files (${only}), ${concurrency} at a time`);
// Per test file; MESHD_TEST_TIMEOUT_MS raises it for long suites (npm run test:chaos has a 30-minute run).
const timeoutMs = Number(process.env.MESHD_TEST_TIMEOUT_MS ?? '600000');
const child = spawn(process.execPath, ['--test', '--test-reporter=spec', `--test-timeout=${timeoutMs}`, `--test-concurrency=${concurrency}`, ...files.map((f) => relative(root, f))], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, MESHD_TEST: '1', MESHD_TEST_NETNS_LOG: netnsLog },
});
const poll = setInterval(() => collect(child.pid), 100);
const [code] = await once(child, 'exit');
clearInterval(poll);

// Leak report: tests must remove what they create. Anything of this run left behind is named
// here (on stderr), removed, so that it does not disturb the next run, and fails this run: a
// test that leaks is a failing test even when its assertions passed.
const created = netnsOfThisRun();
rmSync(netnsLogDir, { recursive: true, force: true });
const leakedNs = [...netnsNow()].filter((n) => !netnsBefore.has(n) && created.has(n));
const leakedDirs = testDirs().filter((d) => !dirsBefore.has(d) && dirOfOurs(d));
if (!defaultPinsBefore && existsSync(DEFAULT_PINS)) leakedDirs.push(DEFAULT_PINS);
const leakedRules = rulesNow().filter((r) => !rulesBefore.has(r) && ruleOfOurs(r));
if (!sharedRuleChecked) console.error('run-tests: the proxies\' shared policy-routing rule (table 2004) was not checked: another test run or benchmark is running on this machine');
const leaked = leakedNs.length + leakedDirs.length + leakedRules.length > 0;
if (leaked) {
  console.error(`run-tests: LEAK: tests left behind ${[...leakedNs.map((n) => `netns ${n}`), ...leakedDirs, ...leakedRules.map((r) => `ip rule ${r}`)].join(', ')}; removing them; the run fails`);
  for (const r of leakedRules) {
    // "-4 8516:\tfrom all fwmark 0xb00/0xf00 lookup 40516" → ip -4 rule del priority 8516 from all fwmark … lookup 40516
    const m = /^(-[46]) (\d+):\s+(.*)$/.exec(r);
    if (m) spawnSync('ip', [m[1], 'rule', 'del', 'priority', m[2], ...m[3].split(/\s+/)]);
  }
  for (const n of leakedNs) spawnSync('ip', ['netns', 'del', n]);
  for (const d of leakedDirs) {
    if (d.startsWith('/sys/fs/cgroup/')) spawnSync('rmdir', [d]);
    else rmSync(d, { recursive: true, force: true });
  }
}
const status = code ?? 1; // killed by a signal: a failed run
process.exit(status !== 0 ? status : leaked ? 1 : 0);
