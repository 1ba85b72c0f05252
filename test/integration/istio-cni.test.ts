/**
 * meshd's CNI installation beside Istio's CNI and another plugin, with the
 * real agent (standalone, cni.exclusive=false, as examples/istio/values-*.yaml
 * set it) restarted several times: another plugin's configuration in the
 * same directory is never renamed, rewritten or removed, the entry Istio's
 * CNI installer appends to the primary conflist stays, in order, and the
 * chained plugin runs when a pod is created.
 *
 * The chained plugin is Istio's real `istio-cni` (scripts/istio-cni.sh builds
 * it from the Go module proxy), appended the way istio-cni's installer
 * appends itself: read the primary conflist, push one object onto
 * "plugins", write it back. It reads its kubeconfig from cni_agent_run_dir
 * and looks the pod up in a real kube-apiserver (src/devcluster/kube-cluster.ts):
 * for a pod with an `istio-proxy` container and the `sidecar.istio.io/status`
 * annotation (what Istio's injector leaves) it programs the sidecar's
 * iptables REDIRECT rules in the pod's network namespace, after meshd-cni
 * has made the interface, and passes meshd-cni's result through.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { BACKUP_SUFFIX, CONFLIST_NAME } from '../../src/cni/installer.js';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startKubeCluster } from '../../src/devcluster/kube-cluster.js';
import { CniRuntime, firstAddress, testSubnet } from '../helpers/cni-runtime.js';
import { requirePrivileges } from '../helpers/privileged.js';

const Conflist = z.object({ cniVersion: z.string(), name: z.string(), plugins: z.array(z.object({ type: z.string() }).passthrough()) }).passthrough();

/** What must not change about a file another installer owns: bytes, inode (not replaced), mtime (not rewritten). */
function fingerprint(path: string): { text: string; ino: number; mtimeMs: number } {
  const st = statSync(path);
  return { text: readFileSync(path, 'utf8'), ino: st.ino, mtimeMs: st.mtimeMs };
}

/** The istio-cni binary scripts/istio-cni.sh built (setup runs it); a test without it fails saying so. */
function istioCniBin(): string {
  const bin = execFileSync('bash', [repoPath('scripts', 'istio-cni.sh'), '--print-bin'], { encoding: 'utf8' }).trim();
  assert.ok(existsSync(bin), `istio-cni is not built: run scripts/istio-cni.sh (${bin})`);
  return bin;
}

test('cni.exclusive=false across agent restarts and an upgrade: another plugin\'s conflist is untouched, the chained istio-cni entry stays in meshd\'s conflist, and the real istio-cni runs after meshd-cni for a new sidecar pod', async (t) => {
  requirePrivileges();
  const istioCni = istioCniBin();
  const kube = await startKubeCluster({ t });
  await kube.ensureDefaultServiceAccount('default');
  // The pod as Istio's injector leaves it: an istio-proxy container running `proxy sidecar` and the status annotation.
  await kube.apply({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'chain', namespace: 'default', labels: { app: 'chain' }, annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"],"initContainers":null}' } },
    spec: {
      nodeName: 'test-node',
      containers: [
        { name: 'app', image: 'app', ports: [{ containerPort: 8080 }] },
        { name: 'istio-proxy', image: 'proxyv2', args: ['proxy', 'sidecar'], securityContext: { runAsUser: 1337, runAsGroup: 1337 } },
      ],
    },
  });
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
  // The chained entry, appended as istio-cni's installer appends itself (its kubeconfig in cni_agent_run_dir, as the installer writes it).
  const agentRunDir = join(node.tmp.dir, 'istio-cni-run');
  mkdirSync(agentRunDir);
  copyFileSync(kube.kubeconfigPath, join(agentRunDir, 'istio-cni-kubeconfig'));
  const chained = { type: 'istio-cni', plugin_log_level: 'info', cni_agent_run_dir: agentRunDir, ambient_enabled: false, exclude_namespaces: ['kube-system'], pod_namespace: 'istio-system' };
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
    assert.deepEqual(now.plugins.map((p) => p.type), ['meshd-cni', 'istio-cni'], `restart ${restart}: the chain`);
    assert.deepEqual(now.plugins[1], chained, `restart ${restart}: the chained entry as written`);
  }
  assert.notEqual(readFileSync(primary, 'utf8'), written, 'the upgrade rewrote meshd\'s conflist');
  assert.match(readFileSync(primary, 'utf8'), new RegExp(testSubnet(13).cidr.replace(/\./g, '\\.')));

  // A pod through the conflist on disk, as containerd runs it (CNI_ARGS with IgnoreUnknown=1): meshd-cni first, then istio-cni.
  const ns = await node.sb.netns('chain');
  const onDisk = Conflist.parse(JSON.parse(readFileSync(primary, 'utf8')));
  const rt = new CniRuntime([node.config['cni.binDir'], dirname(istioCni), '/usr/lib/cni']);
  const att = { containerId: `c${process.pid}chain`, netns: `/var/run/netns/${ns}`, ifname: 'eth0', args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'chain' } };
  const res = await rt.addList(onDisk, att);
  node.sb.defer(() => rt.delList(onDisk, att).catch(() => undefined));
  assert.match(firstAddress(res), /^10\./, 'meshd-cni\'s result passed through istio-cni');
  // istio-cni's sidecar redirect, in the pod's namespace only: inbound to 15006, outbound to 15001, the proxy's uid exempt.
  const nat = (await node.sb.exec(ns, 'iptables-save', ['-t', 'nat'])).stdout;
  assert.match(nat, /-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006/);
  assert.match(nat, /-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001/);
  assert.match(nat, /--uid-owner 1337 -j RETURN/);
  assert.doesNotMatch((await run('iptables-save', ['-t', 'nat'])).stdout, /ISTIO_REDIRECT/, 'nothing in the host namespace');
  await rt.delList(onDisk, att);
  assert.deepEqual(fingerprint(other), before.other);
});
