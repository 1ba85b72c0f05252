/**
 * meshd-cni invoked exactly as a container runtime invokes it (installed
 * launcher in a CNI bin dir, CNI_* environment, configuration on stdin) on
 * real network namespaces, with the endpoint API server standing in for the
 * agent.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { EndpointRejectedError, MemoryEndpointHandler } from '../../src/cni/endpoint-api-server.js';
import type { EndpointRegistration, Endpoint } from '../../src/cni/endpoint-api.js';
import { run } from '../../src/util/exec.js';
import { asResult, filesUnder, firstAddress, hostSide, hostVeths, meshdCniFixture, testSubnet } from '../helpers/cni-runtime.js';
import { addTestNetns, Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const uniq = () => `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

async function podLinks(ns: string): Promise<string[]> {
  const out = (await run('ip', ['-n', ns, '-j', 'link', 'show'])).stdout;
  const parsed: unknown = JSON.parse(out);
  assert.ok(Array.isArray(parsed));
  return parsed.map((l: { ifname?: string }) => l.ifname ?? '');
}

function field(obj: Record<string, unknown> | undefined, key: string): unknown {
  return obj?.[key];
}

test('ADD wires the pod, registers it with the agent; CHECK passes and notices damage; DEL removes everything, twice', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnip');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-plugin');
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const netns = `/var/run/netns/${ns}`;
  const { cidr, prefix } = testSubnet(0);
  const att = {
    containerId: `c-${uniq()}`,
    netns,
    ifname: 'eth0',
    args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'shop', K8S_POD_NAME: 'web-1', K8S_POD_UID: 'u-1' },
  };
  const conf = fx.conf(cidr);

  const add = await fx.runtime.exec('meshd-cni', 'ADD', att, conf);
  assert.equal(add.code, 0, add.stdout + add.stderr);
  const result = add.json;
  assert.equal(field(result, 'cniVersion'), '1.1.0');
  const ips = asResult(result).ips ?? [];
  const ifaces = asResult(result).interfaces ?? [];
  assert.equal(ips.length, 1);
  const ip = ips[0]?.address ?? '';
  assert.ok(ip.startsWith(prefix) && ip.endsWith('/32'), ip);
  assert.equal(ips[0]?.gateway, `${prefix}1`);
  assert.equal(ifaces[ips[0]?.interface ?? -1]?.sandbox, netns);
  assert.equal(ifaces[ips[0]?.interface ?? -1]?.name, 'eth0');
  const hostIf = ifaces.find((i) => i.sandbox === undefined)?.name ?? '';
  assert.match(hostIf, /^lxc[0-9a-f]{12}$/);

  // The pod: address, default route via the gateway, the gateway's MAC is the host end's.
  const addr = (await run('ip', ['-n', ns, '-o', 'addr', 'show', 'dev', 'eth0'])).stdout;
  assert.match(addr, new RegExp(`inet ${ip.replace(/\./g, '\\.')}`));
  const routes = (await run('ip', ['-n', ns, 'route'])).stdout;
  assert.match(routes, new RegExp(`default via ${prefix.replace(/\./g, '\\.')}1 dev eth0`));
  const neigh = (await run('ip', ['-n', ns, 'neigh', 'show', `${prefix}1`])).stdout;
  assert.match(neigh, new RegExp(`lladdr ${ifaces.find((i) => i.name === hostIf)?.mac ?? 'x'} PERMANENT`));
  // The host: the veth end is up and routes the pod address.
  assert.ok(existsSync(`/sys/class/net/${hostIf}`));
  const hostRoute = (await run('ip', ['route', 'show', ip])).stdout;
  assert.match(hostRoute, new RegExp(`dev ${hostIf}`));

  const ep = await fx.handler.get({ containerId: att.containerId, ifname: 'eth0' });
  assert.ok(ep, 'endpoint registered with the agent');
  assert.deepEqual(ep.k8s, { namespace: 'shop', name: 'web-1', uid: 'u-1' });
  assert.equal(ep.hostInterface, hostIf);
  assert.deepEqual(ep.ips, [ip]);
  assert.equal(ep.netns, netns);

  const check = await fx.runtime.exec('meshd-cni', 'CHECK', att, { ...conf, prevResult: result });
  assert.equal(check.code, 0, check.stdout);
  assert.equal(check.stdout, '');

  await run('ip', ['-n', ns, 'addr', 'del', ip, 'dev', 'eth0']);
  const broken = await fx.runtime.exec('meshd-cni', 'CHECK', att, { ...conf, prevResult: result });
  assert.notEqual(broken.code, 0);
  assert.equal(field(broken.json, 'code'), 103);
  assert.equal(field(broken.json, 'details'), 'MESHD_CNI_CHECK_FAILED');
  assert.match(String(field(broken.json, 'msg')), new RegExp(`lacks address ${ip.replace(/\./g, '\\.')}`));

  for (let i = 0; i < 2; i += 1) {
    const del = await fx.runtime.exec('meshd-cni', 'DEL', att, { ...conf, prevResult: result });
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal(del.stdout, '');
  }
  assert.ok(!existsSync(`/sys/class/net/${hostIf}`), 'host veth removed');
  assert.deepEqual(await podLinks(ns), ['lo']);
  assert.equal(await fx.handler.get({ containerId: att.containerId, ifname: 'eth0' }), undefined);
  assert.deepEqual(filesUnder(fx.stateDir).filter((f) => !f.endsWith('last_reserved')), []);
  assert.equal((await run('ip', ['route', 'show', ip])).stdout.trim(), '');
});

test('two pods on meshd-cni reach each other over TCP through the host', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnit');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-tcp');
  t.after(() => fx.cleanup());
  const { cidr } = testSubnet(1);
  const conf = fx.conf(cidr);
  const pods = [];
  for (const name of ['a', 'b']) {
    const ns = await sb.netns(name);
    const att = { containerId: `tcp-${name}-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
    const r = await fx.runtime.exec('meshd-cni', 'ADD', att, conf);
    assert.equal(r.code, 0, r.stdout);
    pods.push({ ns, att, ip: firstAddress(r.json).split('/')[0] ?? '' });
    sb.defer(() => fx.runtime.exec('meshd-cni', 'DEL', att, conf));
  }
  const [a, b] = pods;
  assert.ok(a && b);
  const server = spawn(
    'ip',
    ['netns', 'exec', b.ns, process.execPath, '-e', `require('net').createServer((s)=>s.pipe(s)).listen(7070,'${b.ip}',()=>console.log('up'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => server.kill());
  await new Promise<void>((resolve, reject) => {
    server.stdout.once('data', () => resolve());
    server.once('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
  const client = await sb.exec(a.ns, process.execPath, [
    '-e',
    `const s=require('net').connect(7070,'${b.ip}',()=>s.end('hello from ${a.ip}'));let d='';s.on('data',(c)=>d+=c);s.on('end',()=>console.log(d));s.setTimeout(5000,()=>{console.error('timeout');process.exit(1)})`,
  ]);
  assert.equal(client.stdout.trim(), `hello from ${a.ip}`);
});

test('DEL succeeds for a vanished namespace, without CNI_NETNS, and for a container never added', async (t) => {
  requirePrivileges();
  const fx = await meshdCniFixture('cni-del');
  t.after(() => fx.cleanup());
  const ns = `mcnidel${process.pid}`;
  await addTestNetns(ns);
  t.after(() => run('ip', ['netns', 'del', ns]).catch(() => undefined));
  const { cidr } = testSubnet(2);
  const conf = fx.conf(cidr);
  const att = { containerId: `gone-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
  const add = await fx.runtime.exec('meshd-cni', 'ADD', att, conf);
  assert.equal(add.code, 0, add.stdout);
  const hostIf = hostSide(add.json);
  await run('ip', ['netns', 'del', ns]);

  const del = await fx.runtime.exec('meshd-cni', 'DEL', att, conf);
  assert.equal(del.code, 0, del.stdout + del.stderr);
  assert.ok(!existsSync(`/sys/class/net/${hostIf}`));
  assert.deepEqual(filesUnder(fx.stateDir).filter((f) => !f.endsWith('last_reserved')), []);
  assert.equal((await fx.handler.list()).length, 0);

  const noNetns = await fx.runtime.exec('meshd-cni', 'DEL', att, conf, { CNI_NETNS: undefined });
  assert.equal(noNetns.code, 0, noNetns.stdout);
  const never = await fx.runtime.exec('meshd-cni', 'DEL', { ...att, containerId: `never-${uniq()}` }, conf, { CNI_NETNS: undefined });
  assert.equal(never.code, 0, never.stdout);
});

test('without a running agent ADD fails with a clear CNI error and leaves nothing; STATUS reports 50', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnin');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-noagent', { startServer: false });
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const before = hostVeths();
  const { cidr } = testSubnet(3);
  const conf = fx.conf(cidr);
  const att = { containerId: `noagent-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
  const add = await fx.runtime.exec('meshd-cni', 'ADD', att, conf);
  assert.notEqual(add.code, 0);
  assert.equal(field(add.json, 'code'), 11);
  assert.match(String(field(add.json, 'msg')), /meshd agent is not running/);
  assert.ok(String(field(add.json, 'msg')).includes(fx.socket));
  assert.equal(field(add.json, 'details'), 'MESHD_CNI_AGENT_UNAVAILABLE');
  assert.deepEqual(hostVeths(), before);
  assert.deepEqual(await podLinks(ns), ['lo']);
  assert.deepEqual(filesUnder(fx.stateDir), []);

  const status = await fx.runtime.exec('meshd-cni', 'STATUS', {}, conf);
  assert.notEqual(status.code, 0);
  assert.equal(field(status.json, 'code'), 50);
  assert.equal(field(status.json, 'details'), 'MESHD_CNI_AGENT_UNAVAILABLE');
  assert.match(String(field(status.json, 'msg')), /cannot serve ADD/);

  await fx.server.start();
  const ok = await fx.runtime.exec('meshd-cni', 'STATUS', {}, conf);
  assert.equal(ok.code, 0, ok.stdout);
  assert.equal(ok.stdout, '');
});

test('when the agent refuses the endpoint, ADD rolls back the veth, the address and the record', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnir');
  t.after(() => sb.cleanup());
  class Refusing extends MemoryEndpointHandler {
    override register(_reg: EndpointRegistration): Promise<Endpoint> {
      return Promise.reject(new EndpointRejectedError('identity allocator not ready'));
    }
  }
  const fx = await meshdCniFixture('cni-refuse', { handler: new Refusing() });
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const before = hostVeths();
  const { cidr } = testSubnet(4);
  const att = { containerId: `refused-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
  const add = await fx.runtime.exec('meshd-cni', 'ADD', att, fx.conf(cidr));
  assert.notEqual(add.code, 0);
  assert.equal(field(add.json, 'code'), 101);
  assert.equal(field(add.json, 'details'), 'MESHD_CNI_AGENT_REJECTED: MESHD_CNI_API_REJECTED', "the agent's own code travels in details");
  assert.match(String(field(add.json, 'msg')), /identity allocator not ready/);
  assert.deepEqual(hostVeths(), before);
  assert.deepEqual(await podLinks(ns), ['lo']);
  assert.deepEqual(filesUnder(fx.stateDir).filter((f) => !f.endsWith('last_reserved')), []);
});

test('VERSION lists the spec versions; a 0.4.0 configuration gets a 0.4.0 result; GC releases what is not listed', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cniv');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-gc');
  t.after(() => fx.cleanup());

  const version = await fx.runtime.exec('meshd-cni', 'VERSION', {}, { cniVersion: '1.0.0' });
  assert.equal(version.code, 0);
  assert.deepEqual(version.json, { cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });

  const { cidr } = testSubnet(5);
  const keep = { containerId: `keep-${uniq()}`, netns: `/var/run/netns/${await sb.netns('k')}`, ifname: 'eth0' };
  const stale = { containerId: `stale-${uniq()}`, netns: `/var/run/netns/${await sb.netns('s')}`, ifname: 'eth0' };
  const old = await fx.runtime.exec('meshd-cni', 'ADD', keep, fx.conf(cidr, { cniVersion: '0.4.0' }));
  assert.equal(old.code, 0, old.stdout);
  assert.equal(field(old.json, 'cniVersion'), '0.4.0');
  assert.equal(asResult(old.json).ips?.[0]?.version, '4');
  sb.defer(() => fx.runtime.exec('meshd-cni', 'DEL', keep, fx.conf(cidr)));
  const s = await fx.runtime.exec('meshd-cni', 'ADD', stale, fx.conf(cidr));
  assert.equal(s.code, 0, s.stdout);
  assert.equal(asResult(s.json).ips?.[0]?.version, undefined);
  const staleIf = hostSide(s.json);
  const keepIf = hostSide(old.json);

  const gc = await fx.runtime.exec('meshd-cni', 'GC', {}, fx.conf(cidr, { 'cni.dev/valid-attachments': [{ containerID: keep.containerId, ifname: 'eth0' }] }));
  assert.equal(gc.code, 0, gc.stdout + gc.stderr);
  assert.ok(!existsSync(`/sys/class/net/${staleIf}`), 'stale veth removed');
  assert.ok(existsSync(`/sys/class/net/${keepIf}`), 'valid attachment kept');
  assert.deepEqual(
    (await fx.handler.list()).map((e) => e.containerId),
    [keep.containerId],
  );
  const reservations = readdirSync(`${fx.stateDir}/ipam/meshd/${cidr.replace('/', '_')}`).filter((n) => n !== 'last_reserved');
  assert.equal(reservations.length, 1);
});

test('a DEL the agent fails still releases the veth and the address, keeps the record, and a retried DEL finishes', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnif');
  t.after(() => sb.cleanup());
  class FailsOnce extends MemoryEndpointHandler {
    failures = 1;
    override remove(key: { containerId: string; ifname: string }): Promise<boolean> {
      if (this.failures > 0) {
        this.failures -= 1;
        return Promise.reject(new Error('endpoint manager busy'));
      }
      return super.remove(key);
    }
  }
  const handler = new FailsOnce();
  const fx = await meshdCniFixture('cni-delfail', { handler });
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const { cidr } = testSubnet(13);
  const conf = fx.conf(cidr);
  const att = { containerId: `delfail-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
  const add = await fx.runtime.exec('meshd-cni', 'ADD', att, conf);
  assert.equal(add.code, 0, add.stdout);
  const hostIf = hostSide(add.json);

  const del = await fx.runtime.exec('meshd-cni', 'DEL', att, conf);
  assert.notEqual(del.code, 0);
  assert.equal(field(del.json, 'code'), 101);
  assert.equal(field(del.json, 'details'), 'MESHD_CNI_AGENT_REJECTED: MESHD_CNI_API_INTERNAL');
  assert.match(String(field(del.json, 'msg')), /endpoint manager busy/);
  assert.ok(!existsSync(`/sys/class/net/${hostIf}`), 'veth released anyway');
  assert.deepEqual(
    filesUnder(fx.stateDir).filter((f) => !f.endsWith('last_reserved')),
    [`attachments/meshd/${att.containerId}@eth0.json`],
    'address released, record kept for the retry',
  );
  assert.equal((await fx.handler.list()).length, 1);

  const retry = await fx.runtime.exec('meshd-cni', 'DEL', att, conf);
  assert.equal(retry.code, 0, retry.stdout);
  assert.deepEqual(filesUnder(fx.stateDir).filter((f) => !f.endsWith('last_reserved')), []);
  assert.deepEqual(await fx.handler.list(), []);
});

test('a damaged IPAM reservation is quarantined: ADD never hands its address out, STATUS names it, DEL leaves it reserved', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cniq');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-quarantine');
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const { cidr, prefix } = testSubnet(14);
  const conf = fx.conf(cidr);
  const poolDir = `${fx.stateDir}/ipam/meshd/${cidr.replace('/', '_')}`;
  mkdirSync(poolDir, { recursive: true });
  writeFileSync(`${poolDir}/${prefix}2`, '\0\0\0 torn write');

  const att = { containerId: `q-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
  const add = await fx.runtime.exec('meshd-cni', 'ADD', att, conf);
  assert.equal(add.code, 0, add.stdout);
  assert.equal(firstAddress(add.json), `${prefix}3/32`, 'the damaged reservation still holds its address');

  const status = await fx.runtime.exec('meshd-cni', 'STATUS', {}, conf);
  assert.equal(status.code, 0, status.stdout);
  assert.ok(status.stderr.includes('MESHD_STATE_FILE_CORRUPT'), status.stderr);
  assert.ok(status.stderr.includes(`${poolDir}/${prefix}2`), 'names the file');
  assert.ok(status.stderr.includes(`${prefix}2 quarantined`), status.stderr);

  const del = await fx.runtime.exec('meshd-cni', 'DEL', att, conf);
  assert.equal(del.code, 0, del.stdout);
  const left = readdirSync(poolDir).filter((n) => n !== 'last_reserved').sort();
  assert.equal(left.length, 2, left.join(' '));
  assert.equal(left[0], `${prefix}2`, 'still reserved');
  assert.ok(left[1]?.startsWith(`${prefix}2.corrupt-`), 'the damaged content kept beside it');
  assert.equal(readFileSync(`${poolDir}/${left[1] ?? ''}`, 'utf8'), '\0\0\0 torn write');
});
