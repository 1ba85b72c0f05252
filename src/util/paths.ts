/**
 * Locations inside the meshd checkout, found from this file's own URL so that
 * nothing depends on the current directory or on an absolute path.
 *
 *   import { repoPath } from '../util/paths.js';
 *   repoPath('bpf', 'build', 'probe.o');
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MeshdError } from './errors.js';

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const parsed: unknown = JSON.parse(readFileSync(pkg, 'utf8'));
      if (typeof parsed === 'object' && parsed !== null && 'name' in parsed && parsed.name === 'meshd') return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new MeshdError('MESHD_CHECKOUT_NOT_FOUND', `meshd checkout not found above ${start}`, { kind: 'not-found' });
    dir = up;
  }
}

export const repoRoot: string = findRoot(dirname(fileURLToPath(import.meta.url)));

export function repoPath(...parts: string[]): string {
  return resolve(repoRoot, ...parts);
}

export function packageVersion(): string {
  const parsed: unknown = JSON.parse(readFileSync(repoPath('package.json'), 'utf8'));
  if (typeof parsed === 'object' && parsed !== null && 'version' in parsed && typeof parsed.version === 'string') {
    return parsed.version;
  }
  throw new MeshdError('MESHD_CHECKOUT_INVALID', `${repoPath('package.json')}: field "version" missing`, { kind: 'invalid' });
}

/** Compiled BPF object for bpf/<name>.c. */
export function bpfObjectPath(name: string): string {
  return repoPath('bpf', 'build', `${name}.o`);
}
