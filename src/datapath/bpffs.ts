/**
 * The BPF filesystem that holds meshd's pinned maps and links. Pins are what
 * keep the datapath enforcing across an agent restart, so the agent (and
 * setup) mount bpffs when the host has not, as Cilium's agent does.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { run } from '../util/exec.js';

export const BPFFS_ROOT = '/sys/fs/bpf';

export function isBpffsMounted(dir = BPFFS_ROOT): boolean {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => {
      const f = l.split(' ');
      return f[1] === dir && f[2] === 'bpf';
    });
}

/** Mounts bpffs at `dir` unless it already is; idempotent. */
export async function ensureBpffs(dir = BPFFS_ROOT): Promise<void> {
  if (isBpffsMounted(dir)) return;
  mkdirSync(dir, { recursive: true });
  await run('mount', ['-t', 'bpf', 'bpf', dir]);
}
