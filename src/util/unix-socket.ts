/**
 * Preparing a unix socket path for a server (the agent's local API, the CNI
 * endpoint API, the access-log server): the directory is created 0700, a live
 * server on the path is never displaced, a stale socket (its process died) is
 * removed, and something that is not a socket is never touched.
 */
import { existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { MeshdError } from './errors.js';

/**
 * MESHD_SOCKET_IN_USE: a live server answers on the path;
 * MESHD_SOCKET_NOT_A_SOCKET: the path exists and is something else.
 */
export class SocketPathError extends MeshdError {
  constructor(
    code: 'MESHD_SOCKET_IN_USE' | 'MESHD_SOCKET_NOT_A_SOCKET',
    message: string,
    readonly path: string,
  ) {
    super(code, message, { kind: 'conflict' });
  }
}

/** True if something accepts connections on the unix socket. */
export function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** `what` names the server in errors, e.g. "endpoint API". */
export async function prepareSocketPath(path: string, what = 'server'): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new SocketPathError('MESHD_SOCKET_NOT_A_SOCKET', `${what}: ${path} exists and is not a socket; refusing to replace it`, path);
  if (await socketInUse(path)) throw new SocketPathError('MESHD_SOCKET_IN_USE', `${what}: another server already listens on ${path} (is another agent running?)`, path);
  unlinkSync(path);
}
