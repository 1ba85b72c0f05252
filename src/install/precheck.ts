/**
 * Install prechecks: what a node and a configuration need before meshd is
 * installed on it, beside whatever already runs there (another CNI, kube-proxy,
 * Istio). `meshd install precheck` runs these after the machine checks of
 * `meshd doctor` (kernel, BTF, cgroup v2, bpffs, BPF programs), and `meshd
 * doctor` runs them too. Each failure says which configuration key to set.
 *
 *   const facts = await gatherNodeFacts(config);           // reads the CNI dir, iptables, /proc
 *   const results = evaluateInstall(facts, config, 'ambient');
 *   const status = precheckExitStatus(results);            // 0, or the exit status of the first failure's kind
 *
 * Gathering (IO) and judging (pure) are apart, so the rules are unit-tested on
 * facts and the integration test gathers real ones (a CNI directory, an
 * iptables chain in a scratch namespace).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { AgentConfig } from '../agent/config.js';
import { BACKUP_SUFFIX, CONFLIST_NAME, PLUGIN_TYPE } from '../cni/installer.js';
import { EXIT_STATUS, type ErrorKind } from '../util/errors.js';
import { run } from '../util/exec.js';
import { errno } from '../util/fs-errors.js';

export type IstioMode = 'sidecar' | 'ambient';
export const ISTIO_MODES: readonly IstioMode[] = ['sidecar', 'ambient'];

/** Istio ambient SNATs kubelet probes to this link-local address (istio#52208). */
export const AMBIENT_PROBE_SOURCE = '169.254.7.127';

export interface PrecheckResult {
  name: string;
  ok: boolean;
  /** A failed required check stops the install; a failed optional one is a warning. */
  required: boolean;
  detail: string;
  /** What to set or do when it failed. */
  fix?: string;
  /** Why it failed, coarsely: decides the exit status (EXIT_STATUS). */
  kind?: ErrorKind;
}

/** One network configuration file in the CNI directory, as far as precheck reads it. */
export interface CniConfFile {
  file: string;
  /** The configuration's plugin types in chain order (empty when the file does not parse). */
  plugins: string[];
  /** Why the file could not be read as a configuration, if it could not. */
  unreadable?: string;
}

export interface NodeFacts {
  cniConfDir: string;
  /** Every *.conf, *.conflist and *.json in the directory, sorted as runtimes sort them (meshd's own included). */
  cniConfs: CniConfFile[];
  /** Files meshd renamed away earlier (cni.exclusive=true). */
  cniBackups: string[];
  /** Evidence of kube-proxy on this node, e.g. "iptables nat chain KUBE-SERVICES", "process kube-proxy (pid 42)". */
  kubeProxy: string[];
}

const CONF_EXTENSIONS = ['.conf', '.conflist', '.json'];

// A CNI configuration as far as precheck needs it: the plugin types (a .conflist has a chain, a .conf one plugin).
const ConfList = z.object({ plugins: z.array(z.object({ type: z.string() }).passthrough()) }).passthrough();
const SingleConf = z.object({ type: z.string() }).passthrough();

export function readCniConf(dir: string, file: string): CniConfFile {
  let text: string;
  try {
    text = readFileSync(join(dir, file), 'utf8');
  } catch (e) {
    return { file, plugins: [], unreadable: errno(e) ?? String(e) };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { file, plugins: [], unreadable: `not JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  const list = ConfList.safeParse(doc);
  if (list.success) return { file, plugins: list.data.plugins.map((p) => p.type) };
  const single = SingleConf.safeParse(doc);
  if (single.success) return { file, plugins: [single.data.type] };
  return { file, plugins: [], unreadable: 'neither "plugins" nor "type"' };
}

/** The CNI directory as the runtime sees it (missing directory: no files). */
export function readCniDir(dir: string): Pick<NodeFacts, 'cniConfs' | 'cniBackups'> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if (errno(e) === 'ENOENT') return { cniConfs: [], cniBackups: [] };
    throw e;
  }
  names.sort();
  return {
    cniConfs: names.filter((n) => CONF_EXTENSIONS.some((x) => n.endsWith(x))).map((n) => readCniConf(dir, n)),
    cniBackups: names.filter((n) => n.endsWith(BACKUP_SUFFIX)),
  };
}

/** kube-proxy's traces on this node: its nat chain (iptables mode), its nftables table, or its process. */
export async function detectKubeProxy(procRoot = '/proc'): Promise<string[]> {
  const found: string[] = [];
  const iptables = await run('iptables', ['-w', '5', '-t', 'nat', '-S', 'KUBE-SERVICES']).then(
    () => true,
    () => false,
  );
  if (iptables) found.push('iptables nat chain KUBE-SERVICES');
  const nft = await run('nft', ['list', 'table', 'ip', 'kube-proxy']).then(
    () => true,
    () => false,
  );
  if (nft) found.push('nftables table ip kube-proxy');
  let pids: string[] = [];
  try {
    pids = readdirSync(procRoot).filter((p) => /^\d+$/.test(p));
  } catch {
    // No /proc to look at: the chains above are the evidence.
  }
  for (const pid of pids) {
    try {
      if (readFileSync(join(procRoot, pid, 'comm'), 'utf8').trim() === 'kube-proxy') found.push(`process kube-proxy (pid ${pid})`);
    } catch {
      // The process exited while we looked.
    }
  }
  return found;
}

export async function gatherNodeFacts(config: AgentConfig): Promise<NodeFacts> {
  const dir = config['cni.confDir'];
  return { cniConfDir: dir, ...readCniDir(dir), kubeProxy: await detectKubeProxy() };
}

const isMeshd = (c: CniConfFile) => c.file === CONFLIST_NAME || c.plugins[0] === PLUGIN_TYPE;

function cniCheck(f: NodeFacts, cfg: AgentConfig, istio: IstioMode | undefined): PrecheckResult {
  const name = 'cni-configs';
  if (!cfg['cni.install']) return { name, ok: true, required: false, detail: 'cni.install=false: meshd writes no CNI configuration' };
  const others = f.cniConfs.filter((c) => !isMeshd(c));
  const chained = f.cniConfs.find(isMeshd)?.plugins.slice(1) ?? [];
  const chainedNote = chained.length > 0 ? `; chained after meshd-cni in ${CONFLIST_NAME}: ${chained.join(', ')} (kept)` : '';
  if (others.length === 0) {
    return { name, ok: true, required: true, detail: `no other network configuration in ${f.cniConfDir}${chainedNote}` };
  }
  const list = others.map((c) => `${c.file}${c.plugins.length ? ` (${c.plugins.join(' → ')})` : ''}`).join(', ');
  if (cfg['cni.exclusive']) {
    return {
      name,
      ok: false,
      required: istio !== undefined,
      kind: 'conflict',
      detail: `cni.exclusive=true would rename ${list} in ${f.cniConfDir} to *${BACKUP_SUFFIX} (runtimes then ignore them)${chainedNote}`,
      fix: istio ? 'set cni.exclusive=false: Istio\'s CNI plugin must stay in the chain' : 'set cni.exclusive=false to keep them, or remove them if meshd is to be the only network',
    };
  }
  // exclusive=false: nothing is renamed; but a runtime uses the lexically first configuration as the pod network.
  const first = f.cniConfs[0];
  if (first && !isMeshd(first)) {
    return {
      name,
      ok: false,
      required: false,
      kind: 'conflict',
      detail: `cni.exclusive=false keeps ${list}; but ${first.file} sorts before ${CONFLIST_NAME}, so the runtime gives pods that network, not meshd's`,
      fix: `remove ${first.file}, or let its owner chain into ${CONFLIST_NAME} instead (as istio-cni does)`,
    };
  }
  return { name, ok: true, required: true, detail: `cni.exclusive=false: ${list} stay untouched; ${CONFLIST_NAME} sorts first${chainedNote}` };
}

function kubeProxyCheck(f: NodeFacts, cfg: AgentConfig): PrecheckResult {
  const name = 'kube-proxy';
  const present = f.kubeProxy.length > 0;
  if (cfg.kubeProxyReplacement) {
    return present
      ? {
          name,
          ok: false,
          required: false,
          kind: 'conflict',
          detail: `kubeProxyReplacement=true and kube-proxy is here too (${f.kubeProxy.join('; ')}): both translate Services; meshd's socket LB acts first and kube-proxy's rules are dead weight`,
          fix: 'remove kube-proxy (its DaemonSet and its KUBE-* rules), or set kubeProxyReplacement=false',
        }
      : { name, ok: true, required: true, detail: 'kubeProxyReplacement=true and no kube-proxy: meshd load-balances Services' };
  }
  return present
    ? { name, ok: true, required: true, detail: `kubeProxyReplacement=false: kube-proxy load-balances Services (${f.kubeProxy.join('; ')})` }
    : {
        name,
        ok: false,
        required: true,
        kind: 'invalid',
        detail: 'kubeProxyReplacement=false and no kube-proxy on this node: nothing would load-balance Services',
        fix: 'set kubeProxyReplacement=true, or install kube-proxy',
      };
}

function istioChecks(f: NodeFacts, cfg: AgentConfig, mode: IstioMode): PrecheckResult[] {
  const out: PrecheckResult[] = [];
  out.push(
    cfg['socketLB.hostNamespaceOnly'] || !cfg['socketLB.enabled']
      ? { name: 'istio-socketlb', ok: true, required: true, detail: 'socketLB.hostNamespaceOnly=true: pod sockets keep the ClusterIP, so Istio\'s capture sees the Service address' }
      : {
          name: 'istio-socketlb',
          ok: false,
          required: true,
          kind: 'invalid',
          detail: 'socketLB.hostNamespaceOnly=false: pod connections are rewritten to a backend at connect(), before Istio\'s capture sees them, so Istio routes and authorizes the wrong destination (cilium#13882, cilium#17276)',
          fix: 'set socketLB.hostNamespaceOnly=true',
        },
  );
  out.push(
    cfg['cni.exclusive']
      ? {
          name: 'istio-cni',
          ok: false,
          required: true,
          kind: 'invalid',
          detail: 'cni.exclusive=true: meshd would rename other CNI configurations and Istio\'s CNI would lose its place',
          fix: 'set cni.exclusive=false',
        }
      : { name: 'istio-cni', ok: true, required: true, detail: 'cni.exclusive=false: istio-cni may chain into meshd\'s conflist and stays there across restarts' },
  );
  const istioCni = f.cniConfs.some((c) => c.plugins.includes('istio-cni'));
  out.push({ name: 'istio-cni-present', ok: true, required: false, detail: istioCni ? 'istio-cni is in the CNI chain' : 'istio-cni is not installed yet (it chains itself into the primary conflist when Istio installs)' });
  if (mode === 'ambient') {
    out.push({ name: 'ambient-masquerade', ok: true, required: true, detail: 'meshd never masquerades pod traffic (bpf.masquerade=false is its only mode): ztunnel sees pod addresses' });
    out.push(
      cfg.policyEnforcementMode === 'always'
        ? {
            name: 'ambient-probes',
            ok: false,
            required: false,
            kind: 'invalid',
            detail: `policyEnforcementMode=always: kubelet probes SNATed to ${AMBIENT_PROBE_SOURCE} by ambient are denied unless a policy allows that address`,
            fix: `apply examples/istio/allow-ambient-probes.yaml (fromCIDR ${AMBIENT_PROBE_SOURCE}/32), or use policyEnforcementMode=default`,
          }
        : {
            name: 'ambient-probes',
            ok: true,
            required: false,
            detail: `kubelet probes SNATed to ${AMBIENT_PROBE_SOURCE} reach pods without policy; under a default-deny policy allow ${AMBIENT_PROBE_SOURCE}/32 (examples/istio/allow-ambient-probes.yaml)`,
          },
    );
  }
  return out;
}

/** hostFirewall.enabled: a host policy cuts what it does not list, the agent's own API-server connection included (as in Cilium). */
function hostFirewallCheck(cfg: AgentConfig): PrecheckResult {
  const name = 'host-firewall';
  const what = 'host policies (nodeSelector) are enforced on the native devices: one that puts a direction into default deny cuts everything it does not list, including the agent\'s connection to the API server, node-to-node traffic, SSH and DNS';
  return cfg.policyAuditMode
    ? { name, ok: true, required: false, detail: `${what}; policyAuditMode=true: nothing is dropped, would-be drops are reported as AUDIT flows` }
    : {
        name,
        ok: false,
        required: false,
        kind: 'invalid',
        detail: what,
        fix: 'list kube-apiserver, remote-node and what the node needs in the host policy (toEntities/fromEntities), and try it first with policyAuditMode=true',
      };
}

/** The install checks for a configuration on a node (pure: facts in, results out). */
export function evaluateInstall(facts: NodeFacts, cfg: AgentConfig, istio?: IstioMode): PrecheckResult[] {
  return [cniCheck(facts, cfg, istio), kubeProxyCheck(facts, cfg), ...(istio ? istioChecks(facts, cfg, istio) : []), ...(cfg['hostFirewall.enabled'] ? [hostFirewallCheck(cfg)] : [])];
}

/** One line per check (ok, FAIL for a failed required check, warn otherwise) with its fix, and a summary line. */
export function formatChecks(results: ReadonlyArray<Pick<PrecheckResult, 'name' | 'ok' | 'required' | 'detail' | 'fix'>>, allPassed: string): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines = results.map((r) => {
    const tag = r.ok ? ' ok ' : r.required ? 'FAIL' : 'warn';
    const fix = r.ok || !r.fix ? '' : ` -> ${r.fix}`;
    return `[${tag}] ${r.name.padEnd(width)}  ${r.detail}${fix}`;
  });
  const failed = results.filter((r) => r.required && !r.ok).length;
  lines.push(failed === 0 ? allPassed : `${failed} required check(s) failed.`);
  return lines.join('\n');
}

/** 0 when every required check passed, else the exit status of the first failed required check's kind. */
export function precheckExitStatus(results: readonly PrecheckResult[]): number {
  const failed = results.find((r) => r.required && !r.ok);
  return failed ? EXIT_STATUS[failed.kind ?? 'failed'] : 0;
}
