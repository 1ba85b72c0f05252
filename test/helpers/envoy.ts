/**
 * A real Envoy for tests, run by the project's own supervisor, plus a small
 * loopback HTTP upstream. Everything is stopped and removed in t.after.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvoySupervisor } from '../../envoy/supervisor.js';

interface After {
  after(fn: () => Promise<void> | void): void;
}

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  remote: string;
}

/** An HTTP server on 127.0.0.1 that answers "upstream METHOD URL" and records what it saw. */
export async function httpUpstream(t: After, host = '127.0.0.1'): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, remote: req.socket.remoteAddress ?? '' });
    res.end(`upstream ${req.method} ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

export { freePort } from '../../src/devcluster/free-port.js';

/** Starts Envoy with the bootstrap built for a fresh admin socket; returns the supervisor and its work dir. */
export async function startEnvoy(t: After, bootstrapFor: (adminSock: string, dir: string) => Record<string, unknown>): Promise<{ sup: EnvoySupervisor; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-envoy-'));
  const sup = new EnvoySupervisor({ bootstrap: bootstrapFor(join(dir, 'admin.sock'), dir), workDir: dir, drainTimeS: 0 });
  t.after(async () => {
    await sup.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await sup.start();
  return { sup, dir };
}

/** The port of the named (or only) listener, from the admin API. */
export async function listenerPort(sup: EnvoySupervisor, name?: string): Promise<number> {
  const r = await sup.adminRequest('/listeners?format=json');
  const parsed = JSON.parse(r.body) as { listener_statuses: Array<{ name: string; local_address: { socket_address: { port_value: number } } }> };
  const l = name === undefined ? parsed.listener_statuses[0] : parsed.listener_statuses.find((s) => s.name === name);
  assert.ok(l, `listener ${name ?? '(any)'} is up`);
  return l.local_address.socket_address.port_value;
}

/** A STATIC cluster to one loopback port, HTTP/1.1 upstream. */
export function staticCluster(name: string, port: number): Record<string, unknown> {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
  };
}
