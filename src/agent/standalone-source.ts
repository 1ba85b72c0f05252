/**
 * Standalone mode: a directory of YAML/JSON manifests stands in for the
 * Kubernetes API. Files are read whole; a file is the unit of change.
 *
 * - Every document is parsed by its kind's module (src/k8s). A file with any
 *   bad document is rejected whole: each problem is reported (file, document
 *   index, object, field path) and the objects the file defined before stay
 *   in force unchanged.
 * - A valid file's objects are diffed against what it defined before: only
 *   changed objects are upserted, and objects it no longer defines are deleted.
 * - An object defined by two files is a conflict: the later file is rejected.
 *
 * The directory is watched (fs.watch, debounced) and also rescanned on a
 * timer, because fs.watch can miss events on some filesystems. Scans run one
 * at a time; a scan that throws (or whose batch handler throws) is reported
 * as a problem and the next scan runs as usual. The files' state is updated
 * before their batch is handed over, so a batch whose handler failed is not
 * delivered again.
 */
import type { SourceStatus } from '../api/status.js';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { isResourceKind, parseResource, refOf, resourceKey, type Resource, type ResourceKey, type ResourceRef } from '../k8s/kinds.js';
import type { ResourceEvent, ResourceHandlers, ResourceSource, SourceProblem } from './resource-source.js';

interface FileState {
  digest: string;
  objects: Map<ResourceKey, { ref: ResourceRef; object: Resource; digest: string }>;
}

export interface StandaloneOptions {
  dir: string;
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
  private handlers: ResourceHandlers | null = null;

  constructor(private readonly opts: StandaloneOptions) {}

  async start(handlers: ResourceHandlers): Promise<void> {
    this.handlers = handlers;
    await this.rescan();
    this.watcher = watch(this.opts.dir, { recursive: false }, () => this.schedule());
    this.timer = setInterval(() => this.schedule(), this.opts.rescanMs ?? 2_000);
    this.timer.unref();
  }

  status(): SourceStatus {
    return { type: 'standalone', dir: this.opts.dir };
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

  /**
   * Rescans now; resolves when the resulting batch has been handled, rejects
   * if this scan failed. Either way the failure is reported through
   * onProblems and later scans run.
   */
  rescan(): Promise<void> {
    const run = this.scanning.then(() => this.scanOnce());
    this.scanning = run.catch((e: unknown) => this.reportScanFailure(e));
    return run;
  }

  private schedule(): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      // A failure is already reported by the chain (reportScanFailure); nobody else waits for this scan.
      this.rescan().catch(() => undefined);
    }, this.opts.debounceMs ?? 100);
  }

  private reportScanFailure(e: unknown): void {
    try {
      this.handlers?.onProblems([{ origin: this.opts.dir, path: [], code: 'SCAN_FAILED', message: e instanceof Error ? e.message : String(e) }]);
    } catch {
      // The problem handler itself failed: there is nowhere left to report to, and the chain must go on.
    }
  }

  private parseFile(file: string, text: string): { objects: FileState['objects'] } | { problems: SourceProblem[] } {
    const origin = relative(this.opts.dir, file) || file;
    const problems: SourceProblem[] = [];
    const objects: FileState['objects'] = new Map();
    parseAllDocuments(text).forEach((doc, document) => {
      if (doc.errors.length > 0) {
        for (const e of doc.errors) problems.push({ origin, document, path: [], code: 'YAML_SYNTAX', message: e.message });
        return;
      }
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) return; // empty document
      const r = parseResource(value);
      if (!r.ok) {
        const ref = refGuess(value);
        for (const p of r.problems) problems.push({ origin, document, ...(ref ? { ref } : {}), path: p.path, code: p.code, message: p.message });
        return;
      }
      const ref = refOf(r.value);
      const key = resourceKey(ref);
      if (objects.has(key)) problems.push({ origin, document, ref, path: ['metadata', 'name'], code: 'DUPLICATE_OBJECT', message: `${key} is defined twice in this file` });
      objects.set(key, { ref, object: r.value, digest: digestOf(JSON.stringify(value)) });
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
      handlers.onProblems([{ origin: this.opts.dir, path: [], code: 'SOURCE_UNREADABLE', message: e instanceof Error ? e.message : String(e) }]);
      return;
    }
    const owners = new Map<ResourceKey, string>();
    for (const [f, st] of this.files) for (const k of st.objects.keys()) owners.set(k, f);

    // Deleted files: their objects go.
    for (const [f, st] of [...this.files]) {
      if (present.includes(f)) continue;
      for (const [key, o] of st.objects) events.push({ type: 'delete', ref: o.ref, key, object: o.object, origin: f });
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
      const conflict = [...parsed.objects].find(([k]) => owners.has(k) && owners.get(k) !== f);
      if (conflict) {
        const [key, o] = conflict;
        problems.push({ origin: relative(this.opts.dir, f), ref: o.ref, path: [], code: 'DUPLICATE_OBJECT', message: `${key} is already defined in ${relative(this.opts.dir, owners.get(key) ?? '')}` });
        this.rejected.set(f, digest);
        continue;
      }
      for (const [key, o] of parsed.objects) {
        if (prev?.objects.get(key)?.digest !== o.digest) events.push({ type: 'upsert', ref: o.ref, key, object: o.object, origin: f });
        owners.set(key, f);
      }
      for (const [key, o] of prev?.objects ?? []) {
        if (!parsed.objects.has(key)) {
          events.push({ type: 'delete', ref: o.ref, key, object: o.object, origin: f });
          owners.delete(key);
        }
      }
      this.files.set(f, { digest, objects: parsed.objects });
    }
    if (problems.length > 0) handlers.onProblems(problems);
    if (events.length > 0) await handlers.onBatch(events);
  }
}

/** Kind and name of an object that did not parse, when both are readable, to say which object a problem is about. */
function refGuess(value: unknown): ResourceRef | undefined {
  if (typeof value !== 'object' || value === null || !('kind' in value) || !isResourceKind(value.kind)) return undefined;
  const meta = 'metadata' in value && typeof value.metadata === 'object' && value.metadata !== null ? value.metadata : {};
  const name = 'name' in meta && typeof meta.name === 'string' ? meta.name : undefined;
  if (!name) return undefined;
  const namespace = 'namespace' in meta && typeof meta.namespace === 'string' ? meta.namespace : undefined;
  return { kind: value.kind, name, ...(namespace ? { namespace } : {}) };
}
