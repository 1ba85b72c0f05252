/**
 * `meshd demo --nodes 2` (src/demo/demo-nodes.ts) as a user runs it: a child
 * process whose temp dirs live under a directory of this test (TMPDIR).
 *
 * - tunnel mode: every row of the one-node demo matches across two nodes,
 *   the output names the routing mode and which pods run on which node, and
 *   afterwards nothing of the run is left (temp dirs, namespaces, pins,
 *   cgroups, processes). Native mode runs the same way (docs/routing.md);
 *   it is left out here to keep `npm test` within its time.
 * - Ctrl-C once the pods run: exit status 130 and nothing left.
 * - without the Kubernetes binaries: a clear message naming the setup
 *   command, exit status 1, nothing made; bad arguments are usage errors.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { requirePrivileges } from '../helpers/privileged.js';

const MESHD = repoPath('bin', 'meshd.mjs');

interface DemoRun {
  pid: number;
  tmp: string;
  lines: string[];
  stderr: string[];
  exited: Promise<number | null>;
  /** Resolves once a line of stdout matches. */
  line(re: RegExp): Promise<string>;
  kill(signal: NodeJS.Signals): void;
}

/** Starts `meshd demo args`; the test's cleanup kills it if it still runs and removes its TMPDIR. */
function startDemo(t: { after(fn: () => void): void }, args: string[], env: NodeJS.ProcessEnv = {}): DemoRun {
  const tmp = mkdtempSync(join(tmpdir(), 'meshd-demo-test-'));
  const child = spawn(process.execPath, [MESHD, 'demo', ...args], { env: { ...process.env, TMPDIR: tmp, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    child.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });
  const lines: string[] = [];
  const stderr: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters.filter((x) => x.re.test(l))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(l);
    }
  });
  createInterface({ input: child.stderr }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | null>((r) => child.once('exit', (code, signal) => r(code ?? (signal ? 128 : null))));
  return {
    pid: child.pid ?? 0,
    tmp,
    lines,
    stderr,
    exited,
    line: (re) => {
      const seen = lines.find((l) => re.test(l));
      return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ re, resolve }));
    },
    kill: (signal) => void child.kill(signal),
  };
}

/** What of the run is still there: files under its TMPDIR, namespaces, pins, cgroups and processes with its marks or its TMPDIR. */
async function leftovers(d: DemoRun): Promise<string[]> {
  const left: string[] = readdirSync(d.tmp).map((f) => join(d.tmp, f));
  const tag = new RegExp(`^m(nn|kl)${d.pid % 100000}\\d`);
  left.push(...(await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => tag.test(n)));
  for (const dir of ['/sys/fs/bpf', '/sys/fs/cgroup/unified']) {
    if (!existsSync(dir)) continue;
    left.push(...readdirSync(dir).filter((n) => n.startsWith(`meshd-test-${d.pid}-`) || n.startsWith(`meshd-dev-${d.pid}-`)).map((n) => join(dir, n)));
  }
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    let cmd = '';
    let env = '';
    try {
      cmd = readFileSync(join('/proc', p, 'cmdline'), 'utf8').replaceAll('\0', ' ');
      env = readFileSync(join('/proc', p, 'environ'), 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // Every process the demo started inherits its TMPDIR, also those whose command line names none of its files.
    if (cmd.includes(d.tmp) || env.split('\0').includes(`TMPDIR=${d.tmp}`)) left.push(`process ${p}: ${cmd.slice(0, 200)}`);
  }
  return left;
}

test('meshd demo --nodes 2 --routing-mode tunnel: every row matches across two nodes, the output names the mode and the nodes, nothing is left', { timeout: 900_000 }, async (t) => {
  requirePrivileges();
  const d = startDemo(t, ['--nodes', '2', '--routing-mode', 'tunnel']);
  const code = await d.exited;
  const left = await leftovers(d);
  const out = d.lines.join('\n');
  assert.equal(code, 0, `${out}\n${d.stderr.join('\n')}`);
  assert.match(out, /^routing mode: tunnel$/m);
  assert.match(out, /^node 1 demo-node-1 +underlay 192\.168\.77\.11 +pods 10\.201\.1\.0\/24: client 10\.201\.1\.\d+, intruder 10\.201\.1\.\d+$/m);
  assert.match(out, /^node 2 demo-node-2 +underlay 192\.168\.77\.12 +pods 10\.201\.2\.0\/24: api 10\.201\.2\.\d+$/m);
  const rows = d.lines.filter((l) => / → api:\d+ /.test(l));
  assert.equal(rows.length, 9, out);
  assert.ok(rows.every((r) => r.endsWith('  ok')), rows.join('\n'));
  assert.equal(rows.filter((r) => /\s+200\s+200\s+via Envoy/.test(r)).length, 3, rows.join('\n'));
  assert.equal(rows.filter((r) => /\s+403\s+403\s+via Envoy/.test(r)).length, 3, rows.join('\n'));
  assert.equal(rows.filter((r) => /dropped\s+dropped\s+dropped in kernel\s+POLICY_\w*DENY/.test(r)).length, 2, rows.join('\n'));
  assert.match(out, /every row matches \(routing mode tunnel,/);
  assert.match(out, /^demo-node-2:\n\$ meshd observe --server unix:\/\//m);
  assert.deepEqual(left, []);
});

test('meshd demo --nodes 2: Ctrl-C once the pods run removes everything and exits 130', { timeout: 900_000 }, async (t) => {
  requirePrivileges();
  const d = startDemo(t, ['--nodes', '2', '--routing-mode', 'tunnel']);
  const first = await Promise.race([d.line(/^node 2 demo-node-2 /), d.exited.then((c) => `exited ${String(c)}`)]);
  assert.match(first, /^node 2 /, `${d.lines.join('\n')}\n${d.stderr.join('\n')}`);
  d.kill('SIGINT');
  assert.equal(await d.exited, 130, d.stderr.join('\n'));
  assert.deepEqual(await leftovers(d), []);
});

test('meshd demo --nodes 2 without the Kubernetes binaries says to run the setup and makes nothing; bad arguments are usage errors', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'meshd-demo-cache-'));
  t.after(() => rmSync(empty, { recursive: true, force: true }));
  const d = startDemo(t, ['--nodes', '2'], { MESHD_CACHE_DIR: empty });
  assert.equal(await d.exited, 1);
  const err = d.stderr.join('\n');
  assert.match(err, /etcd, kube-apiserver, kubectl are not in .*meshd-demo-cache-.*k8s\/v[\d.]+\/bin/);
  assert.match(err, /Run the setup first .*: npm run setup/);
  assert.deepEqual(readdirSync(d.tmp), []);
  for (const [args, re] of [
    [['--nodes', '3'], /--nodes takes 1 or 2, not "3"/],
    [['--nodes', '2', '--routing-mode', 'vxlan'], /--routing-mode takes native or tunnel, not "vxlan"/],
    [['--routing-mode', 'tunnel'], /--routing-mode needs --nodes 2/],
  ] as const) {
    const u = startDemo(t, [...args]);
    assert.equal(await u.exited, 2, args.join(' '));
    assert.match(u.stderr.join('\n'), re);
  }
});
