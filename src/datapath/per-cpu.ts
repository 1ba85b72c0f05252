/**
 * Counters in a per-CPU array of u64 (meshd_metrics, meshd_sk_stats, the
 * socket LB's stats): a lookup returns one 8-byte value per possible CPU, and
 * the counter is their sum.
 *
 *   const counter = perCpuCounters(fd);
 *   counter(slot);   // 12n
 */
import { native, u32 } from '../../native/index.js';

/** A reader of the per-CPU array `fd`: a slot's counter summed over CPUs, 0n for a slot the array lacks. */
export function perCpuCounters(fd: number): (slot: number) => bigint {
  const cpus = native.numPossibleCpus();
  return (slot) => {
    const raw = native.mapLookup(fd, u32(slot), 8 * cpus);
    let sum = 0n;
    for (let c = 0; raw && c < cpus; c += 1) sum += raw.readBigUInt64LE(c * 8);
    return sum;
  };
}
