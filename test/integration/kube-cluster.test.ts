/**
 * The test control plane itself: a real etcd and kube-apiserver started by
 * src/devcluster/kube-cluster.ts, driven with the real kubectl.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:https';
import { join } from 'node:path';
import { test } from 'node:test';
import { z } from 'zod';
import { isMeshdError } from '../../src/util/errors.js';
import { kubeBinDir, startKubeCluster } from '../../src/devcluster/kube-cluster.js';

const podJson = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string(), uid: z.string(), labels: z.record(z.string(), z.string()).optional() }),
  spec: z.object({ serviceAccountName: z.string(), containers: z.array(z.object({ name: z.string(), image: z.string() })) }),
});

/** True while a process with this id exists (signal 0 checks without signalling). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // ESRCH: no such process; EPERM would mean it exists but is not ours
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The HTTP status of a GET, with a bearer token or none (anonymous). */
function statusOf(url: string, ca: Buffer, token?: string): Promise<number> {
  const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
  return new Promise((resolve, reject) => {
    get(url, { ca, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

test('kubeBinDir follows the same rule as scripts/k8s-binaries.sh --print-bin-dir', () => {
  const script = join(process.cwd(), 'scripts', 'k8s-binaries.sh');
  for (const env of [{ MESHD_CACHE_DIR: '/x/c' }, { XDG_CACHE_HOME: '/x/xdg' }, { HOME: '/x/home' }]) {
    const full = { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ...env };
    const printed = execFileSync('bash', [script, '--print-bin-dir'], { env: full, encoding: 'utf8' }).trim();
    assert.equal(kubeBinDir(full), printed);
  }
});

test('a missing binary directory is MESHD_KUBE_TEST_BINARIES_MISSING', async () => {
  await assert.rejects(startKubeCluster({ binDir: '/nonexistent/k8s/bin' }), (e) => isMeshdError(e, 'MESHD_KUBE_TEST_BINARIES_MISSING'));
});

test('a real API server: apply, read back, survive an API server restart, and leave nothing behind', async (t) => {
  const kube = await startKubeCluster({ t });
  const first = kube.pids();
  assert.ok(first.etcd !== null && first.apiServer !== null, 'etcd and kube-apiserver run');
  assert.match(kube.server, /^https:\/\/127\.0\.0\.1:\d+$/);

  const version = await kube.kubectl(['version', '-o', 'json']);
  assert.equal(version.code, 0, version.stderr);
  assert.equal(z.object({ serverVersion: z.object({ gitVersion: z.string() }) }).parse(JSON.parse(version.stdout)).serverVersion.gitVersion, 'v1.37.2');

  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'harness', labels: { app: 'web' } },
    spec: { containers: [{ name: 'web', image: 'registry.invalid/web:1' }] },
  };
  await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'harness' } });
  // Without a controller-manager nobody creates the namespace's default ServiceAccount, and
  // the ServiceAccount admission plugin refuses pods until it exists.
  await assert.rejects(kube.apply(pod), (e) => isMeshdError(e, 'MESHD_KUBE_TEST_KUBECTL_FAILED'));
  await kube.ensureDefaultServiceAccount('harness');
  await kube.apply(pod);

  const got = await kube.kubectl(['get', 'pod', 'web', '-n', 'harness', '-o', 'json']);
  assert.equal(got.code, 0, got.stderr);
  const before = podJson.parse(JSON.parse(got.stdout));
  assert.equal(before.metadata.labels?.app, 'web');
  assert.equal(before.spec.serviceAccountName, 'default');

  // RBAC is on: a request without the token is anonymous and may not list pods; a
  // ServiceAccount may once a Role grants it.
  const podsUrl = `${kube.server}/api/v1/namespaces/harness/pods`;
  const ca = readFileSync(kube.caPath);
  assert.equal(await statusOf(podsUrl, ca), 403);
  const reader = await kube.serviceAccountKubeconfig('harness', 'reader');
  assert.equal(await statusOf(podsUrl, ca, reader.token), 403);
  assert.equal(await statusOf(podsUrl, ca, 'not-a-token'), 401);
  await kube.apply([
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'pod-reader', namespace: 'harness' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] }] },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'reader', namespace: 'harness' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-reader' },
      subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: 'harness' }],
    },
  ]);
  // The authorizer learns of the binding through its own watch: allow it a moment.
  const deadline = Date.now() + 5_000;
  let status = await statusOf(podsUrl, ca, reader.token);
  while (status === 403 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    status = await statusOf(podsUrl, ca, reader.token);
  }
  assert.equal(status, 200);
  const allowed = await kube.kubectl(['--kubeconfig', reader.kubeconfigPath, 'get', 'pods', '-n', 'harness', '-o', 'name']);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(allowed.stdout.trim(), 'pod/web');

  await kube.stopApiServer();
  assert.equal(kube.pids().apiServer, null);
  assert.ok(!alive(first.apiServer), 'the stopped kube-apiserver is gone');
  const down = await kube.kubectl(['get', 'pods', '-n', 'harness', '--request-timeout=2s']);
  assert.notEqual(down.code, 0, 'nothing answers while the API server is down');

  await kube.startApiServer();
  const again = await kube.kubectl(['get', 'pod', 'web', '-n', 'harness', '-o', 'json']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(podJson.parse(JSON.parse(again.stdout)).metadata.uid, before.metadata.uid, 'the same object, kept by etcd');
  assert.equal(kube.pids().etcd, first.etcd, 'etcd was not restarted');

  const second = kube.pids();
  await kube.close();
  await kube.close(); // idempotent
  for (const pid of [first.etcd, second.apiServer]) {
    assert.ok(pid !== null && !alive(pid), `process ${pid} is gone after close()`);
  }
  assert.ok(!existsSync(kube.dir), 'the temp dir is removed');
});

test('etcd and kube-apiserver die with a test process killed without cleanup', async (t) => {
  // A child node process starts a cluster, prints its pids and its dir, and is then SIGKILLed:
  // no t.after and no exit handler runs, so only the kernel's parent-death signal can stop them.
  const helper = new URL('../../src/devcluster/kube-cluster.js', import.meta.url).href;
  const script = `const { startKubeCluster } = await import(${JSON.stringify(helper)});
    const kube = await startKubeCluster();
    process.stdout.write(JSON.stringify({ ...kube.pids(), dir: kube.dir }) + '\\n');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  for await (const chunk of child.stdout) {
    out += String(chunk);
    if (out.includes('\n')) break;
  }
  const started = z.object({ etcd: z.number(), apiServer: z.number(), dir: z.string() }).parse(JSON.parse(out));
  t.after(() => {
    // Should the kernel not have killed them, the test fails, and they must not outlive it.
    for (const pid of [started.apiServer, started.etcd]) if (alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(started.dir, { recursive: true, force: true });
  });
  assert.ok(alive(started.etcd) && alive(started.apiServer));

  child.kill('SIGKILL');
  await once(child, 'exit');
  const deadline = Date.now() + 5_000;
  while ((alive(started.etcd) || alive(started.apiServer)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(!alive(started.etcd), 'etcd is gone');
  assert.ok(!alive(started.apiServer), 'kube-apiserver is gone');
});
