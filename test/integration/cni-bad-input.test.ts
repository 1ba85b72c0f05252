/**
 * Bad input to meshd-cni: every case answers with the spec's error JSON on
 * stdout (cniVersion, code, msg naming the problem), exits non-zero, and
 * leaves no veth, address, record or agent registration behind.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { run } from '../../src/util/exec.js';
import { filesUnder, hostVeths, meshdCniFixture, testSubnet } from '../helpers/cni-runtime.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const uniq = () => `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

test('bad input gets spec-conformant error JSON naming the problem, and nothing is left behind', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnib');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-bad');
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const netns = `/var/run/netns/${ns}`;
  const { cidr } = testSubnet(6);
  const vethsBefore = hostVeths();

  const cases: Array<{
    name: string;
    stdin: string | Record<string, unknown>;
    env?: Record<string, string | undefined>;
    /** The spec's number in the error JSON's code. */
    code: number;
    /** meshd's stable code, first in the error JSON's details. */
    reason: string;
    /** What the message must name for the user. */
    msg: RegExp;
    cniVersion: string;
  }> = [
    { name: 'malformed JSON', stdin: '{"cniVersion": "1.1.0", "name": ', code: 6,
      reason: 'MESHD_CNI_BAD_JSON', msg: /not valid JSON/, cniVersion: '1.1.0' },
    { name: 'JSON that is not an object', stdin: '[1,2]', code: 6,
      reason: 'MESHD_CNI_BAD_JSON', msg: /must be a JSON object/, cniVersion: '1.1.0' },
    {
      name: 'unsupported cniVersion',
      stdin: fx.conf(cidr, { cniVersion: '0.2.0' }),
      code: 1,
      reason: 'MESHD_CNI_UNSUPPORTED_VERSION',
      msg: /cniVersion "0\.2\.0" is not supported.*0\.4\.0, 1\.0\.0, 1\.1\.0/,
      cniVersion: '1.1.0',
    },
    { name: 'missing CNI_NETNS', stdin: fx.conf(cidr), env: { CNI_NETNS: undefined }, code: 4,
      reason: 'MESHD_CNI_BAD_ENV', msg: /CNI_NETNS is required for ADD/, cniVersion: '1.1.0' },
    { name: 'missing CNI_CONTAINERID', stdin: fx.conf(cidr), env: { CNI_CONTAINERID: undefined }, code: 4,
      reason: 'MESHD_CNI_BAD_ENV', msg: /CNI_CONTAINERID/, cniVersion: '1.1.0' },
    { name: 'unknown CNI_COMMAND', stdin: fx.conf(cidr), env: { CNI_COMMAND: 'FROB' }, code: 4,
      reason: 'MESHD_CNI_BAD_ENV', msg: /CNI_COMMAND "FROB"/, cniVersion: '1.1.0' },
    {
      name: 'netns path that does not exist',
      stdin: fx.conf(cidr),
      env: { CNI_NETNS: '/var/run/netns/meshd-no-such-ns' },
      code: 4,
      reason: 'MESHD_CNI_BAD_ENV',
      msg: /CNI_NETNS "\/var\/run\/netns\/meshd-no-such-ns" does not exist/,
      cniVersion: '1.1.0',
    },
    {
      name: 'unknown IPAM type',
      stdin: fx.conf(cidr, { cniVersion: '1.0.0', ipam: { type: 'no-such-ipam' } }),
      code: 7,
      reason: 'MESHD_CNI_UNKNOWN_IPAM',
      msg: /ipam\.type "no-such-ipam" is unknown: no such plugin in CNI_PATH/,
      cniVersion: '1.0.0',
    },
    {
      name: 'pod CIDR that is not a CIDR',
      stdin: fx.conf('10.244.300.0/24'),
      code: 7,
      reason: 'MESHD_CNI_BAD_CONFIG',
      msg: /ipam\.subnet "10\.244\.300\.0\/24" is not an IPv4 CIDR/,
      cniVersion: '1.1.0',
    },
    {
      name: 'field of the wrong type',
      stdin: fx.conf(cidr, { mtu: 'big' }),
      code: 7,
      reason: 'MESHD_CNI_BAD_CONFIG',
      msg: /mtu: /,
      cniVersion: '1.1.0',
    },
    {
      name: 'meshd IPAM without a subnet',
      stdin: fx.conf(cidr, { ipam: undefined }),
      code: 7,
      reason: 'MESHD_CNI_BAD_CONFIG',
      msg: /needs "ipam\.subnet" \(or "podCIDR"\)/,
      cniVersion: '1.1.0',
    },
  ];

  for (const c of cases) {
    const att = { containerId: `bad-${uniq()}`, netns, ifname: 'eth0' };
    const r = await fx.runtime.exec('meshd-cni', 'ADD', att, c.stdin, c.env);
    assert.notEqual(r.code, 0, `${c.name}: exit status`);
    assert.ok(r.json, `${c.name}: error JSON on stdout, got ${r.stdout}`);
    assert.equal(r.json.code, c.code, `${c.name}: code (${r.stdout})`);
    assert.equal(String(r.json.details).split(':')[0], c.reason, `${c.name}: details (${r.stdout})`);
    assert.equal(r.json.cniVersion, c.cniVersion, `${c.name}: cniVersion`);
    assert.match(String(r.json.msg), c.msg, `${c.name}: msg`);
  }

  // Exhausted pool: a /30 has exactly one address besides the gateway.
  const tiny = `${testSubnet(7).prefix}0/30`;
  const first = { containerId: `full-1-${uniq()}`, netns, ifname: 'eth0' };
  const ok = await fx.runtime.exec('meshd-cni', 'ADD', first, fx.conf(tiny));
  assert.equal(ok.code, 0, ok.stdout);
  const ns2 = await sb.netns('b');
  const second = { containerId: `full-2-${uniq()}`, netns: `/var/run/netns/${ns2}`, ifname: 'eth0' };
  const full = await fx.runtime.exec('meshd-cni', 'ADD', second, fx.conf(tiny));
  assert.notEqual(full.code, 0);
  assert.equal(full.json?.code, 100);
  assert.equal(full.json?.details, 'MESHD_CNI_IPAM_EXHAUSTED');
  assert.ok(String(full.json?.msg).includes(tiny), 'names the pool');
  assert.deepEqual((await run('ip', ['-n', ns2, '-o', 'link'])).stdout.trim().split('\n').length, 1, 'second pod has only lo');
  const del = await fx.runtime.exec('meshd-cni', 'DEL', first, fx.conf(tiny));
  assert.equal(del.code, 0, del.stdout);

  assert.deepEqual(hostVeths(), vethsBefore, 'no veth left behind');
  assert.deepEqual(filesUnder(fx.stateDir).filter((f) => !f.endsWith('last_reserved')), [], 'no reservation or record left');
  assert.deepEqual(await fx.handler.list(), [], 'nothing registered');
  assert.equal((await run('ip', ['-n', ns, '-o', 'link'])).stdout.trim().split('\n').length, 1, 'pod has only lo');
});
