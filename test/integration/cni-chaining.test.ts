/**
 * meshd-cni in conflists with Debian's containernetworking-plugins (1.0.0
 * configurations: the newest spec version those plugins speak):
 *   - first in the chain, followed by portmap, bandwidth and tuning, which
 *     must find what they need in meshd-cni's result (prevResult);
 *   - chained after a primary plugin (ptp + host-local) in generic-veth mode;
 *   - with its IPAM delegated to host-local.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { run } from '../../src/util/exec.js';
import { asResult, filesUnder, firstAddress, hostSide, hostVeths, meshdCniFixture, testSubnet, type Conflist } from '../helpers/cni-runtime.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const uniq = () => `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/** Splits an `iptables -S` line into argv, honouring double quotes (comments carry spaces). */
function splitRule(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let had = false;
  for (let i = 0; i < line.length; i += 1) {
    const ch = line[i];
    if (ch === '\\' && quoted && i + 1 < line.length) {
      cur += line[i + 1];
      i += 1;
    } else if (ch === '"') {
      quoted = !quoted;
      had = true;
    } else if (ch === ' ' && !quoted) {
      if (cur !== '' || had) out.push(cur);
      cur = '';
      had = false;
    } else {
      cur += ch;
    }
  }
  if (cur !== '' || had) out.push(cur);
  return out;
}

/**
 * Undoes every nat-table rule and chain (IPv4 and IPv6) that appears during
 * the test: portmap never removes its shared CNI-HOSTPORT-* chains.
 */
async function restoreNatAfter(t: TestContext): Promise<void> {
  for (const tool of ['iptables', 'ip6tables']) {
    const before = new Set((await run(tool, ['-t', 'nat', '-S'])).stdout.split('\n'));
    t.after(async () => {
      const added = (await run(tool, ['-t', 'nat', '-S'])).stdout.split('\n').filter((l) => l !== '' && !before.has(l));
      const chains = added.filter((l) => l.startsWith('-N ')).map((l) => l.slice(3));
      for (const c of chains) await run(tool, ['-t', 'nat', '-F', c]).catch(() => undefined);
      for (const rule of added.filter((l) => l.startsWith('-A ') && !chains.includes(splitRule(l)[1] ?? ''))) {
        await run(tool, ['-t', 'nat', '-D', ...splitRule(rule).slice(1)]).catch(() => undefined);
      }
      for (const c of chains) await run(tool, ['-t', 'nat', '-X', c]).catch(() => undefined);
    });
  }
}

/** Host links the plugins under test create: meshd-cni's lxc*, ptp's veth*, bandwidth's bwp* (others' links are not ours to judge). */
function ours(): string[] {
  return readdirSync('/sys/class/net').filter((l) => /^(lxc|veth|bwp)/.test(l));
}

/**
 * The links a chain's ADD made: those that appeared between `before` and right after the ADD,
 * except meshd-cni host ends of other test processes (their ifalias names their process id;
 * another test file may run at the same time). After DEL none of them may be left.
 */
function madeByAdd(before: readonly string[]): string[] {
  const foreign = (l: string) => {
    try {
      const alias = readFileSync(`/sys/class/net/${l}/ifalias`, 'utf8');
      return alias.startsWith('meshd-cni:') && !alias.includes(`-${process.pid}-`);
    } catch {
      return false;
    }
  };
  return ours().filter((l) => !before.includes(l) && !foreign(l));
}

/** ptp turns on global IPv4 forwarding; put back what was there. */
function restoreIpForwardAfter(t: TestContext): void {
  const before = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
  t.after(() => writeFileSync('/proc/sys/net/ipv4/ip_forward', before));
}

test('meshd-cni first in a conflist: portmap, bandwidth and tuning work from its prevResult; CHECK and DEL walk the chain', async (t) => {
  requirePrivileges();
  await restoreNatAfter(t);
  const sb = new Sandbox('cnic');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-chain');
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const { cidr } = testSubnet(8);
  const list: Conflist = {
    cniVersion: '1.0.0',
    name: 'meshd',
    plugins: [
      { type: 'meshd-cni', agentSocket: fx.socket, stateDir: fx.stateDir, ipam: { type: 'meshd', subnet: cidr } },
      { type: 'portmap', capabilities: { portMappings: true }, snat: false },
      { type: 'bandwidth', capabilities: { bandwidth: true } },
      { type: 'tuning', mtu: 1400, sysctl: { 'net.ipv4.conf.eth0.arp_ignore': '1' } },
    ],
  };
  const hostPort = 30000 + (process.pid % 20000);
  const runtimeConfig = {
    portMappings: [{ hostPort, containerPort: 8080, protocol: 'tcp' }],
    bandwidth: { ingressRate: 8_000_000, ingressBurst: 80_000, egressRate: 8_000_000, egressBurst: 80_000 },
  };
  const att = { containerId: `chain-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
  const vethsBefore = hostVeths();
  const linksBefore = ours();

  const result = await fx.runtime.addList(list, att, runtimeConfig);
  // If an assertion fails half-way, still let every plugin release what it made.
  sb.defer(() => fx.runtime.delList(list, att, runtimeConfig).catch(() => undefined));
  const made = madeByAdd(linksBefore);
  assert.equal(result.cniVersion, '1.0.0');
  const podIp = firstAddress(result).split('/')[0] ?? '';
  const hostIf = hostSide(result);
  assert.match(hostIf, /^lxc/);

  // portmap: a DNAT to the pod address taken from meshd-cni's result.
  const nat = (await run('iptables-save', ['-t', 'nat'])).stdout;
  assert.match(nat, new RegExp(`--dport ${hostPort} .*--to-destination ${podIp.replace(/\./g, '\\.')}:8080`));
  // bandwidth: shaping on the host end meshd-cni reported, and an ifb for egress.
  const qdisc = (await run('tc', ['qdisc', 'show', 'dev', hostIf])).stdout;
  assert.match(qdisc, /tbf/);
  const newLinks = ours().filter((l) => !linksBefore.includes(l) && l !== hostIf);
  assert.ok(newLinks.some((l) => l.startsWith('bwp')), `ifb for egress shaping (${newLinks.join(',')})`);
  // tuning: inside the pod, on the interface meshd-cni created.
  assert.match((await run('ip', ['-n', ns, 'link', 'show', 'eth0'])).stdout, /mtu 1400/);
  assert.equal((await sb.exec(ns, 'cat', ['/proc/sys/net/ipv4/conf/eth0/arp_ignore'])).stdout.trim(), '1');
  const ep = await fx.handler.get(att);
  assert.deepEqual(ep?.ips, [`${podIp}/32`]);

  // CHECK down the chain, except portmap: Debian's portmap 1.1.1 fails its own
  // CHECK on this host's iptables-nft ("could not check ipv6 dnat") even for
  // a hand-written IPv4 prevResult without meshd-cni in the list.
  await fx.runtime.checkList({ ...list, plugins: list.plugins.filter((p) => p.type !== 'portmap') }, att, runtimeConfig);

  await fx.runtime.delList(list, att, runtimeConfig);
  assert.doesNotMatch((await run('iptables-save', ['-t', 'nat'])).stdout, new RegExp(`--to-destination ${podIp.replace(/\./g, '\\.')}:`));
  assert.deepEqual(hostVeths(), vethsBefore);
  assert.deepEqual(ours().filter((l) => made.includes(l)), [], 'no veth or ifb left');
  assert.deepEqual(filesUnder(fx.stateDir).filter((f) => !f.endsWith('last_reserved')), []);
  assert.deepEqual(await fx.handler.list(), []);
});

test('meshd-cni chained after ptp + host-local (chainingMode generic-veth) registers the primary plugin\'s pod', async (t) => {
  requirePrivileges();
  restoreIpForwardAfter(t);
  const sb = new Sandbox('cnih');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-ptp');
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const { cidr, prefix } = testSubnet(9);
  const dataDir = join(fx.dir, 'host-local');
  const list: Conflist = {
    cniVersion: '1.0.0',
    name: 'ptpnet',
    plugins: [
      { type: 'ptp', ipam: { type: 'host-local', ranges: [[{ subnet: cidr }]], routes: [{ dst: '0.0.0.0/0' }], dataDir } },
      { type: 'meshd-cni', chainingMode: 'generic-veth', agentSocket: fx.socket, stateDir: fx.stateDir },
    ],
  };
  const att = { containerId: `ptp-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0', args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'ns1', K8S_POD_NAME: 'p' } };
  const linksBefore = ours();

  const result = await fx.runtime.addList(list, att);
  sb.defer(() => fx.runtime.delList(list, att).catch(() => undefined));
  const made = madeByAdd(linksBefore);
  const ptpIp = firstAddress(result);
  assert.ok(ptpIp.startsWith(prefix), ptpIp);
  const ptpHostIf = hostSide(result);
  assert.ok(existsSync(`/sys/class/net/${ptpHostIf}`));
  const ep = await fx.handler.get(att);
  assert.ok(ep);
  assert.equal(ep.chained, true);
  assert.deepEqual(ep.ips, [ptpIp]);
  assert.equal(ep.hostInterface, ptpHostIf);
  assert.deepEqual(ep.k8s, { namespace: 'ns1', name: 'p' });

  await fx.runtime.checkList(list, att);
  await fx.runtime.delList(list, att);
  assert.deepEqual(ours().filter((l) => made.includes(l)), [], 'no veth left');
  assert.deepEqual(await fx.handler.list(), []);
  assert.deepEqual(filesUnder(fx.stateDir), []);
  assert.deepEqual(
    filesUnder(dataDir).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f)),
    [],
    'host-local released the address',
  );
});

test('meshd-cni delegates IPAM to host-local when the ipam section names it, dual stack included', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('cnid');
  t.after(() => sb.cleanup());
  const fx = await meshdCniFixture('cni-hl');
  t.after(() => fx.cleanup());
  const ns = await sb.netns('a');
  const { cidr, prefix } = testSubnet(10);
  const dataDir = join(fx.dir, 'host-local');
  const v6 = `fd00:244:${prefix.split('.')[2] ?? '0'}::`;
  const conf = fx.conf(cidr, {
    cniVersion: '1.0.0',
    ipam: { type: 'host-local', ranges: [[{ subnet: cidr, rangeStart: `${prefix}50` }], [{ subnet: `${v6}/64`, rangeStart: `${v6}50` }]], dataDir },
  });
  const att = { containerId: `hl-${uniq()}`, netns: `/var/run/netns/${ns}`, ifname: 'eth0' };
  const add = await fx.runtime.exec('meshd-cni', 'ADD', att, conf);
  assert.equal(add.code, 0, add.stdout + add.stderr);
  const ip = asResult(add.json).ips?.[0];
  assert.equal(ip?.address, `${prefix}50/32`);
  assert.equal(ip?.gateway, `${prefix}1`);
  // Dual stack: the IPv6 address host-local gave is configured (usable at once, no DAD) with its default route.
  const ip6 = asResult(add.json).ips?.[1];
  assert.equal(ip6?.address, `${v6}50/128`);
  const addr6 = (await run('ip', ['-n', ns, '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'])).stdout;
  assert.match(addr6, new RegExp(`${v6}50/128`));
  assert.doesNotMatch(addr6, /tentative/);
  assert.match((await run('ip', ['-n', ns, '-6', 'route'])).stdout, new RegExp(`default via ${v6}1 dev eth0`));
  assert.match((await run('ip', ['-6', 'route', 'show', `${v6}50`])).stdout, /dev lxc/);
  assert.ok(existsSync(join(dataDir, 'meshd', `${prefix}50`)), 'host-local holds the reservation');
  const check = await fx.runtime.exec('meshd-cni', 'CHECK', att, { ...conf, prevResult: add.json });
  assert.equal(check.code, 0, check.stdout);
  const del = await fx.runtime.exec('meshd-cni', 'DEL', att, { ...conf, prevResult: add.json });
  assert.equal(del.code, 0, del.stdout);
  assert.ok(!existsSync(join(dataDir, 'meshd', `${prefix}50`)), 'host-local released it');
  assert.deepEqual(filesUnder(fx.stateDir), []);
});
