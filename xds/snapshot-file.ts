/**
 * Snapshot files: the JSON `meshd xds serve` reads.
 *
 *   {"version": "v1", "resources": {"clusters": [...], "endpoints": [...],
 *    "listeners": [...], "routes": [...], "secrets": [...]}}
 *
 * each resource in Envoy's JSON with "@type". Loading validates everything
 * (shape with zod, every resource through the protobuf codec, references)
 * and reports problems with their JSON path ("$.resources.clusters[1].type").
 * Watching reloads on change and keeps the previous snapshot when the new
 * content is bad.
 */
import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { z } from 'zod';
import { XdsError } from './errors.js';
import { type Snapshot, buildSnapshot, checkConsistency } from './snapshot.js';

const resourceList = z.array(z.record(z.string(), z.unknown()));

const snapshotFile = z.strictObject({
  version: z.string().min(1),
  resources: z.strictObject({
    clusters: resourceList.optional(),
    endpoints: resourceList.optional(),
    listeners: resourceList.optional(),
    routes: resourceList.optional(),
    secrets: resourceList.optional(),
  }),
});

function jsonPath(path: ReadonlyArray<PropertyKey>): string {
  return `$${path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}`;
}

function fail(file: string, problems: string[]): never {
  throw new XdsError('MESHD_XDS_SNAPSHOT_FILE', `${file}: ${problems[0] ?? 'invalid'}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, problems);
}

/** Parses and fully validates snapshot text; `file` only names it in errors. */
export function parseSnapshotText(text: string, file: string): Snapshot {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    fail(file, [`$: not JSON (${e instanceof Error ? e.message : String(e)})`]);
  }
  const parsed = snapshotFile.safeParse(raw);
  if (!parsed.success) fail(file, parsed.error.issues.map((i) => `${jsonPath(i.path)}: ${i.message}`));
  let snap: Snapshot;
  try {
    snap = buildSnapshot(parsed.data);
    checkConsistency(snap);
  } catch (e) {
    if (e instanceof XdsError) fail(file, e.problems.map((p) => `$.${p}`));
    throw e;
  }
  return snap;
}

export function loadSnapshotFile(file: string): Snapshot {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    fail(file, [`cannot read: ${e instanceof Error ? e.message : String(e)}`]);
  }
  return parseSnapshotText(text, file);
}

export interface SnapshotFileWatcher {
  close(): void;
}

/**
 * Calls `onSnapshot` whenever the file's content changes to a valid snapshot
 * and `onError` when it changes to an invalid one. Watches the directory, so
 * editors that replace the file (write + rename) are seen too.
 */
export function watchSnapshotFile(
  file: string,
  onSnapshot: (s: Snapshot) => void,
  onError: (e: XdsError) => void,
  opts: { debounceMs?: number } = {},
): SnapshotFileWatcher {
  const abs = resolve(file);
  let lastHash = '';
  try {
    lastHash = createHash('sha256').update(readFileSync(abs)).digest('hex');
  } catch {
    // appears later
  }
  let timer: NodeJS.Timeout | undefined;
  const reload = (): void => {
    timer = undefined;
    let buf: Buffer;
    try {
      buf = readFileSync(abs);
    } catch {
      return; // mid-replace or deleted: the current snapshot stays
    }
    const hash = createHash('sha256').update(buf).digest('hex');
    if (hash === lastHash) return;
    lastHash = hash;
    try {
      onSnapshot(parseSnapshotText(buf.toString('utf8'), file));
    } catch (e) {
      if (e instanceof XdsError) onError(e);
      else onError(new XdsError('MESHD_XDS_SNAPSHOT_FILE', `${file}: ${e instanceof Error ? e.message : String(e)}`));
    }
  };
  const w: FSWatcher = watch(dirname(abs), (_event, name) => {
    if (name !== null && name !== basename(abs)) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(reload, opts.debounceMs ?? 100);
  });
  return {
    close() {
      if (timer) clearTimeout(timer);
      w.close();
    },
  };
}
