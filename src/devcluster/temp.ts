/**
 * Temp directories, bpffs pin directories and cgroups for the development
 * cluster and the kernel tests, so that no two runs share pins or hook
 * points with each other or with a running agent. Each is removed by its
 * cleanup, which is safe to call twice.
 *
 *   const pins = tempPinDir('lb');                 // /sys/fs/bpf/meshd-test-<pid>-lb-1
 *   const cg = tempCgroup('lb');                   // <cgroup2>/meshd-test-<pid>-lb-1
 *   spawn('sh', ['-c', `echo $$ > ${cg.path}/cgroup.procs && exec ip netns exec ns client`]);
 *   pins.cleanup(); cg.cleanup();
 *
 * Names start with `meshd-test-<pid>-` under the test runner (MESHD_TEST=1,
 * whose leak check looks for that prefix) and `meshd-dev-<pid>-` otherwise.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let seq = 0;

export const CGROUP2_ROOT = '/sys/fs/cgroup/unified';

const prefix = (): string => `${process.env.MESHD_TEST === '1' ? 'meshd-test' : 'meshd-dev'}-${process.pid}`;

export interface TempDir {
  path: string;
  cleanup(): void;
}

/** A fresh temp directory, removed by the returned function. */
export function tempDir(label: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `meshd-${label}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function tempPinDir(label: string): TempDir {
  seq += 1;
  const path = join('/sys/fs/bpf', `${prefix()}-${label}-${seq}`);
  mkdirSync(path, { recursive: true });
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * A child cgroup of the cgroup2 root. cleanup() moves any process still in it
 * back to the root (a cgroup with members cannot be removed) and removes it.
 */
export function tempCgroup(label: string): TempDir {
  seq += 1;
  const path = join(CGROUP2_ROOT, `${prefix()}-${label}-${seq}`);
  mkdirSync(path);
  return {
    path,
    cleanup: () => {
      if (!existsSync(path)) return;
      const procs = readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
      for (const pid of procs) {
        try {
          writeFileSync(join(CGROUP2_ROOT, 'cgroup.procs'), pid);
        } catch {
          // the process exited meanwhile
        }
      }
      rmdirSync(path);
    },
  };
}
