/**
 * `meshd xds …`: the xDS server on its own, for debugging Envoy configuration.
 *
 *   meshd xds serve --snapshot FILE [--listen unix:PATH|HOST:PORT] [--verbose]
 *
 * Serves the snapshot file to every node that connects (ADS or per-type
 * services, SotW or delta) and reloads it when it changes; a bad file is
 * reported with the JSON path of each problem and the previous snapshot keeps
 * being served.
 */
import { DEFAULT_LISTEN, XdsServer, isXdsError, loadSnapshotFile, snapshotCounts, watchSnapshotFile } from '../../xds/index.js';
import type { LogFields, XdsLogger } from '../../xds/index.js';
import { command, UsageError, type CliIo, type CommandGroup } from './args.js';

/** Every node gets the same snapshot. */
const ALL_NODES = '*';

interface ServeArgs {
  snapshot: string;
  listen: string;
  verbose: boolean;
}

function cliLogger(verbose: boolean, io: CliIo): XdsLogger {
  const line = (level: string, msg: string, fields?: LogFields): void => {
    const extra = Object.entries(fields ?? {})
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v)}`)
      .join(' ');
    io.err(`meshd xds: ${level} ${msg}${extra ? ` ${extra}` : ''}\n`);
  };
  return {
    info: (m, f) => (verbose ? line('info', m, f) : undefined),
    warn: (m, f) => line('warn', m, f),
    error: (m, f) => line('error', m, f),
  };
}

async function serve(args: ServeArgs, io: CliIo): Promise<number> {
  const log = cliLogger(args.verbose, io);
  let first;
  try {
    first = loadSnapshotFile(args.snapshot);
  } catch (e) {
    if (!isXdsError(e)) throw e;
    io.err(`meshd xds: ${e.message}\n${e.problems.map((p) => `  ${p}\n`).join('')}`);
    return 1;
  }
  const server = new XdsServer({ log, nodeGroup: () => ALL_NODES });
  server.setSnapshot(ALL_NODES, first);
  let bound;
  try {
    bound = await server.listen(args.listen);
  } catch (e) {
    await server.close();
    if (!isXdsError(e)) throw e;
    io.err(`meshd xds: ${e.message}\n`);
    return 1;
  }
  const counts = (s: typeof first): string =>
    Object.entries(snapshotCounts(s))
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
  io.err(`meshd xds: serving ${args.snapshot} version ${first.version} (${counts(first)}) on ${bound.target}\n`);
  const watcher = watchSnapshotFile(
    args.snapshot,
    (snap) => {
      try {
        server.setSnapshot(ALL_NODES, snap);
        io.err(`meshd xds: reloaded ${args.snapshot} version ${snap.version} (${counts(snap)})\n`);
      } catch (e) {
        if (!isXdsError(e)) throw e;
        io.err(`meshd xds: rejected ${args.snapshot}, still serving the previous snapshot: ${e.message}\n`);
      }
    },
    (e) => {
      io.err(
        `meshd xds: rejected ${args.snapshot}, still serving the previous snapshot: ${e.message}\n${e.problems.map((p) => `  ${p}\n`).join('')}`,
      );
    },
  );
  await new Promise<void>((res) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      res();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  watcher.close();
  await server.close();
  io.err('meshd xds: stopped\n');
  return 0;
}

export const xds: CommandGroup = {
  name: 'xds',
  summary: 'the xDS server on its own, for debugging Envoy configuration',
  subcommands: [
    command(
      {
        name: 'xds serve',
        summary: 'serve a JSON snapshot file to Envoy over xDS (ADS or per-type, SotW or delta), reloading it when it changes',
        options: {
          snapshot: { type: 'string', value: 'FILE', help: 'the snapshot file (required): {"version": …, "resources": {"clusters": […], …}}' },
          listen: { type: 'string', value: 'unix:PATH|HOST:PORT', help: `where to serve (default ${DEFAULT_LISTEN}; loopback addresses only)` },
          verbose: { type: 'boolean', short: 'v', help: 'log every request and response' },
        },
        notes: ['A bad snapshot file is reported with the JSON path of each problem; the previous snapshot keeps being served.'],
      },
      (args, io) => {
        const snapshot = args.string('snapshot');
        if (snapshot === undefined) throw new UsageError('meshd xds serve: --snapshot FILE is required; see "meshd xds serve --help"');
        const listen = args.string('listen') ?? DEFAULT_LISTEN;
        if (listen === '') throw new UsageError('meshd xds serve: --listen needs a value; see "meshd xds serve --help"');
        return serve({ snapshot, listen, verbose: args.flag('verbose') }, io);
      },
    ),
  ],
};
