/**
 * Removes everything meshd leaves on a node after its agent has stopped (an
 * agent stopped by SIGTERM deliberately leaves its datapath pinned and
 * enforcing): the steps docs/install.md lists, in an order that never leaves
 * a runtime pointed at a plugin that is gone.
 *
 *   const report = await uninstallNode(config);   // config: the agent's (loadConfig)
 *
 * 1. CNI: meshd's conflist (only when its first plugin is meshd-cni), the
 *    meshd-cni launcher and meshd-cni.d/, `*.meshd_bak` renamed back.
 * 2. Envoys the agent left serving (proxy.stopOnShutdown=false): the
 *    processes whose bootstrap is under stateDir, SIGTERM then SIGKILL.
 * 3. bpffs: every pin under bpf.root/meshd, the link pins first; unpinning a
 *    link detaches its program (tcx on pod veths and on the native devices,
 *    cgroup socket hooks).
 * 4. The proxy policy routing (ip rule on the proxy mark, its route table).
 * 5. stateDir (sockets, IPAM and endpoint records, Envoy work files).
 *
 * Refuses (MESHD_UNINSTALL_AGENT_RUNNING, nothing changed) while an agent
 * answers on stateDir's API socket: a running agent would put it all back.
 */
import { connect } from 'node:net';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { AgentConfig } from '../agent/config.js';
import { CONFLIST_NAME, PLUGIN_TYPE, uninstallCni } from '../cni/installer.js';
import { stopProcesses } from '../../envoy/orphans.js';
import { defaultPolicyRouting, removePolicyRouting, removePolicyRouting6 } from '../proxy/policy-routing.js';
import { removeUpstreamReturn } from '../dns/upstream-return.js';
import { envoysOfWorkDir } from '../proxy/supervisor-process.js';
import { MeshdError } from '../util/errors.js';
import { errno } from '../util/fs-errors.js';

export interface UninstallReport {
  actions: string[];
}

export class UninstallError extends MeshdError {
  constructor(code: 'MESHD_UNINSTALL_AGENT_RUNNING', message: string) {
    super(code, message, { kind: 'conflict' });
  }
}

/** True when something accepts connections on the agent's API socket. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1_000, () => done(false));
  });
}

const ConflistHead = z.looseObject({ plugins: z.array(z.looseObject({ type: z.string() })).min(1) });

/** meshd's conflist: the name is meshd's and its first plugin is meshd-cni (other plugins may be chained after it). */
function conflistIsMeshds(path: string): boolean {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (errno(e) === 'ENOENT') return true; // nothing there: nothing to keep
    throw e;
  }
  try {
    const parsed = ConflistHead.safeParse(JSON.parse(text));
    return parsed.success && parsed.data.plugins[0]?.type === PLUGIN_TYPE;
  } catch {
    return false;
  }
}

/** Removes a bpffs directory tree, link pins (directories named `links`) first so programs detach before their maps go. */
function removePins(dir: string): void {
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const sub = join(d, e.name);
      if (e.name === 'links') rmSync(sub, { recursive: true, force: true });
      else walk(sub);
    }
  };
  walk(dir);
  rmSync(dir, { recursive: true, force: true });
}

export async function uninstallNode(c: AgentConfig, opts: { apiSocket?: string } = {}): Promise<UninstallReport> {
  const actions: string[] = [];
  const socket = opts.apiSocket ?? join(c.stateDir, 'meshd.sock');
  if (await answers(socket)) {
    throw new UninstallError('MESHD_UNINSTALL_AGENT_RUNNING', `an agent answers on ${socket}: stop it first (delete the DaemonSet or stop the service); nothing was removed`);
  }

  const conflist = join(c['cni.confDir'], CONFLIST_NAME);
  if (conflistIsMeshds(conflist)) {
    actions.push(...uninstallCni({ confDir: c['cni.confDir'], binDir: c['cni.binDir'] }).actions);
  } else {
    actions.push(`kept ${conflist}: its first plugin is not ${PLUGIN_TYPE}`);
  }

  // The proxy manager's Envoys run bootstraps under <stateDir>/envoy.
  const envoys = envoysOfWorkDir(join(c.stateDir, 'envoy'));
  if (envoys.length > 0) {
    await stopProcesses(envoys, 5_000);
    actions.push(`stopped the Envoys left serving (pids ${envoys.join(', ')})`);
  }

  const pinDir = join(c['bpf.root'], 'meshd');
  if (existsSync(pinDir)) {
    removePins(pinDir);
    actions.push(`removed ${pinDir} (unpinning the links detached meshd's programs)`);
  }

  await removePolicyRouting(defaultPolicyRouting);
  await removePolicyRouting6(defaultPolicyRouting).catch(() => undefined); // a node without IPv6 has none
  await removeUpstreamReturn(defaultPolicyRouting);
  actions.push(`removed the proxy policy routing (fwmark rule, table ${defaultPolicyRouting.table})`);

  if (existsSync(c.stateDir)) {
    try {
      rmSync(c.stateDir, { recursive: true, force: true });
      actions.push(`removed ${c.stateDir}`);
    } catch (e) {
      if (errno(e) !== 'EBUSY') throw e;
      // A mount point (a container given stateDir itself): what is in it goes, the directory stays.
      for (const name of readdirSync(c.stateDir)) rmSync(join(c.stateDir, name), { recursive: true, force: true });
      actions.push(`emptied ${c.stateDir} (a mount point here)`);
    }
  }
  return { actions };
}
