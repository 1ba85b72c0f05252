/**
 * `meshd demo` as a child process for the demo tests, with its temp dirs
 * under a TMPDIR of the test's, and what a run left behind.
 *
 *   const d = startDemo(t, ['--nodes', '2']);   // killed and its TMPDIR removed in t.after
 *   await d.line(/^node 2 /); d.kill('SIGINT'); await d.exited;
 *   assert.deepEqual(await leftovers(d), []);
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';

const MESHD = repoPath('bin', 'meshd.mjs');

export interface DemoRun {
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
export function startDemo(t: { after(fn: () => void): void }, args: string[], env: NodeJS.ProcessEnv = {}): DemoRun {
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
export async function leftovers(d: DemoRun): Promise<string[]> {
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
