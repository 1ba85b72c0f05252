/**
 * The agent image as built (scripts/build-image.sh), run as the DaemonSet runs
 * it: podman in a network namespace this test made standing in for the host
 * network, the DaemonSet's capabilities instead of privileged, and its host
 * paths (bpffs, the cgroup v2 root, the CNI directories, the state directory)
 * bound from per-test directories. Shows the image's versions, that the
 * agent loads its BPF objects on this kernel and answers the probe the
 * DaemonSet uses, installs meshd-cni beside another plugin's conflist without
 * touching it (cni.exclusive=false), and stops cleanly on SIGTERM.
 *
 * Builds the image first when its inputs changed (a cold build takes minutes;
 * an unchanged tree costs the hash of its files). Containers, the namespace,
 * the pins and the cgroup are removed afterwards; the image stays cached.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { z } from 'zod';
import { StatusResponse } from '../../src/api/status.js';
import { CONFLIST_NAME, HOST_RUNTIME_DIR } from '../../src/cni/installer.js';
import { run } from '../../src/util/exec.js';
import { packageVersion, repoPath } from '../../src/util/paths.js';
import { CGROUP2_ROOT, tempCgroup, tempPinDir } from '../helpers/bpffs.js';
import { tempDir, testSubnet } from '../helpers/cni-runtime.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const exec = promisify(execFile);

async function podman(args: readonly string[], timeoutMs = 60_000): Promise<{ stdout: string; stderr: string }> {
  return exec('podman', args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
}

/** The DaemonSet as the chart renders it by default: capabilities, probe command, host paths. */
const daemonSetValues = z.object({
  stateDir: z.string(),
  bpf: z.object({ root: z.string() }),
  cgroup: z.object({ hostRoot: z.string() }),
  cni: z.object({ confDir: z.string(), binDir: z.string() }),
  image: z.object({ repository: z.string(), tag: z.string() }),
  securityContext: z.object({ capabilities: z.object({ ciliumAgent: z.array(z.string()) }) }),
});

/** Linux capability numbers of the DaemonSet's capabilities (include/uapi/linux/capability.h). */
const CAP_NUMBERS: Record<string, number> = { NET_ADMIN: 12, NET_RAW: 13, SYS_ADMIN: 21, SYS_RESOURCE: 24, PERFMON: 38, BPF: 39 };

/** The capabilities in this process's bounding set: a container cannot be given more. */
function boundingCaps(): bigint {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m?.[1] ? BigInt(`0x${m[1]}`) : 0n;
}

const OTHER_CONFLIST = JSON.stringify({ cniVersion: '1.0.0', name: 'other-net', plugins: [{ type: 'bridge', bridge: 'cni0' }] }, null, 2);

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;

test('install: the agent image runs as the DaemonSet runs it', { timeout: 30 * 60_000 }, async (t) => {
  requirePrivileges();
  const values = daemonSetValues.parse(parse(readFileSync(repoPath('install', 'helm', 'meshd', 'values.yaml'), 'utf8')));
  const version = packageVersion();

  // The image, built or found by the hash of its inputs.
  const build = await exec('bash', [repoPath('scripts', 'build-image.sh')], { timeout: 40 * 60_000, maxBuffer: 64 * 1024 * 1024 });
  const imageId = build.stdout.trim().split('\n').pop() ?? '';
  assert.match(imageId, /^[0-9a-f]{64}$/, 'the script prints the image id');
  const ref = (await exec('bash', [repoPath('scripts', 'build-image.sh'), '--print-ref'])).stdout.trim();
  // The chart's default image is the one the script tags (an empty tag is the chart's appVersion).
  const chart = z.object({ appVersion: z.string() }).parse(parse(readFileSync(repoPath('install', 'helm', 'meshd', 'Chart.yaml'), 'utf8')));
  assert.equal(ref, `docker.io/${values.image.repository}:${values.image.tag || chart.appVersion}`);
  assert.equal((await podman(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim(), imageId);

  // Versions inside the image.
  const runFlags = (await exec('bash', [repoPath('scripts', 'build-image.sh'), '--run-flags'])).stdout.split('\n').filter(Boolean);
  const meshdVersion = (await podman(['run', '--rm', ...runFlags, '--network', 'none', ref, 'version'])).stdout;
  assert.match(meshdVersion, new RegExp(`\\b${version.replaceAll('.', '\\.')}\\b`), 'meshd version is package.json\'s');
  const envoyVersion = (await podman(['run', '--rm', ...runFlags, '--network', 'none', '--entrypoint', 'envoy', ref, '--version'])).stdout;
  assert.match(envoyVersion, /\/1\.40\.\d+\//, 'Envoy 1.40.x');

  // The host the DaemonSet would see: a network namespace, bpffs, a cgroup v2 directory, CNI and state directories.
  const sb = new Sandbox('img');
  const pins = tempPinDir('image');
  const cgroup = tempCgroup('image');
  const tmp = tempDir('image');
  const name = `meshd-image-test-${process.pid}`;
  t.after(async () => {
    await podman(['rm', '-f', '-t', '0', name]).catch(() => undefined);
    await sb.cleanup();
    cgroup.cleanup();
    pins.cleanup();
    tmp.remove();
  });
  const ns = await sb.netns('host');
  const dirs = { config: join(tmp.dir, 'etc-meshd'), confDir: join(tmp.dir, 'net.d'), binDir: join(tmp.dir, 'cni-bin'), state: join(tmp.dir, 'run') };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  mkdirSync(join(dirs.config, 'manifests'));
  writeFileSync(join(dirs.config, 'manifests', 'policy.yaml'), POLICY);
  writeFileSync(join(dirs.confDir, '10-other.conflist'), OTHER_CONFLIST);
  const otherBefore = statSync(join(dirs.confDir, '10-other.conflist'));
  writeFileSync(
    join(dirs.config, 'config.yaml'),
    [
      'nodeName: image-test',
      `bpf.root: ${pins.path}`,
      `cgroup.hostRoot: ${cgroup.path}`,
      'cni.exclusive: false',
      'cni.hostRuntime: true',
      `ipam.podCIDR: ${testSubnet(7).cidr}`,
      'log.format: json',
      '',
    ].join('\n'),
  );

  // As the DaemonSet: its capabilities (all others dropped), no privilege escalation, its mounts at its
  // paths. A capability this process does not hold itself cannot be granted (SYS_RESOURCE on machines
  // whose root lacks it): it is left out and named in the test's output.
  const bounding = boundingCaps();
  const wanted = values.securityContext.capabilities.ciliumAgent;
  for (const c of wanted) assert.ok(CAP_NUMBERS[c] !== undefined, `capability ${c} of the chart is known to the test`);
  const granted = wanted.filter((c) => (bounding >> BigInt(CAP_NUMBERS[c] ?? 0)) & 1n);
  const withheld = wanted.filter((c) => !granted.includes(c));
  if (withheld.length > 0) t.diagnostic(`capabilities this machine's root does not hold, not granted: ${withheld.join(', ')}`);
  assert.ok(['BPF', 'NET_ADMIN', 'SYS_ADMIN'].every((c) => granted.includes(c)), 'the capabilities the datapath needs are granted');
  const caps = granted.flatMap((c) => ['--cap-add', c]);
  await podman([
    'run', '-d', ...runFlags, '--name', name, '--network', `ns:/run/netns/${ns}`,
    '--cap-drop', 'ALL', ...caps, '--security-opt', 'no-new-privileges', '--security-opt', 'seccomp=unconfined',
    '-e', 'NODE_NAME=image-test',
    '-v', `${dirs.config}:/etc/meshd:ro`,
    // The host's bpffs and cgroup2 mounts at their own paths (HostToContainer propagation), as the
    // DaemonSet mounts bpf.root and cgroup.hostRoot; the agent's keys name this test's directories in
    // them, so its pins and socket hooks stay apart from everything else on the machine.
    '-v', `${dirname(pins.path)}:${dirname(pins.path)}:rslave`,
    '-v', `${CGROUP2_ROOT}:${CGROUP2_ROOT}:rslave`,
    '-v', `${dirs.confDir}:${values.cni.confDir}`,
    '-v', `${dirs.binDir}:${values.cni.binDir}`,
    '-v', `${dirs.state}:${values.stateDir}`,
    // (A host without /lib/modules, a kernel with everything built in, has nothing to mount there.)
    ...(existsSync('/lib/modules') ? ['-v', '/lib/modules:/lib/modules:ro'] : []),
    ref, 'agent', '--config=/etc/meshd/config.yaml', '--standalone=/etc/meshd/manifests',
  ]);
  const logs = async () => { const r = await podman(['logs', name]).catch(() => ({ stdout: '', stderr: '' })); return `${r.stdout}${r.stderr}`.split('\n').slice(-30).join('\n'); };

  // The DaemonSet's probe command, run in the container: it answers once the agent is up.
  const probe = ['exec', name, 'meshd', 'status', `--api-socket=${values.stateDir}/meshd.sock`];
  const deadline = Date.now() + 90_000;
  for (;;) {
    const ok = await podman(probe, 10_000).then(() => true, () => false);
    if (ok) break;
    if (Date.now() > deadline) assert.fail(`the probe never passed; agent log:\n${await logs()}`);
    await sleep(500);
  }
  const status = async () => StatusResponse.parse(JSON.parse((await podman([...probe, '-o', 'json'])).stdout));
  const first = await status();
  assert.equal(first.agent.state, 'running');
  assert.equal(first.agent.version, version);
  assert.equal(first.counts.policies, 1, 'the manifest directory was read');
  assert.equal(first.datapath.pinDir, join(pins.path, 'meshd'));
  // The agent runs the image's Envoy (MESHD_ENVOY_BIN), which comes up ready.
  let envoy = 'state' in first.envoy ? null : first.envoy.envoy;
  for (let i = 0; i < 120 && envoy?.state !== 'ready'; i++) {
    await sleep(500);
    const s = await status();
    envoy = 'state' in s.envoy ? null : s.envoy.envoy;
  }
  assert.equal(envoy?.state, 'ready', `Envoy in the container: ${JSON.stringify(envoy)}`);
  assert.match(envoy.version ?? '', /1\.40\.\d+/);

  // The BPF objects from the image are loaded in this kernel: maps pinned on the host's bpffs, socket LB hooks on the cgroup.
  assert.ok(existsSync(join(pins.path, 'meshd', 'meshd_policy')), 'policy map pinned on the host bpffs');
  const hooks = (await exec('bpftool', ['-j', 'cgroup', 'show', cgroup.path])).stdout;
  assert.match(hooks, /connect4/, `socket LB hooks attached to the cgroup: ${hooks}`);

  // The CNI plugin and its conflist in the host paths; another plugin's conflist untouched (cni.exclusive=false).
  assert.ok(existsSync(join(dirs.confDir, CONFLIST_NAME)), 'meshd conflist installed');
  assert.ok(existsSync(join(dirs.binDir, 'meshd-cni')), 'meshd-cni installed');
  assert.ok(existsSync(join(dirs.binDir, HOST_RUNTIME_DIR)), 'Node.js and the plugin bundle copied for the host runtime');
  const otherAfter = statSync(join(dirs.confDir, '10-other.conflist'));
  assert.equal(readFileSync(join(dirs.confDir, '10-other.conflist'), 'utf8'), OTHER_CONFLIST);
  assert.equal(otherAfter.mtimeMs, otherBefore.mtimeMs);
  // The installed plugin runs on the host, outside the image, as a runtime would run it. Its launcher
  // names absolute paths under cni.binDir, so it runs where the host directory is at that path: in a
  // private mount namespace with this test's directory bound at /opt/cni/bin (nothing on the host changes).
  const script = `mount -t tmpfs none /opt && mkdir -p ${values.cni.binDir} && mount --bind "$0" ${values.cni.binDir} && exec ${values.cni.binDir}/meshd-cni`;
  const cniVersion = await run('env', ['CNI_COMMAND=VERSION', 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, dirs.binDir], { input: '{"cniVersion":"1.0.0"}', timeoutMs: 30_000 });
  assert.match(cniVersion.stdout, /supportedVersions/);

  // SIGTERM (what the kubelet sends): the agent stops by itself, well within the grace period, exit 0.
  const stopStart = Date.now();
  await podman(['kill', '--signal', 'TERM', name]);
  const exitCode = (await podman(['wait', name], 60_000)).stdout.trim();
  assert.equal(exitCode, '0', `exit code after SIGTERM; agent log:\n${await logs()}`);
  assert.ok(Date.now() - stopStart < 30_000, 'stopped within terminationGracePeriodSeconds');
  assert.match(await logs(), /stopping; the datapath stays enforcing/);
  // The datapath stays pinned after the agent stopped (the next agent adopts it).
  assert.ok(existsSync(join(pins.path, 'meshd', 'meshd_policy')));
  assert.equal(readFileSync(join(dirs.confDir, '10-other.conflist'), 'utf8'), OTHER_CONFLIST);
});
