import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMeshdError } from '../src/util/errors.js';
import { isXdsError } from './errors.js';
import { parseListenAddress, prepareUnixSocket } from './listen.js';
import { XdsServer } from './server.js';
import { MemoryLogger } from './log.js';

test('parseListenAddress: unix paths and loopback host:port; anything else is refused', () => {
  assert.deepEqual(parseListenAddress('unix:/run/x.sock'), { kind: 'unix', path: '/run/x.sock' });
  assert.deepEqual(parseListenAddress('127.0.0.1:18000'), { kind: 'tcp', host: '127.0.0.1', port: 18000 });
  assert.deepEqual(parseListenAddress('[::1]:0'), { kind: 'tcp', host: '::1', port: 0 });
  assert.deepEqual(parseListenAddress('localhost:5'), { kind: 'tcp', host: 'localhost', port: 5 });
  for (const bad of ['0.0.0.0:18000', '10.0.0.1:1', 'unix:', '127.0.0.1', '127.0.0.1:99999', 'x']) {
    assert.throws(() => parseListenAddress(bad), (e: unknown) => isXdsError(e, 'MESHD_XDS_LISTEN_ADDRESS'), bad);
  }
});

test('unix socket: directory created, mode 0600, stale socket replaced, live socket and regular file refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-xds-listen-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'deep', 'er', 'xds.sock');

  // a live socket: someone answers on it
  await prepareUnixSocket(path);
  const other = createServer();
  await new Promise<void>((res) => other.listen(path, res));
  const refused = new XdsServer({ log: new MemoryLogger() });
  await assert.rejects(refused.listen(`unix:${path}`), (e: unknown) => isXdsError(e, 'MESHD_XDS_SOCKET_IN_USE'));
  await refused.close();
  await new Promise<void>((res) => other.close(() => res()));

  // a stale socket: a process that bound it was killed, leaving the file behind
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(`${path}.dead`)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  assert.ok(statSync(`${path}.dead`).isSocket(), 'leftover socket exists');

  const server = new XdsServer({ log: new MemoryLogger() });
  t.after(() => server.close());
  const bound = await server.listen(`unix:${path}.dead`);
  assert.equal(bound.target, `unix:${path}.dead`);
  assert.equal(statSync(`${path}.dead`).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'deep')).mode & 0o777, 0o700);
  await assert.rejects(server.listen(`unix:${path}.other`), (e: unknown) => isXdsError(e, 'MESHD_XDS_ALREADY_LISTENING') && isMeshdError(e) && e.kind === 'conflict');

  const file = join(dir, 'not-a-socket');
  writeFileSync(file, 'keep me');
  const onFile = new XdsServer({ log: new MemoryLogger() });
  await assert.rejects(onFile.listen(`unix:${file}`), (e: unknown) => isXdsError(e, 'MESHD_XDS_NOT_A_SOCKET'));
  await onFile.close();
  assert.equal(statSync(file).size, 7, 'file untouched');

  await server.close();
  assert.throws(() => statSync(`${path}.dead`), { code: 'ENOENT' }, 'socket removed on close');
  await server.close(); // idempotent
});
