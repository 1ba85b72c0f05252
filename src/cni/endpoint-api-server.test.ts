import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { isMeshdError, MeshdError } from '../util/errors.js';
import { EndpointApiClient, EndpointApiError } from './endpoint-api-client.js';
import { EndpointApiServer, EndpointRejectedError, MemoryEndpointHandler } from './endpoint-api-server.js';
import type { EndpointRegistration } from './endpoint-api.js';

function socketIn(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'meshd-epapi-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return join(d, 'run', 'cni.sock');
}

const reg: EndpointRegistration = {
  containerId: 'c1',
  ifname: 'eth0',
  network: 'meshd',
  netns: '/var/run/netns/x',
  hostInterface: 'lxc0123456789ab',
  podMac: '02:00:00:00:00:01',
  ips: ['10.244.1.2/32'],
  k8s: { namespace: 'shop', name: 'web' },
  chained: false,
};

function raw(socketPath: string, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, agent: false }, (res) => {
      let b = '';
      res.on('data', (c: Buffer) => (b += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('register, get, list, remove and gc over the unix socket; the socket is 0600', async (t) => {
  const socketPath = socketIn(t);
  const server = new EndpointApiServer({ socketPath, handler: new MemoryEndpointHandler() });
  await server.start();
  t.after(() => server.close());
  assert.equal(statSync(socketPath).mode & 0o777, 0o600);
  const api = new EndpointApiClient(socketPath);
  assert.deepEqual(await api.health(), { status: 'ok', endpoints: 0 });
  const ep = await api.register(reg);
  assert.equal(ep.containerId, 'c1');
  assert.ok(ep.registeredAt);
  assert.deepEqual((await api.get(reg))?.k8s, { namespace: 'shop', name: 'web' });
  await api.register({ ...reg, containerId: 'c2' });
  assert.equal((await api.list()).length, 2);
  assert.deepEqual(await api.gc({ network: 'meshd', valid: [{ containerId: 'c1', ifname: 'eth0' }] }), { removed: [{ containerId: 'c2', ifname: 'eth0' }] });
  await api.remove(reg);
  await api.remove(reg); // idempotent
  assert.equal(await api.get(reg), undefined);
});

test('invalid requests get 400 with a stable code and the field path', async (t) => {
  const socketPath = socketIn(t);
  const server = new EndpointApiServer({ socketPath, handler: new MemoryEndpointHandler() });
  await server.start();
  t.after(() => server.close());
  const bad = await raw(socketPath, 'PUT', '/v1/endpoints/c1/eth0', JSON.stringify({ ...reg, ips: [] }));
  assert.equal(bad.status, 400);
  const err = JSON.parse(bad.body) as { error: { code: string; message: string } };
  assert.equal(err.error.code, 'MESHD_CNI_API_BAD_REQUEST');
  assert.match(err.error.message, /ips/);
  const notJson = await raw(socketPath, 'PUT', '/v1/endpoints/c1/eth0', '{');
  assert.equal(notJson.status, 400);
  const mismatch = await raw(socketPath, 'PUT', '/v1/endpoints/c9/eth0', JSON.stringify(reg));
  assert.equal(mismatch.status, 400);
  assert.equal((await raw(socketPath, 'GET', '/v1/nope')).status, 404);
});

test('the client names the socket when no agent listens; a stale socket file is replaced, a live one is not', async (t) => {
  const socketPath = socketIn(t);
  const api = new EndpointApiClient(socketPath);
  await assert.rejects(api.health(), (e: unknown) => isMeshdError(e, 'MESHD_CNI_API_UNREACHABLE') && e.kind === 'unavailable' && e.message.includes(socketPath));

  // A socket file nobody listens on: the agent that made it was killed.
  mkdirSync(dirname(socketPath), { recursive: true });
  const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((r) => crashed.stdout.once('data', r));
  crashed.kill('SIGKILL');
  await new Promise((r) => crashed.once('exit', r));
  assert.ok(statSync(socketPath).isSocket(), 'stale socket file left by the killed process');
  const server = new EndpointApiServer({ socketPath, handler: new MemoryEndpointHandler() });
  await server.start();
  t.after(() => server.close());
  assert.equal((await api.health()).status, 'ok');
  const second = new EndpointApiServer({ socketPath, handler: new MemoryEndpointHandler() });
  await assert.rejects(second.start(), (e: unknown) => isMeshdError(e, 'MESHD_SOCKET_IN_USE') && e.message.includes(socketPath));
  await server.close();
  await server.close(); // idempotent
});

test("a refused endpoint is 422 with the agent's code; a handler failure is 500 with the handler's code", async (t) => {
  const socketPath = socketIn(t);
  class Refusing extends MemoryEndpointHandler {
    override register(r: EndpointRegistration): Promise<never> {
      return Promise.reject(
        r.containerId === 'c1' ? new EndpointRejectedError('c1: no host interface') : new MeshdError('MESHD_TEST_HANDLER_BROKE', 'map full'),
      );
    }
  }
  const server = new EndpointApiServer({ socketPath, handler: new Refusing() });
  await server.start();
  t.after(() => server.close());
  const api = new EndpointApiClient(socketPath);
  await assert.rejects(
    api.register(reg),
    (e: unknown) => isMeshdError(e, 'MESHD_CNI_API_REJECTED') && e instanceof EndpointApiError && e.status === 422 && e.serverCode === 'MESHD_CNI_API_REJECTED',
  );
  await assert.rejects(
    api.register({ ...reg, containerId: 'c2' }),
    (e: unknown) => e instanceof EndpointApiError && e.status === 500 && e.serverCode === 'MESHD_TEST_HANDLER_BROKE',
  );
});
