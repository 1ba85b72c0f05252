/**
 * Standalone mode: a directory of YAML/JSON manifests stands in for the
 * Kubernetes API. Files are read whole; a file is the unit of change.
 *
 * - A file that fails to parse or whose documents fail validation is reported
 *   (file, document index, field path) and the objects it defined before stay
 *   in force unchanged.
 * - A valid file's objects are diffed against what it defined before: only
 *   changed objects are upserted, and objects it no longer defines are deleted.
 * - An object defined by two files is a conflict: the later file is rejected.
 *
 * The directory is watched (fs.watch, debounced) and also rescanned on a
 * timer, because fs.watch can miss events on some filesystems.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { RESOURCE_KINDS, resourceKey, type ResourceEvent, type ResourceKey, type ResourceRef, type ResourceSource, type SourceProblem } from './resource-source.js';

const CLUSTER_SCOPED = new Set(['CiliumClusterwideNetworkPolicy', 'Namespace', 'Node']);

const envelope = z
  .object({
    apiVersion: z.string().min(1),
    kind: z.enum(RESOURCE_KINDS),
    metadata: z.object({ name: z.string().min(1), namespace: z.string().min(1).optional() }).passthrough(),
  })
  .passthrough();

/** Deep validation per kind (e.g. the policy schemas); returns problems with field paths. */
export type ObjectValidator = (obj: Record<string, unknown>) => Array<{ path: string; message: string }>;

interface FileState {
  digest: string;
  objects: Map<ResourceKey, { ref: ResourceRef; object: Record<string, unknown>; digest: string }>;
}

export interface StandaloneOptions {
  dir: string;
  validate?: ObjectValidator;
  rescanMs?: number;
  debounceMs?: number;
}

const MANIFEST = /\.(ya?ml|json)$/;

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (MANIFEST.test(e.name)) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

const digestOf = (s: string) => createHash('sha256').update(s).digest('hex');

export class StandaloneSource implements ResourceSource {
  private readonly files = new Map<string, FileState>();
  /** Digest of the last rejected content per file, so a broken file is reported once per edit. */
  private readonly rejected = new Map<string, string>();
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private scanning: Promise<void> = Promise.resolve();
  private handlers: Parameters<ResourceSource['start']>[0] | null = null;

  constructor(private readonly opts: StandaloneOptions) {}

  async start(handlers: Parameters<ResourceSource['start']>[0]): Promise<void> {
    this.handlers = handlers;
    await this.rescan();
    this.watcher = watch(this.opts.dir, { recursive: false }, () => this.schedule());
    this.timer = setInterval(() => this.schedule(), this.opts.rescanMs ?? 2_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    this.watcher = null;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.timer = this.debounce = null;
    await this.scanning;
    this.handlers = null;
  }

  /** Rescans now; resolves when the resulting batch has been handled. */
  rescan(): Promise<void> {
    this.scanning = this.scanning.then(() => this.scanOnce());
    return this.scanning;
  }

  private schedule(): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.rescan();
    }, this.opts.debounceMs ?? 100);
  }

  private parseFile(file: string, text: string): { objects: FileState['objects'] } | { problems: SourceProblem[] } {
    const rel = relative(this.opts.dir, file) || file;
    const problems: SourceProblem[] = [];
    const objects: FileState['objects'] = new Map();
    const docs = parseAllDocuments(text);
    docs.forEach((doc, i) => {
      if (doc.errors.length > 0) {
        for (const e of doc.errors) problems.push({ file: rel, document: i, message: e.message.split('\n')[0] ?? e.message });
        return;
      }
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) return; // empty document
      const env = envelope.safeParse(value);
      if (!env.success) {
        for (const iss of env.error.issues) problems.push({ file: rel, document: i, path: iss.path.join('.'), message: iss.message });
        return;
      }
      const obj = env.data as Record<string, unknown> & z.infer<typeof envelope>;
      const scoped = !CLUSTER_SCOPED.has(obj.kind);
      const ref: ResourceRef = { kind: obj.kind, name: obj.metadata.name, ...(scoped ? { namespace: obj.metadata.namespace ?? 'default' } : {}) };
      for (const p of this.opts.validate?.(obj) ?? []) problems.push({ file: rel, document: i, path: p.path, message: p.message });
      const key = resourceKey(ref);
      if (objects.has(key)) problems.push({ file: rel, document: i, path: 'metadata.name', message: `${key} is defined twice in this file` });
      objects.set(key, { ref, object: obj, digest: digestOf(JSON.stringify(obj)) });
    });
    return problems.length > 0 ? { problems } : { objects };
  }

  private async scanOnce(): Promise<void> {
    const handlers = this.handlers;
    if (!handlers) return;
    const events: ResourceEvent[] = [];
    const problems: SourceProblem[] = [];
    let present: string[];
    try {
      present = listFiles(this.opts.dir);
    } catch (e) {
      handlers.onProblems([{ file: this.opts.dir, message: e instanceof Error ? e.message : String(e) }]);
      return;
    }
    const owners = new Map<ResourceKey, string>();
    for (const [f, st] of this.files) for (const k of st.objects.keys()) owners.set(k, f);

    // Deleted files: their objects go.
    for (const [f, st] of [...this.files]) {
      if (present.includes(f)) continue;
      for (const [key, o] of st.objects) events.push({ type: 'delete', ref: o.ref, key, origin: f });
      this.files.delete(f);
    }
    for (const f of present) {
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch {
        continue; // vanished between listing and reading; the next scan sees it gone
      }
      const digest = digestOf(text);
      const prev = this.files.get(f);
      if (prev?.digest === digest || this.rejected.get(f) === digest) continue;
      const parsed = this.parseFile(f, text);
      if ('problems' in parsed) {
        problems.push(...parsed.problems);
        this.rejected.set(f, digest);
        continue; // previous objects of this file stay in force
      }
      this.rejected.delete(f);
      const conflict = [...parsed.objects.keys()].find((k) => owners.has(k) && owners.get(k) !== f);
      if (conflict) {
        problems.push({ file: relative(this.opts.dir, f), message: `${conflict} is already defined in ${relative(this.opts.dir, owners.get(conflict) ?? '')}` });
        this.rejected.set(f, digest);
        continue;
      }
      for (const [key, o] of parsed.objects) {
        if (prev?.objects.get(key)?.digest !== o.digest) events.push({ type: 'upsert', ref: o.ref, key, object: o.object, origin: f });
        owners.set(key, f);
      }
      for (const [key, o] of prev?.objects ?? []) {
        if (!parsed.objects.has(key)) {
          events.push({ type: 'delete', ref: o.ref, key, origin: f });
          owners.delete(key);
        }
      }
      this.files.set(f, { digest, objects: parsed.objects });
    }
    if (problems.length > 0) handlers.onProblems(problems);
    if (events.length > 0) await handlers.onBatch(events);
  }
}
