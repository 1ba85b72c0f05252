/**
 * Preparing a unix socket path for a server (the agent's local API, the CNI
 * endpoint API, the access-log server): the directory is created 0700, a live
 * server on the path is never displaced, a stale socket (its process died) is
 * removed, and something that is not a socket is never touched.
 */
import { existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';

export class SocketPathError extends Error {
  constructor(
    readonly code: 'SOCKET_IN_USE' | 'NOT_A_SOCKET',
    message: string,
  ) {
    super(message);
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
  if (!lstatSync(path).isSocket()) throw new SocketPathError('NOT_A_SOCKET', `${what}: ${path} exists and is not a socket; refusing to replace it`);
  if (await socketInUse(path)) throw new SocketPathError('SOCKET_IN_USE', `${what}: another server already listens on ${path} (is another agent running?)`);
  unlinkSync(path);
}
