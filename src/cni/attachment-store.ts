/**
 * What one ADD made, on disk, keyed by the spec's primary key
 * (network, CNI_CONTAINERID, CNI_IFNAME). DEL, CHECK and GC read it to know
 * what to undo or verify even when the runtime passes no prevResult and the
 * namespace is gone. Records are written atomically (temp file + rename), so
 * a reader sees the old record, the new one, or none.
 *
 * A record that does not parse is moved aside (`<file>.corrupt-<ISO time>`)
 * and reported to `onCorrupt` (MESHD_STATE_FILE_CORRUPT); it then reads as
 * absent, so DEL falls back to the names derived from the key instead of
 * failing for ever, and GC carries on with the other records.
 *
 *   const store = new AttachmentStore(stateDir, 'meshd', { onCorrupt: (e) => log(e.message) });
 *   store.write(record); store.read(key); store.remove(key); store.list();
 */
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod';
import { errno, readdirIfExists } from '../util/fs-errors.js';
import { readStateFile, warnCorrupt, writeStateFile, type StateFileCorruptError } from '../util/state-file.js';

export const AttachmentRecordSchema = z.object({
  containerId: z.string(),
  ifname: z.string(),
  network: z.string(),
  netns: z.string(),
  /** Host side of the pod's veth (null when not known). */
  hostInterface: z.string().nullable(),
  podMac: z.string().nullable(),
  /** Addresses configured in the pod, CIDR notation. */
  ips: z.array(z.string()),
  /** meshd: addresses come from meshd's pool; otherwise the named IPAM plugin. */
  ipam: z.string(),
  /** Pool directory component for meshd IPAM (null for delegated IPAM). */
  pool: z.string().nullable(),
  chained: z.boolean(),
  createdAt: z.string(),
});
export type AttachmentRecord = z.infer<typeof AttachmentRecordSchema>;

export interface AttachmentKey {
  containerId: string;
  ifname: string;
}

export class AttachmentStore {
  readonly dir: string;
  private readonly onCorrupt: (e: StateFileCorruptError) => void;

  constructor(stateDir: string, network: string, opts: { onCorrupt?: (e: StateFileCorruptError) => void } = {}) {
    this.dir = join(stateDir, 'attachments', encodeURIComponent(network));
    this.onCorrupt = opts.onCorrupt ?? warnCorrupt;
  }

  private file(key: AttachmentKey): string {
    // Container IDs are [A-Za-z0-9_.-]; the ifname is encoded so that any
    // legal interface name maps to one file name.
    return join(this.dir, `${key.containerId}@${encodeURIComponent(key.ifname)}.json`);
  }

  write(record: AttachmentRecord): void {
    writeStateFile(this.file(record), record);
  }

  read(key: AttachmentKey): AttachmentRecord | undefined {
    return this.readFile(this.file(key));
  }

  private readFile(file: string): AttachmentRecord | undefined {
    const r = readStateFile(file, AttachmentRecordSchema);
    if (r.state === 'ok') return r.data;
    if (r.state === 'corrupt') this.onCorrupt(r.problem);
    return undefined;
  }

  remove(key: AttachmentKey): void {
    try {
      unlinkSync(this.file(key));
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw e;
    }
  }

  list(): AttachmentRecord[] {
    const names = readdirIfExists(this.dir);
    const out: AttachmentRecord[] = [];
    for (const n of names) {
      if (!n.endsWith('.json')) continue;
      const r = this.readFile(join(this.dir, n));
      if (r) out.push(r);
    }
    return out;
  }
}
