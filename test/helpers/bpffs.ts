/**
 * Per-test bpffs directories and cgroups, so kernel tests never share pins or
 * hook points with each other or with a running agent. Both are removed by
 * the returned cleanup, which is safe to call twice.
 *
 *   const pins = tempPinDir('lb');                 // /sys/fs/bpf/meshd-test-<pid>-lb-1
 *   t.after(() => pins.cleanup());
 *   const cg = tempCgroup('lb');                   // <cgroup2>/meshd-test-<pid>-lb-1
 *   t.after(() => cg.cleanup());
 *   spawn('sh', ['-c', `echo $$ > ${cg.path}/cgroup.procs && exec ip netns exec ns client`]);
 *   const before = pinnedMaps(pins.path, 'meshd_lb_');  // compare after an operation that must change nothing
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap } from '../../native/index.js';

let seq = 0;

export const CGROUP2_ROOT = '/sys/fs/cgroup/unified';

export interface TempDir {
  path: string;
  cleanup(): void;
}

export function tempPinDir(label: string): TempDir {
  seq += 1;
  const path = join('/sys/fs/bpf', `meshd-test-${process.pid}-${label}-${seq}`);
  mkdirSync(path, { recursive: true });
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * A child cgroup of the cgroup2 root. cleanup() moves any process still in it
 * back to the root (a cgroup with members cannot be removed) and removes it.
 */
export function tempCgroup(label: string): TempDir {
  seq += 1;
  const path = join(CGROUP2_ROOT, `meshd-test-${process.pid}-${label}-${seq}`);
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

/** Map types whose entry count means something (hash, per-CPU hash, LRU hashes, LPM trie); arrays always hold every key, ring buffers have none. */
const KEYED_TYPES = new Set([1, 5, 9, 10, 11]);

/**
 * The maps pinned directly under dir whose name starts with prefix, as
 * "name#kernel id:max_entries:entries" (entries -1 for other types): equal before
 * and after means the same maps (not re-created) with as many entries.
 */
export function pinnedMaps(dir: string, prefix: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(prefix))
    .sort()
    .map((f) => {
      const m = BpfMap.fromPin(join(dir, f));
      try {
        return `${f}#${m.info.id}:${m.info.maxEntries}:${KEYED_TYPES.has(m.info.type) ? m.dump().length : -1}`;
      } finally {
        m.close();
      }
    });
}
