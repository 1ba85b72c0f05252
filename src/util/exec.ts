/**
 * Running system tools (ip, tc, iptables, bpftool) with argument arrays,
 * never a shell. Failures carry the command line and the tool's stderr.
 */
import { execFile } from 'node:child_process';
import { MeshdError } from './errors.js';

/** MESHD_COMMAND_FAILED: a tool exited non-zero, was killed or could not be started. */
export class CommandError extends MeshdError {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super('MESHD_COMMAND_FAILED', `${argv.join(' ')} failed (exit ${exitCode ?? 'signal'}): ${stderr.trim()}`);
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const exit = typeof err.code === 'number' ? err.code : null;
          reject(new CommandError([cmd, ...args], exit, stderr || err.message));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like run() but resolves false instead of throwing. */
export async function succeeds(cmd: string, args: readonly string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    // Failing is the answer asked for; the reason does not matter to the caller.
    return false;
  }
}
