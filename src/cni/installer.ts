/**
 * Installs meshd as the node's CNI: writes `05-meshd.conflist` into the CNI
 * configuration directory and the `meshd-cni` executable into the CNI bin
 * directory. Run by the agent at start and by `meshd cni install`.
 *
 *   installCni({ confDir: '/etc/cni/net.d', binDir: '/opt/cni/bin', exclusive: false, podCIDR: '10.244.1.0/24' });
 *   uninstallCni({ confDir: '/etc/cni/net.d', binDir: '/opt/cni/bin' });
 *
 * cni.exclusive=true (the default, as in Cilium): every other network
 * configuration in the directory (*.conf, *.conflist, *.json) is renamed to
 * `<name>.meshd_bak` so runtimes ignore it; uninstall renames them back. If
 * its owner writes it again, the next install removes it when it equals the
 * backup and otherwise replaces the backup with it (the newest wins).
 * meshd's conflist is written from scratch.
 * cni.exclusive=false: no other file is renamed, rewritten or removed, and
 * plugins another installer chained after meshd inside meshd's own conflist
 * (Istio's `istio-cni` is the common one) are kept, in order, across
 * reinstalls.
 *
 * Every write is a temp file in the same directory + rename, so a runtime
 * reading the directory sees the old file or the new one, never half of one.
 * Nothing is written when the content would not change: reinstalling an
 * unchanged configuration touches no file.
 *
 * The executable: a runtime execs `<binDir>/meshd-cni` directly. What is
 * installed there is a short /bin/sh launcher, in one of two forms:
 * - runtime 'checkout' (the default): it execs this machine's Node.js on the
 *   checkout's bin/meshd-cni.mjs; the plugin code stays in one place (the
 *   checkout) and is updated with it. Right when the agent runs on the host.
 * - runtime 'host' (the agent image sets cni.hostRuntime): the Node.js binary
 *   running this code and the plugin bundle (dist/cni/meshd-cni.cjs) are
 *   copied into `<binDir>/meshd-cni.d/`, and the launcher execs them there,
 *   so the host's runtime needs nothing of the agent's container (its
 *   filesystem is not the host's). Only the host's libc/libstdc++ are used.
 */
import { closeSync, constants as fsConstants, copyFileSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeSync, chmodSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import * as z from 'zod';
import { MeshdError } from '../util/errors.js';
import { repoPath } from '../util/paths.js';
import { isSupportedVersion, type CniVersion } from './cni-spec.js';
import { errno, readdirIfExists } from '../util/fs-errors.js';

export const CONFLIST_NAME = '05-meshd.conflist';
export const NETWORK_NAME = 'meshd';
export const PLUGIN_TYPE = 'meshd-cni';
export const BACKUP_SUFFIX = '.meshd_bak';
const LAUNCHER_MARKER = '# meshd-cni launcher';
/** Directory beside the launcher holding the copied runtime (runtime 'host'). */
export const HOST_RUNTIME_DIR = 'meshd-cni.d';
const HOST_NODE = 'node';
const HOST_BUNDLE = 'meshd-cni.cjs';
const HOST_ENTRY = 'run.cjs';
/** Runs the bundle's main() and turns an uncaught failure into CNI error JSON (code 999, unknown). */
const HOST_ENTRY_SOURCE = `'use strict';
// Written by "meshd cni install": runs the meshd-cni bundle beside it.
require('./${HOST_BUNDLE}').main().then(
  (code) => { process.exitCode = code; },
  (e) => {
    process.stdout.write(JSON.stringify({ cniVersion: '1.1.0', code: 999, msg: 'meshd-cni failed', details: String(e && e.stack || e) }) + '\\n');
    process.exitCode = 1;
  },
);
`;
const CONFIG_EXTENSIONS = ['.conf', '.conflist', '.json'];

export interface InstallOptions {
  confDir: string;
  binDir: string;
  /** cni.exclusive: take the directory over (true) or live beside other configurations (false). */
  exclusive: boolean;
  /** The node's pod CIDR for meshd IPAM; without it the conflist carries no IPAM section. */
  podCIDR?: string;
  /**
   * The node's pod CIDR is not known yet (Kubernetes mode: claim or Node.spec.podCIDRs pending), and why:
   * the conflist carries meshd IPAM without a subnet, and ADD fails with MESHD_CNI_POD_CIDR_PENDING (try again later).
   */
  podCIDRPending?: string;
  agentSocket?: string;
  stateDir?: string;
  mtu?: number;
  cniVersion?: CniVersion;
  /**
   * 'checkout' (default): the launcher runs Node.js and the plugin where this
   * code is installed. 'host': both are copied into `<binDir>/meshd-cni.d/`
   * first, so the launcher depends on nothing outside binDir.
   */
  runtime?: 'checkout' | 'host';
  /** Node.js binary the launcher runs, or that runtime 'host' copies (default: the one running this code). */
  nodePath?: string;
  /** Plugin entry the launcher runs (default: this checkout's bin/meshd-cni.mjs); runtime 'checkout' only. */
  pluginEntry?: string;
  /** The plugin bundle runtime 'host' copies (default: this checkout's dist/cni/meshd-cni.cjs). */
  pluginBundle?: string;
}

export interface InstallReport {
  /** True when any file was written, renamed or removed. */
  changed: boolean;
  /** What was done, one line per file. */
  actions: string[];
}

/**
 * MESHD_CNI_INSTALL_BAD_OPTION: an option was refused before anything was
 * touched; MESHD_CNI_INSTALL_NOT_BUILT: runtime 'host' found no plugin
 * bundle to copy (run the build); MESHD_CNI_INSTALL_IO: a file or directory could not be read,
 * written or renamed (the cause carries the errno).
 */
export class InstallError extends MeshdError {
  constructor(code: 'MESHD_CNI_INSTALL_BAD_OPTION' | 'MESHD_CNI_INSTALL_IO' | 'MESHD_CNI_INSTALL_NOT_BUILT', message: string, cause?: unknown) {
    super(code, message, { kind: code === 'MESHD_CNI_INSTALL_BAD_OPTION' ? 'invalid' : code === 'MESHD_CNI_INSTALL_NOT_BUILT' ? 'unavailable' : 'failed', cause });
  }
}

/** Runs `fn`, turning a filesystem error into InstallError MESHD_CNI_INSTALL_IO. */
function io<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof MeshdError) throw e;
    throw new InstallError('MESHD_CNI_INSTALL_IO', `${what}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

const ExistingConflistSchema = z.looseObject({
  plugins: z.array(z.looseObject({ type: z.string() })),
});

function isNetworkConfig(name: string): boolean {
  return !name.startsWith('.') && CONFIG_EXTENSIONS.some((ext) => name.endsWith(ext));
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  }
}

/** Writes `content` to `path` atomically (temp file in the same directory, fsync, rename). */
export function writeAtomic(path: string, content: string, mode: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may never have been created; the error that matters is rethrown below
    }
    throw e;
  }
}

/** Foreign plugins chained after meshd-cni in an existing meshd conflist (e.g. istio-cni). */
function chainedAfterMeshd(existing: string | undefined): Array<Record<string, unknown>> {
  if (existing === undefined) return [];
  let raw: unknown;
  try {
    raw = JSON.parse(existing);
  } catch {
    return []; // unreadable: ours to replace
  }
  const parsed = ExistingConflistSchema.safeParse(raw);
  if (!parsed.success) return [];
  return parsed.data.plugins.filter((p) => p.type !== PLUGIN_TYPE);
}

function meshdPluginEntry(o: InstallOptions): Record<string, unknown> {
  const entry: Record<string, unknown> = { type: PLUGIN_TYPE };
  if (o.agentSocket !== undefined) entry.agentSocket = o.agentSocket;
  if (o.stateDir !== undefined) entry.stateDir = o.stateDir;
  if (o.mtu !== undefined) entry.mtu = o.mtu;
  if (o.podCIDR !== undefined) entry.ipam = { type: 'meshd', subnet: o.podCIDR };
  else if (o.podCIDRPending !== undefined) entry.ipam = { type: 'meshd', pending: o.podCIDRPending };
  return entry;
}

/** The conflist text install would write, given what is in the directory now. */
export function renderConflist(o: InstallOptions, existing: string | undefined): string {
  const chained = o.exclusive ? [] : chainedAfterMeshd(existing);
  const conflist = {
    cniVersion: o.cniVersion ?? '1.0.0',
    name: NETWORK_NAME,
    plugins: [meshdPluginEntry(o), ...chained],
  };
  return `${JSON.stringify(conflist, null, 2)}\n`;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function renderLauncher(o: Pick<InstallOptions, 'nodePath' | 'pluginEntry'>): string {
  const node = o.nodePath ?? process.execPath;
  const entry = o.pluginEntry ?? repoPath('bin', 'meshd-cni.mjs');
  return `#!/bin/sh\n${LAUNCHER_MARKER}, written by "meshd cni install": runs the plugin from the meshd checkout.\nexec ${shellQuote(node)} ${shellQuote(entry)} "$@"\n`;
}

/** The host-runtime launcher: absolute paths into `<binDir>/meshd-cni.d`, no PATH or NODE_* from the caller. */
function renderHostLauncher(binDir: string, nodeStamp: string, bundleSha: string): string {
  const dir = join(binDir, HOST_RUNTIME_DIR);
  return (
    `#!/bin/sh\n${LAUNCHER_MARKER}, written by "meshd cni install": runs the plugin copied into ${HOST_RUNTIME_DIR}/.\n` +
    `# node ${nodeStamp}; bundle sha256 ${bundleSha}\n` +
    `unset NODE_OPTIONS NODE_PATH NODE_EXTRA_CA_CERTS\n` +
    `exec ${shellQuote(join(dir, HOST_NODE))} ${shellQuote(join(dir, HOST_ENTRY))} "$@"\n`
  );
}

/** Copies `from` to `to` atomically (clone when the filesystem can), mode 0755. */
function copyAtomic(from: string, to: string): void {
  const tmp = join(dirname(to), `.${basename(to)}.${process.pid}.tmp`);
  try {
    copyFileSync(from, tmp, fsConstants.COPYFILE_FICLONE);
    chmodSync(tmp, 0o755);
    renameSync(tmp, to);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Runtime 'host': the Node.js binary, the bundle and its entry in
 * `<binDir>/meshd-cni.d/`, then the launcher. The launcher names the node
 * binary's version and size and the bundle's hash, so an unchanged install
 * copies nothing and a changed one rewrites the launcher last.
 */
function installHostRuntime(o: InstallOptions, binPath: string, actions: string[]): void {
  const nodeFrom = o.nodePath ?? process.execPath;
  const bundleFrom = o.pluginBundle ?? repoPath('dist', 'cni', 'meshd-cni.cjs');
  const bundle = readIfExists(bundleFrom);
  if (bundle === undefined) {
    throw new InstallError('MESHD_CNI_INSTALL_NOT_BUILT', `the meshd-cni bundle ${bundleFrom} is missing: build it (node scripts/bundle-cni.mjs) before installing with runtime "host"`);
  }
  const nodeSize = statSync(nodeFrom).size;
  const nodeStamp = `${nodeFrom === process.execPath ? process.version : 'external'} ${nodeSize} bytes`;
  const bundleSha = createHash('sha256').update(bundle).digest('hex');
  const launcher = renderHostLauncher(o.binDir, nodeStamp, bundleSha);
  const dir = join(o.binDir, HOST_RUNTIME_DIR);
  const nodeTo = join(dir, HOST_NODE);
  const current = readIfExists(binPath) === launcher && sizeIfExists(nodeTo) === nodeSize && readIfExists(join(dir, HOST_BUNDLE)) === bundle && readIfExists(join(dir, HOST_ENTRY)) === HOST_ENTRY_SOURCE;
  if (current) return;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (sizeIfExists(nodeTo) !== nodeSize || !sameNodeStamp(readIfExists(binPath), launcher)) {
    copyAtomic(nodeFrom, nodeTo);
    actions.push(`copied ${nodeFrom} to ${nodeTo}`);
  }
  if (readIfExists(join(dir, HOST_BUNDLE)) !== bundle) {
    writeAtomic(join(dir, HOST_BUNDLE), bundle, 0o644);
    actions.push(`wrote ${join(dir, HOST_BUNDLE)}`);
  }
  if (readIfExists(join(dir, HOST_ENTRY)) !== HOST_ENTRY_SOURCE) {
    writeAtomic(join(dir, HOST_ENTRY), HOST_ENTRY_SOURCE, 0o644);
    actions.push(`wrote ${join(dir, HOST_ENTRY)}`);
  }
  if (readIfExists(binPath) !== launcher) {
    writeAtomic(binPath, launcher, 0o755);
    actions.push(`wrote ${binPath}`);
  }
}

/** The installed launcher names the same node binary (version and size): the copy in meshd-cni.d is kept. */
function sameNodeStamp(existing: string | undefined, launcher: string): boolean {
  const nodeStamp = (text: string) => (text.split('\n').find((l) => l.startsWith('# node ')) ?? '').split(';')[0];
  return existing !== undefined && nodeStamp(existing) === nodeStamp(launcher);
}

function sizeIfExists(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  }
}

function validate(o: InstallOptions): void {
  if (o.cniVersion !== undefined && !isSupportedVersion(o.cniVersion)) {
    throw new InstallError('MESHD_CNI_INSTALL_BAD_OPTION', `cniVersion "${String(o.cniVersion)}" is not supported`);
  }
  if (o.podCIDR !== undefined && !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(o.podCIDR)) {
    throw new InstallError('MESHD_CNI_INSTALL_BAD_OPTION', `pod CIDR "${o.podCIDR}" is not an IPv4 CIDR`);
  }
  for (const [name, dir] of [
    ['conf dir', o.confDir],
    ['bin dir', o.binDir],
  ] as const) {
    if (dir === '') throw new InstallError('MESHD_CNI_INSTALL_BAD_OPTION', `${name} is empty`);
  }
}

export function installCni(o: InstallOptions): InstallReport {
  validate(o);
  return io('cni install', () => install(o));
}

function install(o: InstallOptions): InstallReport {
  const actions: string[] = [];
  mkdirSync(o.confDir, { recursive: true, mode: 0o755 });
  mkdirSync(o.binDir, { recursive: true, mode: 0o755 });

  // The executable first: a configuration must never name a plugin that is not there yet.
  const binPath = join(o.binDir, PLUGIN_TYPE);
  if (o.runtime === 'host') {
    installHostRuntime(o, binPath, actions);
  } else {
    const launcher = renderLauncher(o);
    if (readIfExists(binPath) !== launcher) {
      writeAtomic(binPath, launcher, 0o755);
      actions.push(`wrote ${binPath}`);
    }
    removeHostRuntime(o.binDir, actions);
  }

  const confPath = join(o.confDir, CONFLIST_NAME);
  const existing = readIfExists(confPath);
  const desired = renderConflist(o, existing);
  if (existing !== desired) {
    writeAtomic(confPath, desired, 0o644);
    actions.push(`wrote ${confPath}`);
  }

  if (o.exclusive) {
    for (const name of readdirSync(o.confDir).sort()) {
      if (name === CONFLIST_NAME || !isNetworkConfig(name)) continue;
      const from = join(o.confDir, name);
      if (!statSync(from).isFile()) continue;
      const backup = `${from}${BACKUP_SUFFIX}`;
      const previous = readIfExists(backup);
      if (previous !== undefined && previous === readFileSync(from, 'utf8')) {
        // Its owner wrote the same configuration again: the backup already holds it.
        unlinkSync(from);
        actions.push(`removed ${from}: same as ${name}${BACKUP_SUFFIX}`);
        continue;
      }
      renameSync(from, backup);
      actions.push(
        previous === undefined ? `renamed ${from} to ${name}${BACKUP_SUFFIX}` : `renamed ${from} to ${name}${BACKUP_SUFFIX}, replacing an older backup`,
      );
    }
  }
  return { changed: actions.length > 0, actions };
}

/** Removes `<binDir>/meshd-cni.d` (meshd's own directory: everything in it is meshd's). */
function removeHostRuntime(binDir: string, actions: string[]): void {
  const dir = join(binDir, HOST_RUNTIME_DIR);
  if (sizeIfExists(dir) === undefined) return;
  rmSync(dir, { recursive: true, force: true });
  actions.push(`removed ${dir}`);
}

/**
 * Removes meshd's conflist (and, with binDir, the launcher it installed) and
 * renames every `*.meshd_bak` back, unless a file with the original name has
 * appeared since, in which case the backup is left and reported.
 */
export function uninstallCni(o: { confDir: string; binDir?: string }): InstallReport {
  return io('cni uninstall', () => uninstall(o));
}

function uninstall(o: { confDir: string; binDir?: string }): InstallReport {
  const actions: string[] = [];
  const confPath = join(o.confDir, CONFLIST_NAME);
  try {
    unlinkSync(confPath);
    actions.push(`removed ${confPath}`);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
  const names = readdirIfExists(o.confDir).sort();
  for (const name of names) {
    if (!name.endsWith(BACKUP_SUFFIX)) continue;
    const from = join(o.confDir, name);
    const to = from.slice(0, -BACKUP_SUFFIX.length);
    if (readIfExists(to) !== undefined) {
      actions.push(`kept ${from}: ${basename(to)} exists again`);
      continue;
    }
    renameSync(from, to);
    actions.push(`restored ${to}`);
  }
  if (o.binDir !== undefined) {
    const binPath = join(o.binDir, PLUGIN_TYPE);
    const content = readIfExists(binPath);
    if (content !== undefined && content.includes(LAUNCHER_MARKER)) {
      unlinkSync(binPath);
      actions.push(`removed ${binPath}`);
    }
    removeHostRuntime(o.binDir, actions);
  }
  return { changed: actions.filter((a) => !a.startsWith('kept ')).length > 0, actions };
}
