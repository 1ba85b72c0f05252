import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { isMeshdError } from '../util/errors.js';
import { repoPath } from '../util/paths.js';
import { BACKUP_SUFFIX, CONFLIST_NAME, HOST_RUNTIME_DIR, installCni, uninstallCni } from './installer.js';

const FLANNEL = `${JSON.stringify(
  { cniVersion: '0.3.1', name: 'cbr0', plugins: [{ type: 'flannel', delegate: { isDefaultGateway: true } }, { type: 'portmap', capabilities: { portMappings: true } }] },
  null,
  2,
)}\n`;
const LOOPBACK = '{ "cniVersion": "0.3.1", "name": "lo", "type": "loopback" }\n';
const ISTIO_ENTRY = {
  type: 'istio-cni',
  log_level: 'info',
  kubernetes: { kubeconfig: '/etc/cni/net.d/ZZZ-istio-cni-kubeconfig', cni_bin_dir: '/opt/cni/bin' },
};

interface Snap {
  content: string;
  ino: number;
  mtimeMs: number;
}

function snapshot(dir: string): Map<string, Snap> {
  const m = new Map<string, Snap>();
  for (const n of readdirSync(dir)) {
    const st = statSync(join(dir, n));
    m.set(n, { content: readFileSync(join(dir, n), 'utf8'), ino: st.ino, mtimeMs: st.mtimeMs });
  }
  return m;
}

function setup(t: { after(fn: () => void): void }) {
  const root = mkdtempSync(join(tmpdir(), 'meshd-cni-install-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const confDir = join(root, 'net.d');
  const binDir = join(root, 'bin');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-flannel.conflist'), FLANNEL);
  writeFileSync(join(confDir, '99-loopback.conf'), LOOPBACK);
  writeFileSync(join(confDir, 'ZZZ-istio-cni-kubeconfig'), 'not a network configuration\n');
  return { root, confDir, binDir };
}

/** What Istio's install-cni does in chained mode: append its plugin to the primary conflist. */
function istioChainsInto(path: string): void {
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as { plugins: unknown[] };
  parsed.plugins.push(ISTIO_ENTRY);
  writeFileSync(path, JSON.stringify(parsed)); // Istio writes its own formatting
}

function plugins(path: string): Array<Record<string, unknown>> {
  return (JSON.parse(readFileSync(path, 'utf8')) as { plugins: Array<Record<string, unknown>> }).plugins;
}

test('non-exclusive install never renames, rewrites or removes another file and keeps istio-cni chained across reinstalls', (t) => {
  const { confDir, binDir } = setup(t);
  const others = snapshot(confDir);
  const opts = { confDir, binDir, exclusive: false, podCIDR: '10.244.9.0/24', stateDir: '/var/lib/meshd/cni' };

  const first = installCni(opts);
  assert.equal(first.changed, true);
  const conf = join(confDir, CONFLIST_NAME);
  assert.deepEqual(plugins(conf), [{ type: 'meshd-cni', stateDir: '/var/lib/meshd/cni', ipam: { type: 'meshd', subnet: '10.244.9.0/24' } }]);
  assert.equal(JSON.parse(readFileSync(conf, 'utf8')).name, 'meshd');
  accessSync(join(binDir, 'meshd-cni'), constants.X_OK);

  istioChainsInto(conf);
  const again = installCni(opts);
  assert.equal(again.changed, true, 'reformatted once');
  assert.deepEqual(plugins(conf).map((p) => p.type), ['meshd-cni', 'istio-cni']);
  assert.deepEqual(plugins(conf)[1], ISTIO_ENTRY);

  const before = statSync(conf);
  const noop = installCni(opts);
  assert.deepEqual(noop, { changed: false, actions: [] });
  const after = statSync(conf);
  assert.equal(after.ino, before.ino, 'not rewritten');
  assert.equal(after.mtimeMs, before.mtimeMs, 'not touched');

  const changed = installCni({ ...opts, mtu: 1450 });
  assert.equal(changed.changed, true);
  assert.equal(plugins(conf)[0]?.mtu, 1450);
  assert.deepEqual(plugins(conf)[1], ISTIO_ENTRY, 'istio-cni kept when meshd settings change');
  assert.notEqual(statSync(conf).ino, before.ino, 'replaced by rename, not rewritten in place');

  const now = snapshot(confDir);
  for (const [name, snap] of others) assert.deepEqual(now.get(name), snap, `${name} untouched`);
  assert.deepEqual([...now.keys()].sort(), [...others.keys(), CONFLIST_NAME].sort(), 'no temp file, nothing renamed');
});

test('exclusive install renames other configurations to *.meshd_bak; uninstall restores them byte for byte', (t) => {
  const { confDir, binDir } = setup(t);
  const others = snapshot(confDir);
  const opts = { confDir, binDir, exclusive: true, podCIDR: '10.244.9.0/24' };
  writeFileSync(join(confDir, CONFLIST_NAME), JSON.stringify({ cniVersion: '1.0.0', name: 'meshd', plugins: [{ type: 'meshd-cni' }, ISTIO_ENTRY] }));

  const r = installCni(opts);
  assert.equal(r.changed, true);
  assert.deepEqual(readdirSync(confDir).sort(), [
    CONFLIST_NAME,
    `10-flannel.conflist${BACKUP_SUFFIX}`,
    `99-loopback.conf${BACKUP_SUFFIX}`,
    'ZZZ-istio-cni-kubeconfig',
  ]);
  assert.deepEqual(plugins(join(confDir, CONFLIST_NAME)).map((p) => p.type), ['meshd-cni'], 'exclusive owns its conflist');
  assert.equal(readFileSync(join(confDir, `10-flannel.conflist${BACKUP_SUFFIX}`), 'utf8'), FLANNEL);

  assert.deepEqual(installCni(opts), { changed: false, actions: [] }, 're-install is a no-op');

  // The other CNI's daemon writes its configuration again: the same bytes are
  // dropped (the backup has them), different bytes replace the backup.
  writeFileSync(join(confDir, '10-flannel.conflist'), FLANNEL);
  assert.equal(installCni(opts).changed, true);
  assert.ok(!readdirSync(confDir).includes('10-flannel.conflist'));
  assert.equal(readFileSync(join(confDir, `10-flannel.conflist${BACKUP_SUFFIX}`), 'utf8'), FLANNEL);

  const u = uninstallCni({ confDir, binDir });
  assert.equal(u.changed, true);
  const restored = snapshot(confDir);
  assert.deepEqual([...restored.keys()].sort(), [...others.keys()].sort());
  for (const [name, snap] of others) assert.equal(restored.get(name)?.content, snap.content, `${name} restored`);
  assert.deepEqual(readdirSync(binDir), [], 'launcher removed');
  assert.deepEqual(uninstallCni({ confDir, binDir }), { changed: false, actions: [] }, 'uninstall twice is fine');
});

test('uninstall keeps a backup whose original name is taken again', (t) => {
  const { confDir, binDir } = setup(t);
  installCni({ confDir, binDir, exclusive: true });
  writeFileSync(join(confDir, '10-flannel.conflist'), '{"cniVersion":"1.0.0","name":"new","plugins":[{"type":"bridge"}]}');
  const u = uninstallCni({ confDir });
  assert.ok(u.actions.some((a) => a.startsWith('kept ') && a.includes('10-flannel.conflist')));
  assert.equal(readFileSync(join(confDir, `10-flannel.conflist${BACKUP_SUFFIX}`), 'utf8'), FLANNEL);
  assert.match(readFileSync(join(confDir, '10-flannel.conflist'), 'utf8'), /"new"/);
});

test('a reader never sees a half-written conflist while install rewrites it', async (t) => {
  const { confDir, binDir } = setup(t);
  const conf = join(confDir, CONFLIST_NAME);
  installCni({ confDir, binDir, exclusive: false, podCIDR: '10.244.9.0/24' });
  const reader = new Worker(
    `const { readFileSync } = require('node:fs'); const { parentPort, workerData } = require('node:worker_threads');
     let reads = 0, bad = 0, stop = false;
     parentPort.on('message', () => { stop = true; });
     (function loop() {
       for (let i = 0; i < 200; i++) { reads++; try { JSON.parse(readFileSync(workerData, 'utf8')); } catch { bad++; } }
       if (stop) parentPort.postMessage({ reads, bad }); else setImmediate(loop);
     })();`,
    { eval: true, workerData: conf },
  );
  for (let i = 0; i < 300; i += 1) {
    installCni({ confDir, binDir, exclusive: false, podCIDR: '10.244.9.0/24', mtu: 1200 + (i % 2) * 100 });
  }
  const stats = await new Promise<{ reads: number; bad: number }>((resolve) => {
    reader.once('message', resolve);
    reader.postMessage('stop');
  });
  await reader.terminate();
  assert.ok(stats.reads > 100, `reader ran (${stats.reads} reads)`);
  assert.equal(stats.bad, 0);
});

test('meshd cni install/uninstall from the command line; the installed launcher runs the plugin', (t) => {
  const { confDir, binDir } = setup(t);
  const meshd = repoPath('bin', 'meshd.mjs');
  const out = execFileSync(process.execPath, [meshd, 'cni', 'install', '--conf-dir', confDir, '--bin-dir', binDir, '--exclusive=false', '--pod-cidr', '10.244.9.0/24'], {
    encoding: 'utf8',
  });
  assert.match(out, new RegExp(`wrote ${join(confDir, CONFLIST_NAME)}`));
  const again = execFileSync(process.execPath, [meshd, 'cni', 'install', '--conf-dir', confDir, '--bin-dir', binDir, '--exclusive', 'false', '--pod-cidr', '10.244.9.0/24'], {
    encoding: 'utf8',
  });
  assert.match(again, /nothing to do/);
  assert.ok(readdirSync(confDir).includes('10-flannel.conflist'));

  const version = spawnSync(join(binDir, 'meshd-cni'), [], { input: '{"cniVersion":"1.0.0"}', env: { CNI_COMMAND: 'VERSION', PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
  assert.equal(version.status, 0, version.stderr);
  assert.deepEqual(JSON.parse(version.stdout), { cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });

  const bad = spawnSync(process.execPath, [meshd, 'cni', 'install', '--conf-dir', confDir, '--bin-dir', binDir, '--exclusive=maybe'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--exclusive: /);
  const unknown = spawnSync(process.execPath, [meshd, 'cni', 'install', '--conf-dir', confDir, '--bin-dir', binDir, '--frob', 'x'], { encoding: 'utf8' });
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown option --frob/);
  const missing = spawnSync(process.execPath, [meshd, 'cni', 'install', '--bin-dir', binDir], { encoding: 'utf8' });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--conf-dir/);

  const un = execFileSync(process.execPath, [meshd, 'cni', 'uninstall', '--conf-dir', confDir, '--bin-dir', binDir], { encoding: 'utf8' });
  assert.match(un, /removed/);
  assert.ok(!readdirSync(confDir).includes(CONFLIST_NAME));
  assert.deepEqual(readdirSync(binDir), []);
});

test('a refused option touches nothing; a filesystem failure is MESHD_CNI_INSTALL_IO naming the path', (t) => {
  const { root, confDir, binDir } = setup(t);
  const before = snapshot(confDir);
  assert.throws(
    () => installCni({ confDir, binDir, exclusive: false, podCIDR: '10.244.0.0' }),
    (e: unknown) => isMeshdError(e, 'MESHD_CNI_INSTALL_BAD_OPTION') && e.kind === 'invalid' && e.message.includes('10.244.0.0'),
  );
  assert.throws(() => installCni({ confDir: '', binDir, exclusive: false }), (e: unknown) => isMeshdError(e, 'MESHD_CNI_INSTALL_BAD_OPTION') && e.message.includes('conf dir'));
  assert.deepEqual(snapshot(confDir), before);
  const aFile = join(root, 'not-a-dir');
  writeFileSync(aFile, '');
  assert.throws(
    () => installCni({ confDir, binDir: join(aFile, 'bin'), exclusive: false }),
    (e: unknown) => isMeshdError(e, 'MESHD_CNI_INSTALL_IO') && e.kind === 'failed' && e.message.includes(aFile),
  );
});

test('a pod CIDR not known yet: the conflist says why (ADD retries); once known it carries the range', (t) => {
  const { confDir, binDir } = setup(t);
  const conf = join(confDir, CONFLIST_NAME);
  installCni({ confDir, binDir, exclusive: false, podCIDRPending: 'waiting for Node n1 spec.podCIDRs' });
  const entry = (): unknown => (JSON.parse(readFileSync(conf, 'utf8')) as { plugins: Array<{ ipam?: unknown }> }).plugins[0]?.ipam;
  assert.deepEqual(entry(), { type: 'meshd', pending: 'waiting for Node n1 spec.podCIDRs' });
  const r = installCni({ confDir, binDir, exclusive: false, podCIDR: '10.243.9.0/24', podCIDRPending: 'ignored once the CIDR is known' });
  assert.ok(r.changed);
  assert.deepEqual(entry(), { type: 'meshd', subnet: '10.243.9.0/24' });
});

test('runtime "host": node and the bundle copied into binDir/meshd-cni.d, the launcher runs them; unchanged reinstall copies nothing; uninstall removes the directory', (t) => {
  const { root, confDir, binDir } = setup(t);
  const bundle = join(root, 'meshd-cni.cjs');
  writeFileSync(bundle, readFileSync(repoPath('dist', 'cni', 'meshd-cni.cjs')));
  const opts = { confDir, binDir, exclusive: false, runtime: 'host' as const, pluginBundle: bundle };
  const first = installCni(opts);
  assert.equal(first.changed, true);
  assert.deepEqual(readdirSync(binDir).sort(), ['meshd-cni', HOST_RUNTIME_DIR]);
  assert.deepEqual(readdirSync(join(binDir, HOST_RUNTIME_DIR)).sort(), ['meshd-cni.cjs', 'node', 'run.cjs']);
  assert.equal(statSync(join(binDir, HOST_RUNTIME_DIR, 'node')).size, statSync(process.execPath).size);
  const nodeIno = statSync(join(binDir, HOST_RUNTIME_DIR, 'node')).ino;

  const version = spawnSync(join(binDir, 'meshd-cni'), [], { input: '{"cniVersion":"1.0.0"}', env: { CNI_COMMAND: 'VERSION', PATH: '/nonexistent', NODE_OPTIONS: '--no-such-flag' }, encoding: 'utf8' });
  assert.equal(version.status, 0, version.stderr);
  assert.deepEqual(JSON.parse(version.stdout), { cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });

  assert.deepEqual(installCni(opts), { changed: false, actions: [] }, 'unchanged: nothing copied or written');
  writeFileSync(bundle, `${readFileSync(bundle, 'utf8')}\n// rebuilt\n`);
  const rebuilt = installCni(opts);
  assert.ok(rebuilt.actions.some((a) => a.includes('meshd-cni.cjs')) && rebuilt.actions.some((a) => a.endsWith(join(binDir, 'meshd-cni'))), rebuilt.actions.join('; '));
  assert.ok(!rebuilt.actions.some((a) => a.startsWith('copied')), 'the node binary is not copied again');
  assert.equal(statSync(join(binDir, HOST_RUNTIME_DIR, 'node')).ino, nodeIno);

  // Back to the checkout launcher: the copied runtime goes.
  installCni({ confDir, binDir, exclusive: false });
  assert.deepEqual(readdirSync(binDir), ['meshd-cni']);
  installCni(opts);
  const u = uninstallCni({ confDir, binDir });
  assert.ok(u.actions.includes(`removed ${join(binDir, HOST_RUNTIME_DIR)}`));
  assert.deepEqual(readdirSync(binDir), []);

  rmSync(bundle);
  assert.throws(() => installCni(opts), (e: unknown) => isMeshdError(e, 'MESHD_CNI_INSTALL_NOT_BUILT') && e.kind === 'unavailable');
  assert.deepEqual(readdirSync(binDir), [], 'nothing written without a bundle');
});
