/**
 * The `meshd` command line. Each subcommand lives in its own module and is
 * loaded only when used, so `meshd --version` stays instant.
 *
 *   meshd --version | help | doctor | <subcommand> …
 */
import { packageVersion } from '../util/paths.js';

interface Command {
  summary: string;
  run(args: string[]): Promise<number>;
}

const node = (summary: string, name: string): Command => ({
  summary,
  async run(args) {
    const { runNodeCommand } = await import('./node.js');
    return runNodeCommand(name, args);
  },
});

const commands: Record<string, Command> = {
  agent: {
    summary: 'run the node agent (--config FILE, --standalone DIR, --<key>=<value>)',
    async run(args) {
      const { runAgentCommand } = await import('./agent.js');
      return runAgentCommand(args);
    },
  },
  status: node('the running agent: Envoy, xDS versions and NACKs, datapath, counts', 'status'),
  endpoint: node('list|get ID: local endpoints', 'endpoint'),
  identity: node('list: security identities', 'identity'),
  service: node('list: services and their backends', 'service'),
  bpf: node('policy get ENDPOINT: an endpoint\'s policy map as the kernel holds it', 'bpf'),
  proxy: node('list: proxy ports, listeners and their rules', 'proxy'),
  doctor: {
    summary: 'check that this machine can run meshd (privileges, kernel, BPF, Envoy)',
    async run(args) {
      const { runDoctor, formatDoctor } = await import('./doctor.js');
      const results = await runDoctor();
      if (args.includes('-o') && args[args.indexOf('-o') + 1] === 'json') {
        process.stdout.write(`${JSON.stringify({ checks: results })}\n`);
      } else {
        process.stdout.write(`${formatDoctor(results)}\n`);
      }
      return results.some((r) => r.required && !r.ok) ? 1 : 0;
    },
  },
  lb: {
    summary: 'list the Service frontends and backends the socket LB holds (lb list [--pin-dir DIR] [-o json])',
    async run(args) {
      const { runLb } = await import('./lb.js');
      return runLb(args);
    },
  },
  datapath: {
    summary: 'endpoints, policy and ipcache sizes, conntrack, and live flow events of the endpoint datapath (datapath status|flows [--pin-dir DIR] [-o json])',
    async run(args) {
      const { runDatapath } = await import('./datapath.js');
      return runDatapath(args);
    },
  },
  cni: {
    summary: 'install or uninstall the CNI configuration and the meshd-cni plugin (cni --help)',
    async run(args) {
      const { runCni } = await import('./cni.js');
      return runCni(args);
    },
  },
  policy: {
    summary: 'validate policy files; trace what the engine decides for a scenario (validate | trace)',
    async run(args) {
      const { runPolicy } = await import('./policy.js');
      return runPolicy(args);
    },
  },
  xds: {
    summary: 'serve a JSON snapshot file to Envoy over xDS (meshd xds serve --snapshot FILE [--listen unix:PATH|HOST:PORT])',
    async run(args) {
      const { runXds } = await import('./xds.js');
      return runXds(args);
    },
  },
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length), 9);
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    `meshd ${packageVersion()}: a sidecarless service-mesh data plane for Kubernetes nodes`,
    '',
    'Usage: meshd <command> [options]',
    '',
    'Commands:',
    ...rows,
    `  ${'help'.padEnd(width)}  show this help`,
    '',
    'Options:',
    '  --version  print the version',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === 'version' || cmd === '-v') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  const c = commands[cmd];
  if (!c) {
    process.stderr.write(`meshd: unknown command "${cmd}"\n\n${help()}\n`);
    return 2;
  }
  try {
    return await c.run(rest);
  } catch (e) {
    // A failed command prints one line (what failed and why), never a stack trace.
    const code = typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? ` [${e.code}]` : '';
    process.stderr.write(`meshd ${cmd}: ${e instanceof Error ? e.message : String(e)}${code}\n`);
    return 1;
  }
}
