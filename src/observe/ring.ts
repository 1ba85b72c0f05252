/**
 * The bounded flow store: a ring of `capacity` flows (Cilium's
 * hubble.eventBufferCapacity, 2^n − 1) addressed by a sequence number that
 * only grows. Writers never wait and never allocate beyond the ring; a reader
 * holds a position and learns, when the writer lapped it, how many flows it
 * lost (Hubble reports them as a LostEvent from HUBBLE_RING_BUFFER).
 *
 *   const ring = new FlowRing<Flow>(4095);
 *   ring.write(flow);
 *   const r = ring.read(pos);   // { item } | { lost: n, next } | undefined (nothing yet)
 */
import { MeshdError } from '../util/errors.js';

export class RingCapacityError extends MeshdError {
  constructor(capacity: number) {
    super('MESHD_OBSERVE_RING_CAPACITY', `hubble.eventBufferCapacity: ${capacity} is not a power of two minus one between 1 and 65535 (e.g. 4095)`, { kind: 'invalid' });
  }
}

/** Cilium's rule for hubble.eventBufferCapacity: 2^n − 1 with 1 <= n <= 16. */
export function isValidCapacity(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535 && ((n + 1) & n) === 0;
}

export type RingRead<T> = { item: T } | { lost: number; next: number };

export class FlowRing<T> {
  private readonly buf: Array<T | undefined>;
  /** Sequence number of the next write; also the number of items ever written. */
  private seq = 0;

  constructor(readonly capacity: number) {
    if (!isValidCapacity(capacity)) throw new RingCapacityError(capacity);
    this.buf = new Array<T | undefined>(capacity);
  }

  write(item: T): void {
    this.buf[this.seq % this.capacity] = item;
    this.seq += 1;
  }

  /** Position the next write takes. */
  get head(): number {
    return this.seq;
  }

  /** Oldest position still held. */
  get tail(): number {
    return Math.max(0, this.seq - this.capacity);
  }

  get size(): number {
    return this.seq - this.tail;
  }

  /** Items ever written. */
  get written(): number {
    return this.seq;
  }

  /** Items overwritten before anyone could have read them from the store (written − capacity). */
  get overwritten(): number {
    return this.tail;
  }

  /** The item at `pos`, or how many were lost since `pos` (with the position to resume at), or undefined when `pos` is not written yet. */
  read(pos: number): RingRead<T> | undefined {
    if (pos >= this.seq) return undefined;
    const tail = this.tail;
    if (pos < tail) return { lost: tail - pos, next: tail };
    return { item: this.buf[pos % this.capacity] as T };
  }

  /** Direct access for scans that already checked `tail <= pos < head`. */
  at(pos: number): T {
    return this.buf[pos % this.capacity] as T;
  }
}
