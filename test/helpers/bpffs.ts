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
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap } from '../../native/index.js';

export { CGROUP2_ROOT, tempCgroup, tempPinDir, type TempDir } from '../../src/devcluster/temp.js';

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
