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

const commands: Record<string, Command> = {
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
  return c.run(rest);
}
