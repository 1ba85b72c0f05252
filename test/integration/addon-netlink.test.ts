/**
 * The addon's rtnetlink address dump and watcher, in a network namespace of
 * the test's own (a child node process entered with `ip netns exec`, since the
 * addon reads the namespace its process lives in): the dump lists exactly that
 * namespace's addresses; adding and removing addresses on a link there
 * arrives as typed `new`/`del` events; close() is idempotent.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { AddressScope, dumpAddresses, type AddressEvent, type HostAddress } from '../../native/index.js';
import { repoPath } from '../../src/util/paths.js';
import { run } from '../../src/util/exec.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

// Prints the dump, then every batch of events, one JSON line each.
const CHILD = `
const { dumpAddresses, watchAddresses } = await import(process.argv[1]);
const w = watchAddresses((events) => console.log(JSON.stringify({ events })), (err) => console.log(JSON.stringify({ error: err.code })));
console.log(JSON.stringify({ dump: dumpAddresses() }));
process.stdin.on('end', () => { w.close(); w.close(); console.log(JSON.stringify({ closed: true })); });
process.stdin.resume();
`;

type Line = { dump?: HostAddress[]; events?: AddressEvent[]; error?: string; closed?: boolean };

test('address dump and watcher in a namespace of the test: exact set, typed new/del events, idempotent close', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('nl');
  t.after(() => sb.cleanup());
  const ns = await sb.netns('a');
  // This kernel has no dummy links: a veth pair inside the namespace stands in.
  await run('ip', ['-n', ns, 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1']);
  await run('ip', ['-n', ns, 'link', 'set', 'd0', 'up']);
  const ifindex = Number((await run('ip', ['netns', 'exec', ns, 'cat', '/sys/class/net/d0/ifindex'])).stdout.trim());

  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', CHILD, pathToFileURL(repoPath('dist', 'native', 'index.js')).href], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  const lines: Line[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(JSON.parse(l) as Line);
    for (const w of waiters.splice(0)) w();
  });
  const events = (): AddressEvent[] => lines.flatMap((l) => l.events ?? []);
  const until = async (what: string, ok: () => boolean): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (!ok()) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; got ${JSON.stringify(lines)}`);
      await Promise.race([new Promise<void>((r) => waiters.push(r)), new Promise((r) => setTimeout(r, 200))]);
    }
  };

  // A fresh namespace holds only loopback's addresses (the new link has none yet); IPv6 on lo may be absent.
  await until('the dump', () => lines.some((l) => l.dump));
  const dump = lines.find((l) => l.dump)?.dump ?? [];
  assert.deepEqual(
    dump.filter((a) => a.family === 4),
    [{ ifindex: 1, family: 4, address: '127.0.0.1', prefixlen: 8, scope: AddressScope.host, flags: dump.find((a) => a.family === 4)?.flags ?? -1 }],
  );
  assert.ok(dump.every((a) => a.ifindex === 1), 'only loopback');

  await run('ip', ['-n', ns, 'addr', 'add', '198.18.7.1/24', 'dev', 'd0']);
  await run('ip', ['-n', ns, '-6', 'addr', 'add', '2001:db8:7::1/64', 'dev', 'd0', 'nodad']);
  await run('ip', ['-n', ns, 'addr', 'add', '198.18.8.1/32', 'dev', 'd0', 'scope', 'link']);
  await until('three new addresses', () => events().filter((e) => e.type === 'new').length >= 3);
  const added = events().filter((e) => e.type === 'new');
  assert.deepEqual(
    added.map((e) => (e.type === 'new' ? [e.ifindex, e.family, e.address, e.prefixlen, e.scope] : [])),
    [
      [ifindex, 4, '198.18.7.1', 24, AddressScope.universe],
      [ifindex, 6, '2001:db8:7::1', 64, AddressScope.universe],
      [ifindex, 4, '198.18.8.1', 32, AddressScope.link],
    ],
  );

  await run('ip', ['-n', ns, 'addr', 'del', '198.18.7.1/24', 'dev', 'd0']);
  await until('the removal', () => events().some((e) => e.type === 'del'));
  const removed = events().filter((e) => e.type === 'del');
  assert.deepEqual(removed.map((e) => (e.type === 'del' ? [e.ifindex, e.address, e.prefixlen] : [])), [[ifindex, '198.18.7.1', 24]]);
  assert.ok(!lines.some((l) => l.error), 'every event passed validation');

  // Nothing of this reached the test's own namespace.
  assert.ok(!dumpAddresses().some((a) => a.address === '198.18.8.1' || a.address === '2001:db8:7::1'));

  child.stdin.end();
  await until('close', () => lines.some((l) => l.closed));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, 'the watcher closed (twice) and let the process exit');
});
