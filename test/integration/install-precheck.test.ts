/**
 * `meshd install precheck` and `meshd doctor` on this machine: the machine
 * checks for real, the install checks on a real CNI directory and a real
 * kube-proxy chain (KUBE-SERVICES, created in a scratch network namespace the
 * command runs in), exit statuses by the kind of the first failure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { z } from 'zod';
import { EXIT_STATUS } from '../../src/util/errors.js';
import { repoPath } from '../../src/util/paths.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const Output = z.object({ checks: z.array(z.object({ name: z.string(), ok: z.boolean(), required: z.boolean(), detail: z.string(), fix: z.string().optional(), kind: z.string().optional() })) });

async function meshd(ns: string, args: string[]): Promise<{ code: number; out: z.infer<typeof Output> | undefined; stderr: string }> {
  // nsenter --net switches only the network namespace (`ip netns exec` would remount /sys, hiding cgroup2 and bpffs).
  const r = await promisify(execFile)('nsenter', [`--net=/var/run/netns/${ns}`, process.execPath, repoPath('bin', 'meshd.mjs'), ...args], { timeout: 120_000 }).then(
    (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
    (e: unknown) => {
      const f = z.object({ code: z.number(), stdout: z.string(), stderr: z.string() }).parse(e);
      return f;
    },
  );
  const parsed = r.stdout.trim() ? Output.safeParse(JSON.parse(r.stdout)) : undefined;
  return { code: r.code, out: parsed?.success ? parsed.data : undefined, stderr: r.stderr };
}

const check = (out: z.infer<typeof Output> | undefined, name: string) => {
  const c = out?.checks.find((x) => x.name === name);
  assert.ok(c, `a ${name} check in ${JSON.stringify(out)}`);
  return c;
};

test('install precheck: CNI configurations, kube-proxy and the Istio settings on a real node; exit status by kind', async (t) => {
  requirePrivileges();
  const sb = new Sandbox('prechk');
  t.after(() => sb.cleanup());
  const withKubeProxy = await sb.netns('kp');
  const bare = await sb.netns('bare');
  await sb.exec(withKubeProxy, 'iptables', ['-w', '5', '-t', 'nat', '-N', 'KUBE-SERVICES']);
  const dir = mkdtempSync(join(tmpdir(), 'meshd-precheck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const confDir = join(dir, 'net.d');
  mkdirSync(confDir);
  const flannel = join(confDir, '10-flannel.conflist');
  const flannelText = JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', plugins: [{ type: 'flannel' }, { type: 'portmap' }] });
  writeFileSync(flannel, flannelText);
  const conf = ['--set', `cni.confDir=${confDir}`];

  // Istio sidecar with the defaults: the first failed required check is the CNI conflict (exit 5); each failure names its key.
  const defaults = await meshd(withKubeProxy, ['install', 'precheck', '-o', 'json', '--istio', 'sidecar', ...conf]);
  assert.equal(defaults.code, EXIT_STATUS.conflict, defaults.stderr);
  assert.equal(check(defaults.out, 'bpf-program').ok, true, 'the machine checks ran for real');
  const cni = check(defaults.out, 'cni-configs');
  assert.equal(cni.ok, false);
  assert.match(cni.detail, /10-flannel\.conflist/);
  assert.match(cni.fix ?? '', /cni\.exclusive=false/);
  assert.match(check(defaults.out, 'kube-proxy').detail, /KUBE-SERVICES/);
  assert.match(check(defaults.out, 'istio-socketlb').fix ?? '', /socketLB\.hostNamespaceOnly=true/);
  assert.match(check(defaults.out, 'istio-cni').fix ?? '', /cni\.exclusive=false/);

  // The ambient values pass (kube-proxy beside kubeProxyReplacement is a warning), and nothing in the CNI dir was touched.
  const ambient = await meshd(withKubeProxy, ['install', 'precheck', '-o', 'json', '--istio', 'ambient', '--set', 'socketLB.hostNamespaceOnly=true', '--set', 'cni.exclusive=false', ...conf]);
  assert.equal(ambient.code, 0, JSON.stringify(ambient.out?.checks.filter((c) => !c.ok)));
  assert.equal(check(ambient.out, 'kube-proxy').ok, false);
  assert.equal(check(ambient.out, 'kube-proxy').required, false);
  assert.equal(check(ambient.out, 'ambient-masquerade').ok, true);
  assert.equal(readFileSync(flannel, 'utf8'), flannelText);

  // No kube-proxy and kubeProxyReplacement=false: nothing would balance Services (invalid, exit 3).
  const noLb = await meshd(bare, ['install', 'precheck', '-o', 'json', '--set', 'kubeProxyReplacement=false', ...conf]);
  assert.equal(noLb.code, EXIT_STATUS.invalid);
  assert.match(check(noLb.out, 'kube-proxy').fix ?? '', /kubeProxyReplacement=true/);

  // A bad configuration key or mode is refused before any check runs.
  assert.equal((await meshd(bare, ['install', 'precheck', '--istio', 'mesh'])).code, EXIT_STATUS.usage);
  assert.equal((await meshd(bare, ['install', 'precheck', '--set', 'cni.exclusive=maybe'])).code, EXIT_STATUS.invalid);

  // meshd doctor runs the same install checks.
  const doctor = await meshd(withKubeProxy, ['doctor', '-o', 'json', '--istio', 'sidecar', ...conf]);
  assert.equal(doctor.code, 1);
  assert.equal(check(doctor.out, 'istio-socketlb').ok, false);
  assert.equal(check(doctor.out, 'cni-configs').ok, false);
});
