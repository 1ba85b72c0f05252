/**
 * meshd-cni under load, invoked as a runtime does: 20 ADDs at once must get
 * 20 distinct addresses; 500 ADD/DEL cycles must leak no address, veth,
 * record, temp file or agent registration.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { run } from '../../src/util/exec.js';
import { filesUnder, firstAddress, hostVeths, meshdCniFixture, testSubnet } from '../helpers/cni-runtime.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const uniq = () => `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

function leftovers(stateDir: string): string[] {
  return filesUnder(stateDir).filter((f) => !f.endsWith('/last_reserved'));
}

test('20 concurrent ADDs get 20 distinct addresses; 20 concurrent DELs release them all', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnis');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-conc');
  t.after(() => fx.cleanup());
  const { cidr, prefix } = testSubnet(11);
  const conf = fx.conf(cidr);
  const vethsBefore = hostVeths();
  const atts = [];
  for (let i = 0; i < 20; i += 1) {
    atts.push({ containerId: `conc-${i}-${uniq()}`, netns: `/var/run/netns/${await sb.netns(`p${i}`)}`, ifname: 'eth0' });
  }
  for (const att of atts) sb.defer(() => fx.runtime.exec('meshd-cni', 'DEL', att, conf));

  const started = performance.now();
  const adds = await Promise.all(atts.map((att) => fx.runtime.exec('meshd-cni', 'ADD', att, conf)));
  t.diagnostic(`20 concurrent ADDs: ${(performance.now() - started).toFixed(0)} ms`);
  for (const r of adds) assert.equal(r.code, 0, r.stdout + r.stderr);
  const addresses = adds.map((r) => firstAddress(r.json));
  assert.equal(new Set(addresses).size, 20, `distinct: ${addresses.join(' ')}`);
  for (const a of addresses) assert.ok(a.startsWith(prefix), a);
  assert.equal((await fx.handler.list()).length, 20);
  // Each pod really has the address its result names.
  for (const [i, att] of atts.entries()) {
    const ns = att.netns.split('/').pop() ?? '';
    const out = (await run('ip', ['-n', ns, '-o', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout;
    assert.ok(out.includes(addresses[i] ?? 'none'), `${ns}: ${out}`);
  }

  const dels = await Promise.all(atts.map((att) => fx.runtime.exec('meshd-cni', 'DEL', att, conf)));
  for (const r of dels) assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(hostVeths(), vethsBefore);
  assert.deepEqual(leftovers(fx.stateDir), []);
  assert.deepEqual(await fx.handler.list(), []);
});

test('500 ADD/DEL cycles leak no address, veth, file or registration', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnic');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-cycles');
  t.after(() => fx.cleanup());
  const { cidr } = testSubnet(12);
  const conf = fx.conf(cidr);
  const vethsBefore = hostVeths();
  const CYCLES = 500;
  const WORKERS = 4;
  const namespaces: string[] = [];
  for (let w = 0; w < WORKERS; w += 1) namespaces.push(await sb.netns(`w${w}`));

  let next = 0;
  const addMs: number[] = [];
  const delMs: number[] = [];
  const seen = new Set<string>();
  const started = performance.now();
  await Promise.all(
    namespaces.map(async (ns) => {
      while (next < CYCLES) {
        const i = next;
        next += 1;
        const att = { containerId: `cyc-${i}-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
        const add = await fx.runtime.exec('meshd-cni', 'ADD', att, conf);
        assert.equal(add.code, 0, `cycle ${i} ADD: ${add.stdout}${add.stderr}`);
        addMs.push(add.ms);
        seen.add(firstAddress(add.json));
        const del = await fx.runtime.exec('meshd-cni', 'DEL', att, { ...conf, prevResult: add.json });
        assert.equal(del.code, 0, `cycle ${i} DEL: ${del.stdout}${del.stderr}`);
        delMs.push(del.ms);
      }
    }),
  );
  const total = performance.now() - started;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  t.diagnostic(
    `${CYCLES} cycles with ${WORKERS} workers: ${(total / 1000).toFixed(1)} s; median ADD ${median(addMs).toFixed(0)} ms, DEL ${median(delMs).toFixed(0)} ms; ${seen.size} distinct addresses used`,
  );
  assert.equal(addMs.length, CYCLES);
  assert.deepEqual(hostVeths(), vethsBefore, 'no veth left');
  assert.deepEqual(leftovers(fx.stateDir), [], 'no reservation, record or temp file left');
  assert.deepEqual(await fx.handler.list(), [], 'no registration left');
  for (const ns of namespaces) {
    assert.equal((await run('ip', ['-n', ns, '-o', 'link'])).stdout.trim().split('\n').length, 1, `${ns} holds only lo`);
  }
  const routes = (await run('ip', ['route', 'show', 'root', cidr])).stdout.trim();
  assert.equal(routes, '', 'no host route into the pool left');
});
