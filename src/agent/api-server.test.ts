import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { apiGet } from '../cli/api-client.js';
import { createLogger } from '../util/log.js';
import { ApiError, ApiServer } from './api-server.js';

const quiet = createLogger({}, { write: () => undefined });

test('api server: 0600 unix socket, routes, typed errors; a stale socket is replaced, a live one is not', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-api-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'run', 'meshd.sock');

  // A stale socket left by a dead process.
  const stale = createServer();
  await new Promise<void>((r) => stale.listen(join(dir, 'stale.sock'), r));
  const api = new ApiServer(join(dir, 'stale.sock'), quiet);
  await assert.rejects(api.listen(), /another server already listens/);
  await new Promise<void>((r) => stale.close(() => r()));

  // A socket file nobody serves (its process died without unlinking it) is replaced.
  const dead = join(dir, 'dead.sock');
  spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', dead]);
  assert.ok(statSync(dead).isSocket());
  const revived = new ApiServer(dead, quiet);
  revived.route('GET', '/v1/ok', () => ({ ok: true }));
  await revived.listen();
  assert.deepEqual(await apiGet(dead, '/v1/ok'), { ok: true });
  await revived.close();

  const server = new ApiServer(sock, quiet);
  server.route('GET', '/v1/echo', (q) => ({ name: q.get('name') }));
  server.route('GET', '/v1/fail', () => {
    throw new ApiError(404, 'ENDPOINT_NOT_FOUND', 'no endpoint x');
  });
  await server.listen();
  t.after(() => server.close());
  assert.equal(statSync(sock).mode & 0o777, 0o600);
  assert.deepEqual(await apiGet(sock, '/v1/echo?name=a'), { name: 'a' });
  await assert.rejects(apiGet(sock, '/v1/fail'), /404: no endpoint x/);
  await assert.rejects(apiGet(sock, '/v1/nothing'), /404/);
  await assert.rejects(apiGet(join(dir, 'absent.sock'), '/v1/echo'), /is "meshd agent" running/);

  // Not a socket: never removed.
  const file = join(dir, 'plain');
  writeFileSync(file, 'x');
  await assert.rejects(new ApiServer(file, quiet).listen(), /not a socket/);
});
