/**
 * Numbered resources that test processes running at the same time must not
 * share (a pod subnet, a window of proxy ports): each is claimed with a lock
 * file created exclusively, holding the claiming process id; a lock whose
 * process is gone is taken over. Two test files run at once, and numbers
 * derived from process ids (pid % n) collide now and then.
 *
 *   const c = claim('subnet', 150);   // { index: 0…149, release() }
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export interface Claim {
  readonly index: number;
  release(): void;
  /** Whether any other claim of the kind is held by a live process (this one included). */
  others(): boolean;
}

export function claim(kind: string, count: number): Claim {
  const dir = join(tmpdir(), `meshd-test-claims-${kind}`);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const index = (process.pid + i) % count;
    const lock = join(dir, String(index));
    let fd: number;
    try {
      fd = openSync(lock, 'wx');
    } catch {
      let holder = NaN;
      try {
        holder = Number(readFileSync(lock, 'utf8').trim());
      } catch {
        continue; // released meanwhile: the next round may take it, this one moves on
      }
      // an empty file is a claim being written; a live holder (this process included) keeps it
      if (Number.isNaN(holder) || holder === 0 || alive(holder)) continue;
      rmSync(lock, { force: true });
      try {
        fd = openSync(lock, 'wx');
      } catch {
        continue; // another process took it over first
      }
    }
    writeSync(fd, String(process.pid));
    closeSync(fd);
    let held = true;
    return {
      index,
      release: () => {
        if (held) rmSync(lock, { force: true });
        held = false;
      },
      others: () =>
        readdirSync(dir).some((f) => {
          if (f === String(index)) return false;
          try {
            const holder = Number(readFileSync(join(dir, f), 'utf8').trim());
            return Number.isNaN(holder) || holder === 0 || alive(holder);
          } catch {
            return false;
          }
        }),
    };
  }
  throw new Error(`no free ${kind} among ${count} (lock files in ${dir})`);
}
