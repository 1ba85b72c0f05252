/**
 * The CNI plugin a containerised agent installs runs on the host: with
 * cni.hostRuntime=true (the chart's setting) the real agent installs
 * `meshd-cni` plus `meshd-cni.d/{node,meshd-cni.cjs,run.cjs}` into
 * cni.binDir, and the plugin then performs ADD/DEL for a pod against that
 * running agent while the meshd checkout and the Node.js binary that runs
 * the agent are hidden from it (a private mount namespace with a tmpfs over
 * the checkout and its node_modules and /dev/null over the node binary):
 * it depends on nothing outside the installed files.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { CONFLIST_NAME, HOST_RUNTIME_DIR } from '../../src/cni/installer.js';
import { run } from '../../src/util/exec.js';
import { repoPath, repoRoot } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { CniRuntime, firstAddress } from '../helpers/cni-runtime.js';
import { requirePrivileges } from '../helpers/privileged.js';

const Conflist = z.object({ cniVersion: z.string(), name: z.string(), plugins: z.array(z.object({ type: z.string() }).passthrough()) }).passthrough();

function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A shell prefix that hides the checkout, its node_modules and this process's node binary, then runs the rest. */
function hidingScript(): string {
  // node_modules first: in a plain checkout it is inside the repository, which the second mount hides too.
  const modules = realpathSync(repoPath('node_modules'));
  const hidden = modules.startsWith(`${repoRoot}/`) ? [repoRoot] : [modules, repoRoot];
  const mounts = hidden.map((d) => `mount -t tmpfs meshd-hidden ${shq(d)}`);
  mounts.push(`mount --bind /dev/null ${shq(realpathSync(process.execPath))}`);
  return mounts.join(' && ');
}

test('cni.hostRuntime=true: the installed plugin runs ADD/DEL against the running agent with the checkout and node hidden', async (t) => {
  requirePrivileges();
  const node = new AgentNode({ 'cni.exclusive': false, 'cni.hostRuntime': true }, 17);
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true });
  node.write('pods.yaml', 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: hostpath\n  namespace: default\n  labels: {app: hostpath}\n');
  await node.start();

  const binDir = node.config['cni.binDir'];
  assert.deepEqual(readdirSync(binDir).sort(), ['meshd-cni', HOST_RUNTIME_DIR]);
  assert.deepEqual(readdirSync(join(binDir, HOST_RUNTIME_DIR)).sort(), ['meshd-cni.cjs', 'node', 'run.cjs']);
  const launcher = readFileSync(join(binDir, 'meshd-cni'), 'utf8');
  assert.ok(!launcher.includes(repoRoot), 'the launcher names no path of the checkout');
  assert.ok(!launcher.includes(process.execPath), 'the launcher names no node binary outside binDir');

  // The "host": a mount namespace in which the checkout and the agent's node are gone. First prove the hiding works.
  // (run rejects on a non-zero exit.)
  await run('unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', `${hidingScript()} && ! test -e ${shq(repoPath('package.json'))} && ! ${shq(process.execPath)} --version 2>/dev/null`]);

  // A runtime whose meshd-cni enters such a namespace before exec'ing the installed launcher.
  const wrapDir = join(node.tmp.dir, 'host-view');
  mkdirSync(wrapDir);
  writeFileSync(
    join(wrapDir, 'meshd-cni'),
    `#!/bin/sh\nexec unshare --mount --propagation private /bin/sh -c ${shq(`${hidingScript()} && exec ${shq(join(binDir, 'meshd-cni'))}`)}\n`,
    { mode: 0o755 },
  );
  const rt = new CniRuntime([wrapDir, '/usr/lib/cni'], { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' });
  const version = await rt.exec('meshd-cni', 'VERSION', {}, { cniVersion: '1.0.0' });
  assert.equal(version.code, 0, version.stdout + version.stderr);

  const ns = await node.sb.netns('hostp');
  const list = Conflist.parse(JSON.parse(readFileSync(join(node.config['cni.confDir'], CONFLIST_NAME), 'utf8')));
  const att = { containerId: `c${process.pid}hostpath`, netns: `/var/run/netns/${ns}`, ifname: 'eth0', args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'hostpath' } };
  const res = await rt.addList(list, att);
  node.sb.defer(() => rt.delList(list, att).catch(() => undefined));
  const ip = firstAddress(res).split('/')[0] ?? '';
  assert.match(ip, /^10\.244\./);
  assert.match((await run('ip', ['-n', ns, '-4', 'addr', 'show', 'eth0'])).stdout, new RegExp(`inet ${ip.replace(/\./g, '\\.')}/`));
  const running = node.running;
  assert.ok(running);
  assert.ok(running.agent.endpointList().some((e) => JSON.stringify(e).includes(ip)), 'the agent registered the pod the installed plugin added');

  await rt.delList(list, att);
  assert.ok(!running.agent.endpointList().some((e) => JSON.stringify(e).includes(ip)), 'DEL unregistered it');
  assert.doesNotMatch((await run('ip', ['-n', ns, 'link'])).stdout, /eth0/);
});
