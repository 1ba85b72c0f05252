import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { apiRoutes } from '../api/index.js';
import { defineRoute, NoBody, NoQuery, timestamp, uint64 } from '../api/route.js';
import { apiGet, callApi } from '../cli/api-client.js';
import { isMeshdError, MeshdError } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import { ApiServer } from './api-server.js';

const quiet = createLogger({}, { write: () => undefined });

const echo = defineRoute({ method: 'GET', path: '/v1/echo', query: z.object({ name: z.string().min(1) }), body: NoBody, response: z.object({ name: z.string() }) });
const clock = defineRoute({
  method: 'GET',
  path: '/v1/clock',
  query: NoQuery,
  body: NoBody,
  response: z.object({ at: timestamp, ns: uint64 }),
});
const sum = defineRoute({ method: 'POST', path: '/v1/sum', query: NoQuery, body: z.object({ xs: z.array(z.number()) }), response: z.object({ sum: z.number() }) });
const fail = defineRoute({ method: 'GET', path: '/v1/fail', query: NoQuery, body: NoBody, response: z.object({}) });
const crash = defineRoute({ method: 'GET', path: '/v1/crash', query: NoQuery, body: NoBody, response: z.object({}) });

test('api server: 0600 unix socket; a stale socket is replaced, a live one and a non-socket are not', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-api-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  const live = createServer();
  await new Promise<void>((r) => live.listen(join(dir, 'live.sock'), r));
  await assert.rejects(new ApiServer(join(dir, 'live.sock'), quiet).listen(), (e) => isMeshdError(e, 'MESHD_SOCKET_IN_USE'));
  await new Promise<void>((r) => live.close(() => r()));

  // A socket file nobody serves (its process died without unlinking it) is replaced.
  const dead = join(dir, 'dead.sock');
  spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', dead]);
  assert.ok(statSync(dead).isSocket());
  const revived = new ApiServer(dead, quiet);
  revived.route(echo, ({ query }) => ({ name: query.name }));
  await revived.listen();
  t.after(() => revived.close());
  assert.equal(statSync(dead).mode & 0o777, 0o600);
  assert.deepEqual(await callApi(dead, echo, { query: { name: 'a' } }), { name: 'a' });

  const file = join(dir, 'plain');
  writeFileSync(file, 'x');
  await assert.rejects(new ApiServer(file, quiet).listen(), (e) => isMeshdError(e, 'MESHD_SOCKET_NOT_A_SOCKET'));
});

test('api server: query, body and response go through the route schemas; errors come back coded', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-api-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'run', 'meshd.sock');
  const server = new ApiServer(sock, quiet);
  server.route(echo, ({ query }) => ({ name: query.name }));
  // The handler returns what it holds (a Date, a bigint); the wire carries strings.
  server.route(clock, () => ({ at: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)), ns: 2n ** 63n }));
  server.route(sum, ({ body }) => ({ sum: body.xs.reduce((a, b) => a + b, 0) }));
  server.route(fail, () => {
    throw new MeshdError('MESHD_TEST_GONE', 'no such thing', { kind: 'not-found' });
  });
  server.route(crash, () => {
    throw new TypeError('boom');
  });
  // A handler whose value drifted from the schema (what `conform` in routes.ts guards against for loose agent views).
  server.route(apiRoutes.identities, () => JSON.parse('{"identities": [{"id": "1", "labels": [], "scope": "reserved"}]}'));
  await server.listen();
  t.after(() => server.close());

  assert.deepEqual(await callApi(sock, clock), { at: '2026-01-02T03:04:05.000Z', ns: '9223372036854775808' });
  assert.deepEqual(await callApi(sock, sum, { body: { xs: [1, 2, 3] } }), { sum: 6 });

  const coded = async (p: Promise<unknown>, code: string, kind: string) =>
    assert.rejects(p, (e: unknown) => isMeshdError(e, code) && e.kind === kind && (e instanceof Error ? e.message : '') !== '');
  await coded(callApi(sock, fail), 'MESHD_TEST_GONE', 'not-found');
  await coded(callApi(sock, crash), 'MESHD_API_INTERNAL', 'failed');
  await coded(apiGet(sock, '/v1/nothing'), 'MESHD_API_NO_ROUTE', 'not-found');
  await coded(apiGet(sock, '/v1/echo'), 'MESHD_API_REQUEST_INVALID', 'invalid');
  // A client that sends a body of the wrong shape (the route with its body schema loosened on this side only).
  await coded(callApi(sock, { ...sum, body: z.unknown() }, { body: { xs: 'no' } }), 'MESHD_API_REQUEST_INVALID', 'invalid');
  await coded(callApi(sock, apiRoutes.identities), 'MESHD_API_RESPONSE_INVALID', 'failed');
  // …and names the route and the field path for whoever reads it.
  await assert.rejects(callApi(sock, apiRoutes.identities), (e) => isMeshdError(e, 'MESHD_API_RESPONSE_INVALID') && /GET \/v1\/identities: .*identities\[0\]\.id: /.test(e.message));
  await coded(apiGet(join(dir, 'absent.sock'), '/v1/echo'), 'MESHD_AGENT_UNREACHABLE', 'unavailable');
});
