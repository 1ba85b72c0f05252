/**
 * The one error base of meshd. Every error meshd raises on purpose extends
 * `MeshdError`: callers branch on `code` (a stable string such as
 * `MESHD_CONFIG_INVALID`, never the message), and the CLI prints
 * `code: message` and picks its exit status from the error's `kind`.
 *
 *   class ConfigError extends MeshdError {
 *     constructor(message: string, readonly field: string) {
 *       super('MESHD_CONFIG_INVALID', message, { kind: 'invalid' });
 *     }
 *   }
 *   try { … } catch (e) { if (isMeshdError(e, 'MESHD_CONFIG_INVALID')) … }
 *
 * This module imports nothing, so every package of the repository (xds/
 * included) can depend on it.
 */

/**
 * What went wrong, coarsely, for exit statuses and API status codes:
 * - usage: the command line was wrong (unknown flag, missing argument);
 * - invalid: an input (file, manifest, request body, config key) was refused;
 * - not-found: the thing asked for does not exist;
 * - conflict: the request clashes with existing state (a socket in use, a pin of another shape);
 * - unavailable: a peer (the agent, Envoy, the kernel) did not answer or refused for now;
 * - failed: the operation itself failed (a syscall, a command, a corrupt state).
 */
export type ErrorKind = 'usage' | 'invalid' | 'not-found' | 'conflict' | 'unavailable' | 'failed';

/** The CLI's exit status per kind (0 is success, 1 a failed operation, 2 a usage error as usual for CLIs). */
export const EXIT_STATUS: Readonly<Record<ErrorKind, number>> = {
  failed: 1,
  usage: 2,
  invalid: 3,
  'not-found': 4,
  conflict: 5,
  unavailable: 6,
};

export interface MeshdErrorOptions {
  kind?: ErrorKind;
  cause?: unknown;
}

export class MeshdError extends Error {
  readonly kind: ErrorKind;

  constructor(
    /** Stable identifier; tests and callers compare this, never the message. */
    readonly code: string,
    message: string,
    opts: MeshdErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.kind = opts.kind ?? 'failed';
    this.name = new.target.name;
  }
}

export function isMeshdError(e: unknown, code?: string): e is MeshdError {
  return e instanceof MeshdError && (code === undefined || e.code === code);
}

/** The exit status the CLI returns for an error (1 for anything that is not a MeshdError). */
export function exitStatusOf(e: unknown): number {
  return e instanceof MeshdError ? EXIT_STATUS[e.kind] : 1;
}

/** `code: message` for a MeshdError, the message otherwise; always one line. */
export function describeError(e: unknown): string {
  const msg = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');
  return e instanceof MeshdError ? `${e.code}: ${msg}` : msg;
}
