/**
 * What one ADD made, on disk, keyed by the spec's primary key
 * (network, CNI_CONTAINERID, CNI_IFNAME). DEL, CHECK and GC read it to know
 * what to undo or verify even when the runtime passes no prevResult and the
 * namespace is gone. Records are written atomically (temp file + rename), so
 * a reader sees the old record, the new one, or none.
 *
 *   const store = new AttachmentStore(stateDir, 'meshd');
 *   store.write(record); store.read(key); store.remove(key); store.list();
 */
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod';
import { describeIssues } from './cni-spec.js';
import { errno, readdirIfExists } from '../util/fs-errors.js';

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

  constructor(stateDir: string, network: string) {
    this.dir = join(stateDir, 'attachments', encodeURIComponent(network));
  }

  private file(key: AttachmentKey): string {
    // Container IDs are [A-Za-z0-9_.-]; the ifname is encoded so that any
    // legal interface name maps to one file name.
    return join(this.dir, `${key.containerId}@${encodeURIComponent(key.ifname)}.json`);
  }

  write(record: AttachmentRecord): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.file(record);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
    renameSync(tmp, file);
  }

  read(key: AttachmentKey): AttachmentRecord | undefined {
    return this.readFile(this.file(key));
  }

  private readFile(file: string): AttachmentRecord | undefined {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if (errno(e) === 'ENOENT') return undefined;
      throw e;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new Error(`${file}: not valid JSON`);
    }
    const parsed = AttachmentRecordSchema.safeParse(raw);
    if (!parsed.success) throw new Error(`${file}: ${describeIssues(parsed.error)}`);
    return parsed.data;
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
