/**
 * `meshd uninstall --node` leaves the node clean: a real agent (standalone,
 * cni.hostRuntime=true as the chart runs it) creates a pod through its CNI
 * plugin, so there are tcx programs on the pod's host veth, socket-LB
 * programs on the agent's cgroup, pins, the proxy policy routing, CNI files
 * state and its Envoy; the agent stops (SIGTERM leaves all of that enforcing
 * and the Envoy serving); the
 * command then removes every one of them, while another plugin's conflist
 * in the same directory stays byte for byte and inode for inode. With the
 * agent running it refuses and changes nothing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { z } from 'zod';
import { stopProcesses } from '../../envoy/orphans.js';
import { startNodeProxy } from '../../src/agent/start-proxy.js';
import { CONFLIST_NAME } from '../../src/cni/installer.js';
import { defaultPolicyRouting } from '../../src/proxy/policy-routing.js';
import { envoysOfWorkDir } from '../../src/proxy/supervisor-process.js';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { requirePrivileges } from '../helpers/privileged.js';

function fingerprint(path: string): { text: string; ino: number; mtimeMs: number } {
  const st = statSync(path);
  return { text: readFileSync(path, 'utf8'), ino: st.ino, mtimeMs: st.mtimeMs };
}

/**
 * The CLI in a child process, asynchronously: this process must go on serving the agent's socket and reaping the
 * Envoy it started (the agent runs in this test process; on a node the Envoys' parent has exited and init reaps them).
 */
function uninstall(configFile: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [repoPath('bin', 'meshd.mjs'), 'uninstall', '--node', '--config', configFile], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
    });
  });
}

async function ruleCount(): Promise<number> {
  const table = String(defaultPolicyRouting.table);
  return (await run('ip', ['-4', 'rule', 'show'])).stdout.split('\n').filter((l) => new RegExp(`lookup ${table}\\b`).test(l)).length;
}

/** The ids of the BPF links that exist now (tcx links included; this bpftool shows their type as a number). */
async function linkIds(): Promise<number[]> {
  return z.array(z.looseObject({ id: z.number() })).parse(JSON.parse((await run('bpftool', ['-j', 'link', 'show'])).stdout || '[]')).map((l) => l.id);
}

/** The id of the link pinned at `path`. */
async function pinnedLinkId(path: string): Promise<number> {
  return z.looseObject({ id: z.number() }).parse(JSON.parse((await run('bpftool', ['-j', 'link', 'show', 'pinned', path])).stdout)).id;
}

async function programsOnCgroup(path: string): Promise<string> {
  return (await run('bpftool', ['cgroup', 'show', path])).stdout.trim();
}

test('meshd uninstall --node after the agent stops: no pins, programs, policy routing, CNI files or state of meshd remain; another CNI config is untouched', async (t) => {
  requirePrivileges();
  // Envoy on and left serving when the agent stops (proxy.stopOnShutdown=false, the default): uninstall stops it.
  const node = new AgentNode({ 'cni.exclusive': false, 'cni.hostRuntime': true, 'envoy.enabled': true, 'proxy.stopOnShutdown': false }, 19);
  let uninstalled = false;
  t.after(async () => {
    // After a successful uninstall the pod's veth went with its namespace below and nothing of the agent is left to stop.
    if (uninstalled) {
      await node.sb.cleanup();
      await node.cgroup.cleanup();
      await node.pins.cleanup();
      node.tmp.remove();
    } else {
      await node.cleanup();
    }
    // Whatever happened: no Envoy of this test outlives it.
    await stopProcesses(envoysOfWorkDir(join(node.config.stateDir, 'envoy')));
  });
  mkdirSync(node.manifests, { recursive: true });
  node.write('pods.yaml', 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: clean\n  namespace: default\n  labels: {app: clean}\n');
  const confDir = node.config['cni.confDir'];
  mkdirSync(confDir, { recursive: true });
  const other = join(confDir, '10-other.conflist');
  writeFileSync(other, `${JSON.stringify({ cniVersion: '1.0.0', name: 'other', plugins: [{ type: 'bridge', bridge: 'cni-other0' }] }, null, 2)}\n`);
  const otherBefore = fingerprint(other);
  const configFile = join(node.tmp.dir, 'config.yaml');
  // The keys that name the node's paths, as the chart's ConfigMap carries them (the rest: defaults).
  const c = node.config;
  writeFileSync(configFile, stringify({ nodeName: c.nodeName, stateDir: c.stateDir, 'bpf.root': c['bpf.root'], 'cni.confDir': c['cni.confDir'], 'cni.binDir': c['cni.binDir'], 'cni.exclusive': false }));

  // The Envoys as `meshd agent` runs them: left serving when the agent stops.
  await node.start({ startProxy: startNodeProxy });
  await node.addPod('clean');
  // The plugin sets each host end's alias to "meshd-cni:<containerId>/<ifname>"; addPod's container id is c<pid><name>.
  const veth = readdirSync('/sys/class/net').find((n) => {
    try {
      return readFileSync(`/sys/class/net/${n}/ifalias`, 'utf8').includes(`meshd-cni:c${process.pid}clean/`);
    } catch {
      return false;
    }
  });
  assert.ok(veth !== undefined, 'the pod has a host veth');
  const ifindex = readFileSync(`/sys/class/net/${veth}/ifindex`, 'utf8').trim();
  const linkDir = join(node.config['bpf.root'], 'meshd', 'links');
  const vethLinks = [await pinnedLinkId(join(linkDir, `lxc_${ifindex}_ingress`)), await pinnedLinkId(join(linkDir, `lxc_${ifindex}_egress`))];
  assert.deepEqual(vethLinks.filter((id) => !existsSync(linkDir) || id <= 0), [], 'tcx links on the pod veth');
  assert.notEqual(await programsOnCgroup(node.cgroup.path), '', 'socket-LB programs on the cgroup');
  assert.equal(await ruleCount(), 1, 'the proxy policy routing (Envoy installs it at start)');

  const refused = await uninstall(configFile);
  assert.equal(refused.status, 5, `refused while the agent runs: ${refused.stdout}${refused.stderr}`);
  assert.match(refused.stderr, /MESHD_UNINSTALL_AGENT_RUNNING/);
  assert.ok(existsSync(join(confDir, CONFLIST_NAME)) && existsSync(join(node.config['bpf.root'], 'meshd')), 'nothing removed');

  await node.stopAgent();
  const envoyDir = join(node.config.stateDir, 'envoy');
  assert.ok(envoysOfWorkDir(envoyDir).length > 0, 'the stopped agent left its Envoy serving');
  const linksBefore = await linkIds();
  assert.deepEqual(vethLinks.filter((id) => !linksBefore.includes(id)), [], 'a stopped agent leaves the datapath enforcing');
  const r = await uninstall(configFile);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  uninstalled = true;

  assert.deepEqual(readdirSync(confDir), ['10-other.conflist'], 'only the other plugin\'s configuration is left');
  assert.deepEqual(fingerprint(other), otherBefore, 'the other plugin\'s conflist untouched');
  assert.deepEqual(readdirSync(node.config['cni.binDir']), [], 'meshd-cni and meshd-cni.d removed');
  assert.ok(!existsSync(join(node.config['bpf.root'], 'meshd')), 'no pins under bpf.root/meshd');
  const linksAfter = await linkIds();
  assert.deepEqual(vethLinks.filter((id) => linksAfter.includes(id)), [], 'the tcx links on the pod veth are gone (programs detached)');
  assert.equal(await programsOnCgroup(node.cgroup.path), '', 'no program on the cgroup');
  assert.equal(await ruleCount(), 0, 'no policy-routing rule');
  assert.equal((await run('ip', ['-4', 'route', 'show', 'table', String(defaultPolicyRouting.table)]).catch(() => ({ stdout: '' }))).stdout.trim(), '', 'the route table is empty');
  assert.ok(!existsSync(node.config.stateDir), 'stateDir removed');
  assert.deepEqual(envoysOfWorkDir(envoyDir), [], 'no Envoy of this node left running');

  const again = await uninstall(configFile);
  assert.equal(again.status, 0, again.stderr);
});
