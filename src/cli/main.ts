/**
 * The `meshd` command line. Each command lives in its own module and is
 * loaded only when used, so `meshd --version` stays instant; every command
 * parses its arguments with the same parser (args.ts) and prints with the
 * same output formats (output.ts).
 *
 *   meshd --version | help | <command> [<subcommand>] [options]
 *
 * A failed command prints one line, `code: message` (never a stack trace),
 * and exits with the status of the error's kind (util/errors.ts: 2 for usage
 * errors, 1 for a failed operation, …).
 */
import { describeError, exitStatusOf } from '../util/errors.js';
import { packageVersion } from '../util/paths.js';
import { processIo, runGroup, UsageError, type CliIo, type Command, type CommandGroup } from './args.js';

interface Entry {
  summary: string;
  load(): Promise<Command | CommandGroup>;
}

const commands: Readonly<Record<string, Entry>> = {
  agent: { summary: 'run the node agent (--config FILE, --standalone DIR | --kubeconfig FILE, --<key>=<value>)', load: async () => (await import('./agent.js')).agent },
  status: { summary: 'the running agent: Envoy, xDS versions and NACKs, datapath, counts', load: async () => (await import('./node.js')).status },
  endpoint: { summary: 'list | get ID: local endpoints', load: async () => (await import('./node.js')).endpoint },
  identity: { summary: 'list: security identities', load: async () => (await import('./node.js')).identity },
  service: { summary: 'list: services and their backends', load: async () => (await import('./node.js')).service },
  bpf: { summary: "policy get ENDPOINT: an endpoint's policy map as the kernel holds it", load: async () => (await import('./node.js')).bpf },
  proxy: { summary: 'list | routing ensure|remove: proxy listeners; the policy routing of redirects', load: async () => (await import('./node.js')).proxy },
  install: { summary: 'precheck [--istio sidecar|ambient]: can meshd be installed on this node with this configuration', load: async () => (await import('./install.js')).install },
  uninstall: { summary: '--node: remove what meshd left on this node after its agent stopped (CNI files, pins, programs, routing, state)', load: async () => (await import('./uninstall.js')).uninstall },
  doctor: { summary: 'check that this machine can run meshd (privileges, kernel, BPF, Envoy)', load: async () => (await import('./doctor.js')).doctor },
  lb: { summary: 'list: the Service frontends and backends the socket LB holds (pinned maps)', load: async () => (await import('./lb.js')).lb },
  datapath: { summary: 'status | flows: the endpoint datapath from its pinned maps, and live flow events', load: async () => (await import('./datapath.js')).datapath },
  cni: { summary: 'install | uninstall: the CNI configuration and the meshd-cni plugin', load: async () => (await import('./cni.js')).cni },
  policy: { summary: 'validate | trace | get: policy files, what the engine decides, the agent\'s policies', load: async () => (await import('./policy.js')).policy },
  fqdn: { summary: 'cache list: names learned from DNS for toFQDNs, per endpoint (addresses, TTL, expiry)', load: async () => (await import('./fqdn.js')).fqdn },
  observe: { summary: 'flows from the node observer (Hubble API): the filters and output forms of hubble observe', load: async () => (await import('./observe.js')).observe },
  relay: { summary: "one Hubble observer API over every node's observer (flows merged in time order)", load: async () => (await import('./relay.js')).relay },
  ui: { summary: 'the service map and live flows in the browser (port 12000)', load: async () => (await import('./ui.js')).ui },
  demo: { summary: 'the end-to-end demo on this machine: one node, or --nodes 2 [--routing-mode native|tunnel]', load: async () => (await import('./demo.js')).demo },
  xds: { summary: 'serve: a JSON snapshot file to Envoy over xDS, for debugging', load: async () => (await import('./xds.js')).xds },
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length), 9);
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    `meshd ${packageVersion()}: a sidecarless service-mesh data plane for Kubernetes nodes`,
    '',
    'Usage: meshd <command> [<subcommand>] [options]',
    '',
    'Commands:',
    ...rows,
    `  ${'help'.padEnd(width)}  show this help`,
    '',
    'Options:',
    '  --version  print the version',
    '',
    'Every command takes --help; commands that print data take -o text|json|yaml.',
  ].join('\n');
}

const isGroup = (c: Command | CommandGroup): c is CommandGroup => 'subcommands' in c;

/** Every command, loaded (for help texts and tests). */
export async function allCommands(): Promise<Command[]> {
  const loaded = await Promise.all(Object.values(commands).map((e) => e.load()));
  return loaded.flatMap((c) => (isGroup(c) ? [...c.subcommands] : [c]));
}

export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === 'version' || cmd === '-v') {
    io.out(`${packageVersion()}\n`);
    return 0;
  }
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    io.out(`${help()}\n`);
    return 0;
  }
  try {
    const entry = commands[cmd];
    if (!entry) throw new UsageError(`unknown command "${cmd}"; see "meshd help"`);
    const c = await entry.load();
    return await (isGroup(c) ? runGroup(c, rest, io) : c.run(rest, io));
  } catch (e) {
    io.err(`${describeError(e)}\n`);
    return exitStatusOf(e);
  }
}
