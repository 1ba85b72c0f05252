import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isMeshdError } from '../util/errors.js';
import type { StateFileCorruptError } from '../util/state-file.js';
import { CniCode, CniError } from './cni-spec.js';
import { IpamStore, parsePool } from './ipam-store.js';

function stateDir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'meshd-ipam-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('parsePool normalises the network, defaults the gateway and rejects bad CIDRs by field name', () => {
  const p = parsePool('10.244.3.77/24');
  assert.equal(p.cidr, '10.244.3.0/24');
  const badConfig = (field: string) => (e: unknown) =>
    isMeshdError(e, 'MESHD_CNI_BAD_CONFIG') && e instanceof CniError && e.cniCode === CniCode.INVALID_CONFIG && e.message.includes(field);
  assert.throws(() => parsePool('10.244.3.0/31'), badConfig('ipam.subnet'));
  assert.throws(() => parsePool('10.244.3.0/24', '10.244.4.1'), badConfig('ipam.gateway'));
  assert.throws(() => parsePool('banana', undefined, 'podCIDR'), badConfig('podCIDR "banana"'));
});

test('allocate skips the network, gateway and broadcast addresses, moves on after a release, and stops when full', (t) => {
  const store = new IpamStore(stateDir(t), 'net', parsePool('10.244.5.0/29'));
  const got: string[] = [];
  for (let i = 0; i < 5; i += 1) got.push(store.allocate({ containerId: `c${i}`, ifname: 'eth0' }).address);
  assert.deepEqual(got, ['10.244.5.2/32', '10.244.5.3/32', '10.244.5.4/32', '10.244.5.5/32', '10.244.5.6/32']);
  assert.throws(
    () => store.allocate({ containerId: 'c9', ifname: 'eth0' }),
    (e: unknown) => isMeshdError(e, 'MESHD_CNI_IPAM_EXHAUSTED') && e instanceof CniError && e.cniCode === CniCode.IPAM_EXHAUSTED && e.message.includes('10.244.5.0/29'),
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

test('a corrupt address file is quarantined: reported with its path, kept aside, and its address never handed out again', (t) => {
  const reports: StateFileCorruptError[] = [];
  const store = new IpamStore(stateDir(t), 'net', parsePool('10.244.7.0/29'), { onCorrupt: (e) => reports.push(e) });
  const owners = [0, 1, 2].map((i) => ({ containerId: `c${i}`, ifname: 'eth0' }));
  for (const o of owners) store.allocate(o); // .2 .3 .4
  const damaged = join(store.dir, '10.244.7.3');
  writeFileSync(damaged, 'c1\x00\x00garbage');

  assert.deepEqual(store.list().map((r) => r.ip).sort(), ['10.244.7.2', '10.244.7.4'], 'the damaged reservation has no owner to list');
  assert.equal(reports.length, 1);
  const [r] = reports;
  assert.ok(isMeshdError(r, 'MESHD_STATE_FILE_CORRUPT'));
  assert.equal(r.file, damaged);
  assert.ok(r.message.includes(damaged) && r.message.includes(r.movedTo), 'the report names both paths');
  assert.equal(readFileSync(r.movedTo, 'utf8'), 'c1\x00\x00garbage', 'the damaged content is kept for the operator');
  assert.ok(existsSync(damaged), 'the address file stays: the address is still reserved');
  assert.deepEqual(store.quarantined(), ['10.244.7.3']);

  assert.deepEqual(store.release(owners[1] ?? { containerId: '', ifname: '' }), [], 'nobody can release a quarantined address by owner');
  const got = [store.allocate({ containerId: 'c8', ifname: 'eth0' }).address, store.allocate({ containerId: 'c9', ifname: 'eth0' }).address];
  assert.deepEqual(got, ['10.244.7.5/32', '10.244.7.6/32'], 'allocation goes around the quarantined address');
  assert.throws(() => store.allocate({ containerId: 'c10', ifname: 'eth0' }), (e: unknown) => isMeshdError(e, 'MESHD_CNI_IPAM_EXHAUSTED'));
  store.list();
  assert.equal(reports.length, 1, 'reported once, not on every read');

  unlinkSync(damaged); // the operator checked that no pod uses it
  assert.equal(store.allocate({ containerId: 'c10', ifname: 'eth0' }).address, '10.244.7.3/32');
  assert.deepEqual(store.quarantined(), []);
});

test('an unreadable hint is ignored and an address file is never seen half-written', (t) => {
  const store = new IpamStore(stateDir(t), 'net', parsePool('10.244.8.0/29'), { onCorrupt: () => assert.fail('nothing is corrupt') });
  store.allocate({ containerId: 'a', ifname: 'eth0' });
  writeFileSync(join(store.dir, 'last_reserved'), 'not an address');
  assert.equal(store.allocate({ containerId: 'b', ifname: 'eth0' }).address, '10.244.8.3/32');
  assert.deepEqual(readdirSync(store.dir).sort(), ['10.244.8.2', '10.244.8.3', 'last_reserved'], 'no temporary file left behind');
});
