/**
 * JSON state files kept across restarts (the agent's endpoint registry, the
 * proxy ports): written atomically, read through a schema. A file that is
 * not JSON or not of the schema is never a crash at start-up and never
 * silently emptied: it is renamed to `<file>.corrupt-<ISO time>`, kept for
 * the operator, and reported as a StateFileCorruptError that names both
 * paths; the caller logs it and starts from what the salvage function
 * could keep (the entries that parse), or from nothing.
 *
 *   const r = readStateFile(file, schema, salvageEntries);
 *   if (r.state === 'corrupt') report(r.problem);      // r.salvaged: the entries kept
 *   writeStateFile(file, { version: 1, … });
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type * as z from 'zod';
import { MeshdError } from './errors.js';
import { errno } from './fs-errors.js';
import { createLogger } from './log.js';

/** MESHD_STATE_FILE_CORRUPT: a state file did not parse and was moved aside. */
export class StateFileCorruptError extends MeshdError {
  constructor(
    /** The state file as it was named. */
    readonly file: string,
    /** Where its content is now. */
    readonly movedTo: string,
    /** What was wrong, e.g. "not JSON" or "endpoints.0.ips: expected array", and what was kept. */
    readonly detail: string,
  ) {
    super('MESHD_STATE_FILE_CORRUPT', `${file}: ${detail}; moved aside to ${movedTo}`);
  }
}

export type StateRead<T> =
  | { state: 'missing' }
  | { state: 'ok'; data: T }
  /** `salvaged`: what the salvage function kept of a file that was JSON of the wrong shape. */
  | { state: 'corrupt'; problem: StateFileCorruptError; salvaged: T | undefined };

/** Keeps the usable part of a parsed file (`kept`) and says how many entries were lost. */
export type Salvage<T> = (raw: unknown) => { kept: T; dropped: number } | undefined;

/**
 * A free name `<file>.corrupt-<ISO time>` (with `-<n>` appended when that
 * moment is taken already): the copies of one file sort by time and an
 * earlier copy is never overwritten.
 */
export function corruptPath(file: string, now: Date = new Date()): string {
  const base = `${file}.corrupt-${now.toISOString()}`;
  let name = base;
  for (let n = 1; existsSync(name); n += 1) name = `${base}-${n}`;
  return name;
}

/**
 * Reads `file` through `schema`. A missing file is `missing`; one that does
 * not parse is moved aside (see above) and returned as `corrupt`. Any other
 * read error (permissions, I/O) is thrown: that is not the file's fault and
 * moving it would hide the cause.
 */
export function readStateFile<T>(file: string, schema: z.ZodType<T>, salvage?: Salvage<T>): StateRead<T> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (errno(e) === 'ENOENT') return { state: 'missing' };
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return moveAside<T>(file, `not JSON (${e instanceof Error ? e.message : String(e)}); nothing kept`, undefined);
  }
  const parsed = schema.safeParse(raw);
  if (parsed.success) return { state: 'ok', data: parsed.data };
  const issue = parsed.error.issues[0];
  const detail = `${issue?.path.map(String).join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`;
  const s = salvage?.(raw);
  const kept = s ? `kept what parses, dropped ${s.dropped} ${s.dropped === 1 ? 'entry' : 'entries'}` : 'nothing kept';
  return moveAside(file, `${detail}; ${kept}`, s?.kept);
}

function moveAside<T>(file: string, detail: string, salvaged: T | undefined): StateRead<T> {
  const movedTo = corruptPath(file);
  renameSync(file, movedTo);
  return { state: 'corrupt', problem: new StateFileCorruptError(file, movedTo, detail), salvaged };
}

/** Writes `value` as JSON to `file` atomically (temp file in the same directory + rename). */
export function writeStateFile(file: string, value: unknown, mode = 0o600): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, null, 2), { mode });
  renameSync(tmp, file);
}

/** The report used when a caller passes none: a warning on stderr, so a moved file is never silent. */
export function warnCorrupt(e: StateFileCorruptError): void {
  createLogger({ component: 'state' }).warn(e.message, { code: e.code, file: e.file, movedTo: e.movedTo });
}
