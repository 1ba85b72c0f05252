/**
 * Narrowing Node's filesystem errors without `any`: the errno code of a
 * caught value, and a directory listing where "no such directory" means empty.
 */
import { readdirSync } from 'node:fs';

/** "ENOENT", "EEXIST", … of a caught error, or undefined. */
export function errno(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

/** The names in `dir`, or [] when it does not exist; other errors are thrown. */
export function readdirIfExists(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (e) {
    if (errno(e) === 'ENOENT') return [];
    throw e;
  }
}
