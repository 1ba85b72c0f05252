/**
 * meshd's CNI installation beside Istio's CNI and another plugin, with the
 * real agent (standalone, cni.exclusive=false, as examples/istio/values-*.yaml
 * set it) restarted several times: another plugin's configuration in the
 * same directory is never renamed, rewritten or removed, the entry Istio's
 * CNI installer appends to the primary conflist stays, in order, and the
 * chained plugin runs when a pod is created.
 *
 * Istio's own `istio-cni` binary is not packaged for this machine, so the
 * appended entry is Debian's `tuning` plugin (containernetworking-plugins),
 * appended exactly the way istio-cni's installer appends itself: read the
 * primary conflist, push one object onto "plugins", write it back.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { BACKUP_SUFFIX, CONFLIST_NAME } from '../../src/cni/installer.js';
import { run } from '../../src/util/exec.js';
import { AgentNode } from '../helpers/agent-node.js';
import { CniRuntime, firstAddress, testSubnet } from '../helpers/cni-runtime.js';
import { requirePrivileges } from '../helpers/privileged.js';

const Conflist = z.object({ cniVersion: z.string(), name: z.string(), plugins: z.array(z.object({ type: z.string() }).passthrough()) }).passthrough();

/** What must not change about a file another installer owns: bytes, inode (not replaced), mtime (not rewritten). */
function fingerprint(path: string): { text: string; ino: number; mtimeMs: number } {
  const st = statSync(path);
  return { text: readFileSync(path, 'utf8'), ino: st.ino, mtimeMs: st.mtimeMs };
}

test('cni.exclusive=false across agent restarts and an upgrade: another plugin\'s conflist is untouched, the chained entry stays in meshd\'s conflist, and it runs for a new pod', async (t) => {
  requirePrivileges();
  const node = new AgentNode({ 'cni.exclusive': false }, 11);
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  node.write('pods.yaml', 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: chain\n  namespace: default\n  labels: {app: chain}\n');
  await node.start();
  const dir = node.config['cni.confDir'];
  const primary = join(dir, CONFLIST_NAME);

  // Another plugin's configurations in the same directory (sorting after meshd's, as a secondary network would).
  const other = join(dir, '10-other.conflist');
  writeFileSync(other, `${JSON.stringify({ cniVersion: '1.0.0', name: 'other', plugins: [{ type: 'bridge', bridge: 'cni-other0', ipam: { type: 'host-local', subnet: '10.99.0.0/24' } }] }, null, 2)}\n`);
  const legacy = join(dir, '99-legacy.conf');
  writeFileSync(legacy, `${JSON.stringify({ cniVersion: '0.4.0', name: 'legacy', type: 'ptp' })}\n`);
  // The chained entry, appended as istio-cni's installer appends itself.
  const chained = { type: 'tuning', mtu: 1400, sysctl: { 'net.ipv4.conf.eth0.arp_ignore': '1' } };
  const list = Conflist.parse(JSON.parse(readFileSync(primary, 'utf8')));
  writeFileSync(primary, JSON.stringify({ ...list, plugins: [...list.plugins, chained] }, null, 2));

  const before = { other: fingerprint(other), legacy: fingerprint(legacy) };
  const written = readFileSync(primary, 'utf8');
  for (let restart = 1; restart <= 3; restart++) {
    await node.stopAgent();
    // The third start is an upgrade whose configuration changes meshd's own conflist (another pod CIDR): a real rewrite.
    if (restart === 3) node.config['ipam.podCIDR'] = testSubnet(13).cidr;
    await node.start();
    assert.deepEqual(fingerprint(other), before.other, `restart ${restart}: 10-other.conflist untouched`);
    assert.deepEqual(fingerprint(legacy), before.legacy, `restart ${restart}: 99-legacy.conf untouched`);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith(BACKUP_SUFFIX)), [], `restart ${restart}: nothing renamed away`);
    const now = Conflist.parse(JSON.parse(readFileSync(primary, 'utf8')));
    assert.deepEqual(now.plugins.map((p) => p.type), ['meshd-cni', 'tuning'], `restart ${restart}: the chain`);
    assert.deepEqual(now.plugins[1], chained, `restart ${restart}: the chained entry as written`);
  }
  assert.notEqual(readFileSync(primary, 'utf8'), written, 'the upgrade rewrote meshd\'s conflist');
  assert.match(readFileSync(primary, 'utf8'), new RegExp(testSubnet(13).cidr.replace(/\./g, '\\.')));

  // A pod through the conflist on disk, as containerd runs it (CNI_ARGS with IgnoreUnknown=1, which chained
  // plugins such as tuning need to accept the K8S_POD_* arguments): meshd-cni first, then the chained plugin.
  const ns = await node.sb.netns('chain');
  const onDisk = Conflist.parse(JSON.parse(readFileSync(primary, 'utf8')));
  const rt = new CniRuntime([node.config['cni.binDir'], '/usr/lib/cni']);
  const att = { containerId: `c${process.pid}chain`, netns: `/var/run/netns/${ns}`, ifname: 'eth0', args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'chain' } };
  const res = await rt.addList(onDisk, att);
  node.sb.defer(() => rt.delList(onDisk, att).catch(() => undefined));
  assert.match(firstAddress(res), /^10\./);
  assert.match((await run('ip', ['-n', ns, 'link', 'show', 'eth0'])).stdout, /mtu 1400/);
  assert.equal((await node.sb.exec(ns, 'cat', ['/proc/sys/net/ipv4/conf/eth0/arp_ignore'])).stdout.trim(), '1');
  await rt.delList(onDisk, att);
  assert.deepEqual(fingerprint(other), before.other);
});
