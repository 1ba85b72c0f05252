import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CniError } from './cni-spec.js';
import { IpamStore, parsePool } from './ipam-store.js';

function stateDir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'meshd-ipam-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('parsePool normalises the network, defaults the gateway and rejects bad CIDRs by field name', () => {
  const p = parsePool('10.244.3.77/24');
  assert.equal(p.cidr, '10.244.3.0/24');
  assert.throws(() => parsePool('10.244.3.0/31'), (e: unknown) => e instanceof CniError && e.cniCode === 7 && /ipam\.subnet/.test(e.message));
  assert.throws(() => parsePool('10.244.3.0/24', '10.244.4.1'), /ipam\.gateway/);
  assert.throws(() => parsePool('banana', undefined, 'podCIDR'), /podCIDR "banana"/);
});

test('allocate skips the network, gateway and broadcast addresses, moves on after a release, and stops when full', (t) => {
  const store = new IpamStore(stateDir(t), 'net', parsePool('10.244.5.0/29'));
  const got: string[] = [];
  for (let i = 0; i < 5; i += 1) got.push(store.allocate({ containerId: `c${i}`, ifname: 'eth0' }).address);
  assert.deepEqual(got, ['10.244.5.2/32', '10.244.5.3/32', '10.244.5.4/32', '10.244.5.5/32', '10.244.5.6/32']);
  assert.throws(
    () => store.allocate({ containerId: 'c9', ifname: 'eth0' }),
    (e: unknown) => e instanceof CniError && e.cniCode === 100 && /no free address left in pool 10\.244\.5\.0\/29/.test(e.message),
  );
  assert.deepEqual(store.release({ containerId: 'c2', ifname: 'eth0' }), ['10.244.5.4']);
  assert.deepEqual(store.release({ containerId: 'c2', ifname: 'eth0' }), [], 'releasing twice is fine');
  assert.deepEqual(store.release({ containerId: 'other', ifname: 'eth0' }, ['10.244.5.5']), [], "never releases someone else's address");
  assert.equal(store.allocate({ containerId: 'c7', ifname: 'eth0' }).address, '10.244.5.4/32');
  assert.ok(store.holds({ containerId: 'c7', ifname: 'eth0' }, '10.244.5.4'));
  assert.equal(store.list().length, 5);
});

test('concurrent allocations from separate processes never share an address', async (t) => {
  const dir = stateDir(t);
  const module = fileURLToPath(new URL('./ipam-store.js', import.meta.url));
  const script = `
    const { IpamStore, parsePool } = await import(${JSON.stringify(module)});
    const s = new IpamStore(process.argv[1], 'net', parsePool('10.244.6.0/24'));
    const out = [];
    for (let i = 0; i < 25; i++) out.push(s.allocate({ containerId: 'p' + process.argv[2] + '-' + i, ifname: 'eth0' }).address);
    console.log(JSON.stringify(out));`;
  const runs = await Promise.all(
    [0, 1, 2, 3, 4, 5, 6, 7].map(
      (n) =>
        new Promise<string[]>((resolve, reject) => {
          const c = spawn(process.execPath, ['--input-type=module', '-e', script, dir, String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          c.stdout.on('data', (d: Buffer) => (out += d.toString()));
          c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(`exit ${code}`))));
        }),
    ),
  );
  const all = runs.flat();
  assert.equal(all.length, 200);
  assert.equal(new Set(all).size, 200, 'all distinct');
  const files = readdirSync(join(dir, 'ipam', 'net', '10.244.6.0_24')).filter((f) => /^\d/.test(f));
  assert.equal(files.length, 200);
});
