/**
 * `meshd uninstall --node [--config FILE] [--set KEY=VALUE]…`
 *
 * Leaves this node without meshd after the agent has stopped (`helm
 * uninstall` removes the Kubernetes objects; the chart's pre-delete hook
 * runs this on every node first): meshd's CNI conflist and plugin (another
 * plugin's files untouched, `*.meshd_bak` restored), Envoys left serving,
 * every pin under bpf.root/meshd (which detaches meshd's tc and cgroup
 * programs), the proxy policy routing and stateDir. The paths come from the
 * agent's configuration, read as the agent reads it. Refuses, changing
 * nothing, while an agent answers on its API socket.
 */
import { uninstallNode } from '../install/uninstall-node.js';
import { command, UsageError } from './args.js';
import { precheckConfig } from './install.js';

export const uninstall = command(
  {
    name: 'uninstall',
    summary: 'remove everything meshd left on this node (CNI files, pins and the programs they attach, policy routing, state); the agent must be stopped',
    options: {
      node: { type: 'boolean', help: 'required: clean this node (what is removed is listed in docs/install.md)' },
      config: { type: 'string', value: 'FILE', help: "the agent's configuration file (the chart's ConfigMap config.yaml), for the paths" },
      set: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'a configuration key, as for meshd agent' },
    },
    output: true,
  },
  async (args, io) => {
    if (!args.flag('node')) throw new UsageError('meshd uninstall: say --node (it removes meshd from this node)');
    const cfg = precheckConfig(args.string('config'), args.strings('set'), 'uninstall');
    const report = await uninstallNode(cfg);
    io.out(args.format(report, () => `${report.actions.length > 0 ? report.actions.join('\n') : 'nothing of meshd was left on this node'}\n`));
    return 0;
  },
);
