/**
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4): each
 * backend gets a preference permutation of the table's M slots from two
 * hashes of its name (offset, skip); backends take turns claiming their next
 * preferred free slot until the table is full. Every backend ends up with
 * about M/N slots, and removing one backend moves little more than the slots
 * it held, so most flows keep their backend.
 *
 *   const table = maglevTable([{ name: '10.0.0.1:80', id: 7 }, { name: '10.0.0.2:80', id: 9 }]);
 *   table[hash(flow) % MAGLEV_M];   // a backend id (what bpf/lib/maglev.h does)
 */
import { createHash } from 'node:crypto';
import { MAGLEV_M } from './lb-maps.js';

export interface MaglevBackend {
  /** Stable identity of the backend (e.g. "addr:port"): the permutation depends only on it. */
  name: string;
  id: number;
}

function permutationSeed(name: string, m: number): { offset: number; skip: number } {
  const h = createHash('sha256').update(name).digest();
  return { offset: h.readUInt32LE(0) % m, skip: (h.readUInt32LE(4) % (m - 1)) + 1 };
}

/** The lookup table (length m, a prime) of backend ids; all zero without backends. */
export function maglevTable(backends: readonly MaglevBackend[], m = MAGLEV_M): Uint32Array {
  const table = new Uint32Array(m);
  if (backends.length === 0) return table;
  const sorted = [...backends].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const seeds = sorted.map((b) => permutationSeed(b.name, m));
  const next = new Array<number>(sorted.length).fill(0);
  const taken = new Uint8Array(m);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < sorted.length; i++) {
      const s = seeds[i];
      const b = sorted[i];
      if (!s || !b) continue;
      let c = (s.offset + (next[i] ?? 0) * s.skip) % m;
      while (taken[c]) {
        next[i] = (next[i] ?? 0) + 1;
        c = (s.offset + (next[i] ?? 0) * s.skip) % m;
      }
      taken[c] = 1;
      table[c] = b.id;
      next[i] = (next[i] ?? 0) + 1;
      filled += 1;
      if (filled === m) return table;
    }
  }
}

/** The table as the map value bytes (struct meshd_lb_maglev). */
export function maglevBytes(table: Uint32Array): Buffer {
  const b = Buffer.alloc(table.length * 4);
  table.forEach((id, i) => b.writeUInt32LE(id, i * 4));
  return b;
}
