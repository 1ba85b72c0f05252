/**
 * `meshd install precheck [--istio sidecar|ambient] [--config FILE] [--set KEY=VALUE]…`
 *
 * Can meshd be installed on this node with this configuration? The machine
 * checks of `meshd doctor` (privileges, kernel, BTF, BPF, cgroup v2, bpffs,
 * tc, policy routing, Envoy) and then the install checks of
 * src/install/precheck.ts: other CNI configurations and what cni.exclusive
 * would do to them, kube-proxy against kubeProxyReplacement, and with
 * --istio the settings Istio needs from the node's data plane. Each failure
 * says what to set. Exit status: 0, or that of the first failed required
 * check's kind (EXIT_STATUS: 3 invalid configuration, 5 conflict with what
 * is on the node, 6 a kernel feature missing).
 */
import { ConfigError, loadConfig, type AgentConfig } from '../agent/config.js';
import { evaluateInstall, formatChecks, gatherNodeFacts, ISTIO_MODES, precheckExitStatus, type IstioMode, type PrecheckResult } from '../install/precheck.js';
import { MeshdError } from '../util/errors.js';
import { command, UsageError, type CommandGroup } from './args.js';

export const precheckOptions = {
  istio: { type: 'string', value: ISTIO_MODES.join('|'), help: 'also check what Istio in this mode needs from meshd' },
  config: { type: 'string', value: 'FILE', help: "the agent's configuration file (the chart's ConfigMap config.yaml), as the agent would read it" },
  set: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'a configuration key, as for meshd agent' },
} as const;

export function istioMode(v: string | undefined, cmd: string): IstioMode | undefined {
  if (v === undefined) return undefined;
  const m = ISTIO_MODES.find((x) => x === v);
  if (!m) throw new UsageError(`meshd ${cmd}: --istio takes ${ISTIO_MODES.join(' or ')}, not "${v}"`);
  return m;
}

/** The configuration the agent would run with (file, MESHD_* environment, --set), or a coded error naming the key. */
export function precheckConfig(file: string | undefined, sets: readonly string[], cmd: string): AgentConfig {
  const flags: Record<string, string> = {};
  for (const kv of sets) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`meshd ${cmd}: --set takes KEY=VALUE, not "${kv}"`);
    flags[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  try {
    return loadConfig({ ...(file ? { file } : {}), flags });
  } catch (e) {
    if (e instanceof ConfigError) throw new MeshdError(e.code, e.message, { kind: 'invalid', cause: e });
    throw e;
  }
}

export function formatPrecheck(results: readonly PrecheckResult[]): string {
  return formatChecks(results, 'meshd can be installed on this node with this configuration.');
}

/** Doctor's machine checks, then the install checks; a failed machine check is a missing kernel/host feature. */
export async function runPrecheck(cfg: AgentConfig, istio: IstioMode | undefined): Promise<PrecheckResult[]> {
  const { runDoctor } = await import('./doctor.js'); // doctor imports this module's option helpers
  const machine: PrecheckResult[] = (await runDoctor()).map((r) => (r.ok ? r : { ...r, kind: 'unavailable' }));
  return [...machine, ...evaluateInstall(await gatherNodeFacts(cfg), cfg, istio)];
}

export const install: CommandGroup = {
  name: 'install',
  summary: 'checks before installing meshd on a node',
  subcommands: [
    command(
      {
        name: 'install precheck',
        summary: 'can meshd be installed here with this configuration (kernel, CNI, kube-proxy, Istio)? each failure says what to set',
        options: precheckOptions,
        output: true,
      },
      async (args, io) => {
        const istio = istioMode(args.string('istio'), 'install precheck');
        const cfg = precheckConfig(args.string('config'), args.strings('set'), 'install precheck');
        const results = await runPrecheck(cfg, istio);
        io.out(args.format({ checks: results }, () => formatPrecheck(results)));
        return precheckExitStatus(results);
      },
    ),
  ],
};
