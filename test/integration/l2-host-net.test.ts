/**
 * The agent's side of L2 announcements through rtnetlink (NetlinkHostNet),
 * in a network namespace of the test's own (a child node process entered
 * with `ip netns exec`, since the addon acts on the namespace its process
 * lives in), checked against what iproute2 reads there: announced addresses
 * go on as host-scoped /32 and as /128 (IPv6 without duplicate detection),
 * replacing is idempotent, read() lists them and the interfaces but
 * loopback, removing one already gone is fine, and an address that does not
 * parse is refused by its code, changing nothing.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

// Runs the steps on stdin's argument and prints one JSON line with what each returned or threw.
const CHILD = `
const { NetlinkHostNet } = await import(process.argv[1]);
const net = new NetlinkHostNet();
const out = {};
const step = async (name, fn) => { try { out[name] = (await fn()) ?? null; } catch (e) { out[name] = { error: e.code ?? String(e) }; } };
await step('add', () => net.add([{ ifname: 'd0', ip: '198.18.9.5' }, { ifname: 'd0', ip: '2001:db8:9::5' }]));
await step('again', () => net.add([{ ifname: 'd0', ip: '198.18.9.5' }]));
await step('read', () => net.read());
const { dumpAddresses } = await import(process.argv[2]);
await step('v6', () => dumpAddresses().filter((a) => a.address === '2001:db8:9::5').map((a) => [a.prefixlen, (a.flags & 0x02) !== 0]));
await step('bad', () => net.add([{ ifname: 'd0', ip: '198.18.9.300' }]));
await step('noIf', () => net.add([{ ifname: 'nosuch0', ip: '198.18.9.6' }]));
await step('remove', () => net.remove('d0', '2001:db8:9::5'));
await step('removeGone', () => net.remove('d0', '2001:db8:9::5'));
await step('after', () => net.read());
console.log(JSON.stringify(out));
`;

const Addr = z.array(z.object({ ifname: z.string(), addr_info: z.array(z.object({ family: z.string(), local: z.string(), prefixlen: z.number(), scope: z.string(), nodad: z.boolean().optional() }).loose()) }).loose());

test('NetlinkHostNet puts host-scoped /32 and /128 announcements on, reads and removes them, and refuses bad input', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('l2nl');
  t.after(() => sb.cleanup());
  const ns = await sb.netns('a');
  // This kernel has no dummy links: a veth pair inside the namespace stands in.
  await run('ip', ['-n', ns, 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1']);
  await run('ip', ['-n', ns, 'link', 'set', 'd0', 'up']);
  const mac = (await run('ip', ['netns', 'exec', ns, 'cat', '/sys/class/net/d0/address'])).stdout.trim();
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', CHILD, pathToFileURL(repoPath('dist', 'src', 'l2announce', 'host-net.js')).href, pathToFileURL(repoPath('dist', 'native', 'index.js')).href], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  await once(child, 'exit');
  const out = z.record(z.string(), z.unknown()).parse(JSON.parse(stdout));

  assert.equal(out.add, null);
  assert.equal(out.again, null, 'replacing an address it has is not an error');
  const mine: Array<{ ifname: string; ip: string }> = [
    { ifname: 'd0', ip: '198.18.9.5' },
    { ifname: 'd0', ip: '2001:db8:9::5' },
  ];
  const ifaces = (r: unknown) => z.object({ interfaces: z.array(z.object({ name: z.string(), mac: z.string() })) }).parse(r).interfaces.sort((a, b) => a.name.localeCompare(b.name));
  const announced = (r: unknown) => z.object({ announced: z.array(z.object({ ifname: z.string(), ip: z.string() })) }).parse(r).announced;
  assert.deepEqual(announced(out.read), mine);
  assert.deepEqual(ifaces(out.read).find((i) => i.name === 'd0'), { name: 'd0', mac });
  assert.ok(!ifaces(out.read).some((i) => i.name === 'lo'), 'loopback is not an interface to announce on');
  assert.deepEqual(out.v6, [[128, true]], 'the IPv6 address is a /128 without duplicate detection');
  assert.deepEqual(out.bad, { error: 'MESHD_L2_BAD_ADDRESS' });
  assert.deepEqual(out.noIf, { error: 'MESHD_NETLINK_FAILED' });
  assert.equal(out.remove, null);
  assert.equal(out.removeGone, null, 'removing an address already gone is the state wanted');
  assert.deepEqual(announced(out.after), [mine[0]]);

  // What the kernel holds, read by iproute2: exactly the one IPv4 address left, host-scoped /32.
  const links = Addr.parse(JSON.parse((await run('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', 'd0'])).stdout));
  const v4 = links.flatMap((l) => l.addr_info).filter((a) => a.family === 'inet');
  assert.deepEqual(v4.map((a) => [a.local, a.prefixlen, a.scope]), [['198.18.9.5', 32, 'host']]);
  assert.ok(!links.flatMap((l) => l.addr_info).some((a) => a.local === '2001:db8:9::5'), 'the IPv6 address was removed');
});
