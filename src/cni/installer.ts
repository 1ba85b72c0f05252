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
 * installed there is a two-line /bin/sh launcher that execs this machine's
 * Node.js on the checkout's bin/meshd-cni.mjs; the plugin code stays in one
 * place (the checkout) and is updated with it.
 */
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync, chmodSync, mkdirSync } from 'node:fs';
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
  /** Node.js binary the launcher runs (default: the one running this code). */
  nodePath?: string;
  /** Plugin entry the launcher runs (default: this checkout's bin/meshd-cni.mjs). */
  pluginEntry?: string;
}

export interface InstallReport {
  /** True when any file was written, renamed or removed. */
  changed: boolean;
  /** What was done, one line per file. */
  actions: string[];
}

/**
 * MESHD_CNI_INSTALL_BAD_OPTION: an option was refused before anything was
 * touched; MESHD_CNI_INSTALL_IO: a file or directory could not be read,
 * written or renamed (the cause carries the errno).
 */
export class InstallError extends MeshdError {
  constructor(code: 'MESHD_CNI_INSTALL_BAD_OPTION' | 'MESHD_CNI_INSTALL_IO', message: string, cause?: unknown) {
    super(code, message, { kind: code === 'MESHD_CNI_INSTALL_BAD_OPTION' ? 'invalid' : 'failed', cause });
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
  const launcher = renderLauncher(o);
  if (readIfExists(binPath) !== launcher) {
    writeAtomic(binPath, launcher, 0o755);
    actions.push(`wrote ${binPath}`);
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
  }
  return { changed: actions.filter((a) => !a.startsWith('kept ')).length > 0, actions };
}
