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

const USAGE = 'usage: meshd xds serve --snapshot FILE [--listen unix:PATH|HOST:PORT] [--verbose]';

/** Every node gets the same snapshot. */
const ALL_NODES = '*';

interface ServeArgs {
  snapshot: string;
  listen: string;
  verbose: boolean;
}

function parseServeArgs(args: string[]): ServeArgs | string {
  let snapshot: string | undefined;
  let listen = DEFAULT_LISTEN;
  let verbose = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = (): string | undefined => args[++i];
    if (a === '--snapshot') snapshot = value();
    else if (a === '--listen') listen = value() ?? '';
    else if (a === '--verbose' || a === '-v') verbose = true;
    else return `unknown option "${String(a)}"`;
  }
  if (!snapshot) return '--snapshot FILE is required';
  if (!listen) return '--listen needs a value';
  return { snapshot, listen, verbose };
}

function cliLogger(verbose: boolean): XdsLogger {
  const line = (level: string, msg: string, fields?: LogFields): void => {
    const extra = Object.entries(fields ?? {})
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v)}`)
      .join(' ');
    process.stderr.write(`meshd xds: ${level} ${msg}${extra ? ` ${extra}` : ''}\n`);
  };
  return {
    info: (m, f) => (verbose ? line('info', m, f) : undefined),
    warn: (m, f) => line('warn', m, f),
    error: (m, f) => line('error', m, f),
  };
}

async function serve(args: ServeArgs): Promise<number> {
  const log = cliLogger(args.verbose);
  let first;
  try {
    first = loadSnapshotFile(args.snapshot);
  } catch (e) {
    if (!isXdsError(e)) throw e;
    process.stderr.write(`meshd xds: ${e.message}\n${e.problems.map((p) => `  ${p}\n`).join('')}`);
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
    process.stderr.write(`meshd xds: ${e.message}\n`);
    return 1;
  }
  const counts = (s: typeof first): string =>
    Object.entries(snapshotCounts(s))
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
  process.stderr.write(`meshd xds: serving ${args.snapshot} version ${first.version} (${counts(first)}) on ${bound.target}\n`);
  const watcher = watchSnapshotFile(
    args.snapshot,
    (snap) => {
      try {
        server.setSnapshot(ALL_NODES, snap);
        process.stderr.write(`meshd xds: reloaded ${args.snapshot} version ${snap.version} (${counts(snap)})\n`);
      } catch (e) {
        if (!isXdsError(e)) throw e;
        process.stderr.write(`meshd xds: rejected ${args.snapshot}, still serving the previous snapshot: ${e.message}\n`);
      }
    },
    (e) => {
      process.stderr.write(
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
  process.stderr.write('meshd xds: stopped\n');
  return 0;
}

export async function runXds(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'serve') {
    process.stderr.write(`${USAGE}\n`);
    return sub === undefined || sub === 'help' || sub === '--help' ? 0 : 2;
  }
  const parsed = parseServeArgs(rest);
  if (typeof parsed === 'string') {
    process.stderr.write(`meshd xds serve: ${parsed}\n${USAGE}\n`);
    return 2;
  }
  return serve(parsed);
}

