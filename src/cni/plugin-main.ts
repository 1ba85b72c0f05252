/**
 * Process entry of meshd-cni (bin/meshd-cni.mjs loads it). Reads the
 * network configuration from stdin, the CNI_* variables from the
 * environment, prints the Result or the error JSON on stdout and exits
 * non-zero on error. Imports only the plugin's own modules: a runtime starts
 * one process per ADD/DEL, so start-up time is pod start-up time.
 */
import { readFileSync } from 'node:fs';
import { runPlugin } from './plugin.js';

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch {
    return ''; // closed or absent stdin (VERSION is often called that way)
  }
}

export async function main(): Promise<number> {
  const out = await runPlugin(process.env, readStdin());
  if (out.stdout !== '') process.stdout.write(`${out.stdout}\n`);
  if (out.stderr !== '') process.stderr.write(out.stderr);
  return out.exitCode;
}
