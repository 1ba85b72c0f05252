/**
 * A sequence of map writes that can be undone: every write first reads what
 * the key held, so a kernel refusal half-way (a full map, ENOMEM) restores
 * the exact previous content in reverse order. Not atomic for concurrent
 * readers — the order of the writes is what keeps each intermediate state
 * safe (see diffPolicyMapState) — but all-or-nothing for the writer.
 *
 *   const tx = new MapTransaction();
 *   try { tx.put(fd, k1, v1); tx.delete(fd, k2); } catch (e) { tx.rollback(); throw e; }
 */
import { BPF_ANY, isBpfError, native } from '../../../native/index.js';

export class MapTransaction {
  private readonly undo: Array<() => void> = [];
  private writes = 0;

  put(fd: number, key: Buffer, value: Buffer): void {
    const prev = native.mapLookup(fd, key, value.length);
    native.mapUpdate(fd, key, value, BPF_ANY);
    this.writes += 1;
    this.undo.push(() => (prev ? native.mapUpdate(fd, key, prev, BPF_ANY) : native.mapDelete(fd, key)));
  }

  /** valueSize: the map's value size (to remember the value for a rollback). */
  delete(fd: number, key: Buffer, valueSize: number): void {
    const prev = native.mapLookup(fd, key, valueSize);
    if (!prev) return;
    native.mapDelete(fd, key);
    this.writes += 1;
    this.undo.push(() => native.mapUpdate(fd, key, prev, BPF_ANY));
  }

  get count(): number {
    return this.writes;
  }

  /** Undoes every write in reverse order; idempotent. */
  rollback(): void {
    while (this.undo.length > 0) this.undo.pop()?.();
  }
}

/** Whether a kernel error means "the map is full". */
export function isMapFull(e: unknown): boolean {
  return isBpfError(e) && (e.code === 'E2BIG' || e.code === 'ENOSPC' || e.code === 'ENOMEM');
}
