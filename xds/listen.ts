/**
 * Where the xDS server listens: a unix socket (the default; only root and
 * Envoy on the same node can reach it) or a loopback TCP address.
 *
 *   parseListenAddress('unix:/run/meshd/xds.sock')
 *   parseListenAddress('127.0.0.1:18000')
 *
 * A unix socket path is prepared safely: its directory is created (0700) if
 * missing; an existing socket nobody answers on is a leftover and is removed;
 * a live one (another server) or a non-socket file is an error, never deleted.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, resolve } from 'node:path';
import { XdsError } from './errors.js';

export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export const DEFAULT_LISTEN = 'unix:/run/meshd/xds.sock';

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function parseListenAddress(s: string): ListenAddress {
  if (s.startsWith('unix:')) {
    const path = s.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '') throw new XdsError('MESHD_XDS_LISTEN_ADDRESS', `"${s}": unix: needs a path`);
    return { kind: 'unix', path: resolve(path) };
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !Number.isInteger(port) || port > 65535) {
    throw new XdsError('MESHD_XDS_LISTEN_ADDRESS', `"${s}": expected unix:PATH or HOST:PORT`);
  }
  if (!isLoopback(host)) {
    throw new XdsError('MESHD_XDS_LISTEN_ADDRESS', `"${s}": only loopback addresses are served (xDS carries the node's whole proxy configuration)`);
  }
  return { kind: 'tcp', host, port };
}

/** grpc-js bind target for an address. */
export function grpcTarget(a: ListenAddress): string {
  if (a.kind === 'unix') return `unix:${a.path}`;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function answers(path: string): Promise<boolean> {
  return new Promise((res) => {
    const sock = connect({ path });
    const timer = setTimeout(() => {
      sock.destroy();
      res(true); // a listener that accepts but is slow is still alive
    }, 500);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      res(true);
    });
    sock.once('error', () => {
      clearTimeout(timer);
      res(false);
    });
  });
}

/** Makes `path` bindable: creates the directory, removes a stale socket. */
export async function prepareUnixSocket(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if (typeof e === 'object' && e !== null && 'code' in e && e.code === 'ENOENT') return; // nothing there
    throw e;
  }
  if (!st.isSocket()) throw new XdsError('MESHD_XDS_NOT_A_SOCKET', `${path} exists and is not a socket; not replacing it`);
  if (await answers(path)) throw new XdsError('MESHD_XDS_SOCKET_IN_USE', `${path}: another server is listening on it`);
  unlinkSync(path);
}

/** Owner-only access to the socket: xDS config is the node's whole proxy policy. */
export function restrictUnixSocket(path: string): void {
  chmodSync(path, 0o600);
}
