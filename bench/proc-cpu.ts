/**
 * CPU time of other processes, for benchmarks that split a request's cost
 * between the processes on its path (on a loaded machine a request's latency
 * is mostly waiting for a core; the CPU each process spent per request is not).
 *
 *   const before = cpuMs(pids);   // … run the load …
 *   const spent = cpuMs(pids) - before;
 */
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';

/** Kernel clock ticks per second (USER_HZ); 100 on every Linux architecture Node runs on. */
const USER_HZ = 100;

/** utime + stime of the processes, in ms (10 ms resolution); a process that is gone counts 0. */
export function cpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    let s: string;
    try {
      s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    // "pid (comm) state …": fields follow the last ')'; utime and stime are fields 14 and 15 (1-based).
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    ticks += Number(rest[11]) + Number(rest[12]);
  }
  return (ticks * 1000) / USER_HZ;
}

/** The processes running in the named network namespace (/run/netns/<name>), other than this one. */
export function pidsInNetns(name: string): number[] {
  const want = `net:[${statSync(`/run/netns/${name}`).ino}]`;
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'ip') continue;
      if (readlinkSync(`/proc/${p}/ns/net`) === want) out.push(Number(p));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out;
}
