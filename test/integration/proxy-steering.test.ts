/**
 * Agent-switched steering on this kernel (src/proxy/steering.ts,
 * bpf/steer.c): two "proxies" — separate processes, each with two listening
 * sockets (like two Envoy workers) on the same loopback port with
 * SO_REUSEPORT, so one reuseport group — and the agent's steering moving
 * every new connection from one to the other with one map switch, taking
 * their sockets with pidfd_getfd. Without entries the kernel's hash spreads
 * connections over both; a process that dies leaves the map by itself.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { test } from 'node:test';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { ProxySteering } from '../../src/proxy/steering.js';
import { tempPinDir } from '../helpers/bpffs.js';
import { requirePrivileges } from '../helpers/privileged.js';

// A listener process: two SO_REUSEPORT sockets on 127.0.0.1:<port>, each answers its name and closes.
const LISTENER = `
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def serve(s):
    while True:
        c, _ = s.accept()
        c.sendall(name.encode())
        c.close()
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(('127.0.0.1', port))
    s.listen(128)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print('ready', flush=True)
threading.Event().wait()
`;

async function startListener(t: { after(fn: () => unknown): void }, name: string, port: number): Promise<ChildProcess> {
  const child = spawn('python3', ['-c', LISTENER, name, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  assert.equal(line, 'ready');
  return child;
}

async function ask(port: number): Promise<string> {
  const s = connect({ host: '127.0.0.1', port });
  let data = '';
  s.on('data', (d: Buffer) => (data += d.toString()));
  await once(s, 'close');
  return data;
}

async function tally(port: number, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const who = await ask(port);
    out[who] = (out[who] ?? 0) + 1;
  }
  return out;
}

test('steering: the agent moves every new connection between two proxies of one reuseport group with one map switch', { timeout: 60_000 }, async (t) => {
  requirePrivileges();
  const pins = tempPinDir('steer');
  t.after(() => pins.cleanup());
  const port = 30000 + (process.pid % 20000);
  const a = await startListener(t, 'a', port);
  const b = await startListener(t, 'b', port);
  const steering = await ProxySteering.open({ pinDir: pins.path });
  t.after(() => steering.close());
  const inst = (id: string, c: ChildProcess) => ({ id, pid: c.pid ?? 0 });

  // Nothing steered: the kernel's reuseport hash spreads the connections over both processes.
  assert.deepEqual(Object.keys(await tally(port, 60)).sort(), ['a', 'b']);
  assert.equal(steering.status().path, 'socket-lookup');

  steering.update([inst('a', a)], [port]);
  assert.deepEqual(await tally(port, 60), { a: 60 });
  const st = steering.status();
  assert.equal(st.path, 'socket-map');
  assert.deepEqual(st.ports, [{ port, family: 4, sockets: 2, instances: ['a'] }]);
  assert.ok(st.counters.selected >= 60, JSON.stringify(st.counters));

  // The switch to b: one update, then every new connection is b's.
  steering.update([inst('b', b)], [port]);
  assert.deepEqual(await tally(port, 60), { b: 60 });
  steering.update([inst('a', a), inst('b', b)], [port]);
  assert.deepEqual(Object.keys(await tally(port, 80)).sort(), ['a', 'b']);
  assert.equal(steering.status().ports[0]?.sockets, 4);

  // b dies: its sockets leave the map as the kernel closes them; a takes everything, before any update.
  b.kill('SIGKILL');
  await once(b, 'exit');
  assert.deepEqual(await tally(port, 40), { a: 40 });
  steering.update([inst('a', a)], [port]);
  assert.deepEqual(await tally(port, 20), { a: 20 });

  // No live instance: the port's entry goes, the lookup path decides (here: a, the only one left).
  steering.update([], [port]);
  assert.equal(steering.status().path, 'socket-lookup');
  assert.deepEqual(await tally(port, 10), { a: 10 });
  assert.ok(steering.status().counters.unsteered >= 10);
});
