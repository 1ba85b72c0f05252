/**
 * npm run bench:xds [-- --json] [--mode sotw|delta|both] [--sizes 100,1000,10000] [--repeat 3] [--no-baseline] [--no-gcp]
 *                   [--phase-sizes 100,1000,10000,50000] [--no-phases] [--phases (only those)] [--dev-run (says so in the doc)]
 *
 * For N = 100, 1,000 and 10,000 clusters, each with a matching TCP listener
 * (127.0.0.1, port 0, tcp_proxy to its cluster): the time from
 * XdsServer.setSnapshot() (which includes encoding and hashing every
 * resource) until a real Envoy 1.40 ACKed both CDS and LDS at that snapshot,
 * and the server's heap afterwards (after a forced GC, snapshot held). A fresh
 * server and Envoy per N; Envoy is connected to an empty snapshot first, so
 * its start-up is not counted.
 *
 * Each measurement is repeated (--repeat, default 3, alternating modes) and
 * the median is reported with the range: the machine is shared.
 *
 * Side by side, in the same rounds (the order of the two alternates per
 * round): Envoy's own Go control plane, go-control-plane's v3 snapshot cache
 * and server, in a small program of ours (bench/go-control-plane/, built here
 * with `go build`; if that fails the column says why and is left empty). It
 * serves the very same resources (written to a file as protojson and parsed
 * into the v3 types) to the same Envoy in the same mode; timed in the Go
 * process from Consistent() + SetSnapshot() until Envoy's ACK of CDS and LDS
 * at that version; memory is the Go process's RSS after a forced GC that
 * returns free memory to the OS.
 *
 * And the same N clusters and listeners given to Envoy without a
 * control plane, in its bootstrap file (time from spawn until every listener
 * is active, so it includes Envoy's start; an empty bootstrap's start time is
 * printed for reference).
 *
 * And the server's own steps without Envoy, up to 50,000 resources
 * (bench/xds-phases.ts): where the server's share of the time goes.
 *
 * Writes docs/benchmarks/xds.md. With --json, one line per mode
 * {"ack_ms": {"100": …, "1000": …, "10000": …}, "heap_mb": {…}, "mode": "sotw|delta",
 *  "gcp_ack_ms": {…}, "gcp_rss_mb": {…}, "heap_above_empty_mb": {…}, "gcp_heap_above_empty_mb": {…}}
 * (go-control-plane's are null if it could not be built), then the last line
 * {"sotw": {"ack_ratio": {"100": …, …}, "change_ratio": {…}}, "delta": {…}}: meshd ÷ go-control-plane.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { request } from 'undici';
import { envoyVersion, findEnvoy } from '../envoy/binary.js';
import { repoPath } from '../src/util/paths.js';
import { bootstrap, startEnvoy } from '../test/helpers/xds-envoy.js';
import { buildGoControlPlane, type GcpSnapshotFile, GoControlPlane } from './go-control-plane.js';
import { type PhaseRow, phaseTable, runPhases } from './xds-phases.js';
import { MemoryLogger } from '../xds/log.js';
import { XdsServer } from '../xds/server.js';
import type { SnapshotInput } from '../xds/snapshot.js';
import { TYPE_URL } from '../xds/type-urls.js';
import { median, spread } from './stats.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const baseline = !args.includes('--no-baseline');
const withGcp = !args.includes('--no-gcp');
const opt = (flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i < 0 ? undefined : args[i + 1];
};
const modeArg = opt('--mode') ?? 'both';
if (!['sotw', 'delta', 'both'].includes(modeArg)) throw new Error(`--mode: expected sotw, delta or both, got "${modeArg}"`);
const modes: Array<'sotw' | 'delta'> = modeArg === 'both' ? ['sotw', 'delta'] : modeArg === 'delta' ? ['delta'] : ['sotw'];
const sizes = (opt('--sizes') ?? '100,1000,10000').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--sizes: "${s}" is not a positive integer`);
  return n;
});
const phaseSizes = (opt('--phase-sizes') ?? '100,1000,10000,50000').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--phase-sizes: "${s}" is not a positive integer`);
  return n;
});
const phasesOnly = args.includes('--phases');
const repeat = Number(opt('--repeat') ?? '3');
if (!Number.isInteger(repeat) || repeat <= 0) throw new Error(`--repeat: expected a positive integer, got "${opt('--repeat') ?? ''}"`);
const log = (s: string): void => {
  (json ? process.stderr : process.stdout).write(`${s}\n`);
};

setFlagsFromString('--expose-gc');
const gcFn: unknown = runInNewContext('gc');
const gc = (): void => {
  if (typeof gcFn === 'function') gcFn();
};

const TCP_PROXY = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

function resources(n: number): { clusters: Array<Record<string, unknown>>; listeners: Array<Record<string, unknown>> } {
  const clusters: Array<Record<string, unknown>> = [];
  const listeners: Array<Record<string, unknown>> = [];
  for (let i = 0; i < n; i++) {
    const name = `svc-${i}`;
    clusters.push({
      '@type': TYPE_URL.clusters,
      name,
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: {
        cluster_name: name,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 10_000 + (i % 50_000) } } } }] }],
      },
    });
    listeners.push({
      '@type': TYPE_URL.listeners,
      name,
      address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
      filter_chains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY, stat_prefix: name, cluster: name } }] }],
    });
  }
  return { clusters, listeners };
}

function heapMb(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

interface Row {
  n: number;
  mode: 'sotw' | 'delta';
  ackMs: number;
  /** setSnapshot() alone: encode, hash, check, queue the responses. */
  setMs: number;
  /** Then one cluster of N changes: setSnapshot → ACK. */
  updateMs: number;
  heapMb: number;
  baseHeapMb: number;
}

async function runXds(n: number, mode: 'sotw' | 'delta'): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bench-xds-'));
  const server = new XdsServer({ log: new MemoryLogger() });
  const nodeId = `bench-${mode}-${n}`;
  let envoy: Awaited<ReturnType<typeof startEnvoy>> | undefined;
  try {
    const bound = await server.listen(`unix:${join(dir, 'xds.sock')}`);
    server.setSnapshot(nodeId, { version: 'empty', resources: {} });
    envoy = await startEnvoy({ xds: bound.address, mode, nodeId });
    await server.waitForAck(nodeId, 'empty', { kinds: ['clusters', 'listeners'], timeoutMs: 30_000 });
    // like go-control-plane's Go heap, the figure counts the resources the server holds (their JSON
    // included): measured before they exist, and the bench drops its own references to them
    const baseHeapMb = heapMb();
    let input: SnapshotInput | undefined = { version: `n${n}`, resources: resources(n) };
    const t0 = performance.now();
    server.setSnapshot(nodeId, input);
    const setMs = performance.now() - t0;
    input = undefined;
    await server.waitForAck(nodeId, `n${n}`, { kinds: ['clusters', 'listeners'], timeoutMs: 600_000 });
    const ackMs = performance.now() - t0;
    const stats = await envoy.admin('/stats?filter=listener_manager.total_listeners_active$');
    const active = Number(/total_listeners_active: (\d+)/.exec(stats)?.[1]);
    if (active !== n) throw new Error(`Envoy ACKed but has ${active} active listeners, expected ${n}`);

    // a small change: one cluster's connect_timeout (SotW resends all N clusters, delta one)
    let changed: ReturnType<typeof resources> | undefined = resources(n);
    const first = changed.clusters[0];
    if (first) first.connect_timeout = '2s';
    const t1 = performance.now();
    server.setSnapshot(nodeId, { version: `n${n}-u`, resources: changed });
    changed = undefined;
    await server.waitForAck(nodeId, `n${n}-u`, { kinds: ['clusters'], timeoutMs: 600_000 });
    const updateMs = performance.now() - t1;
    // measured last, for both servers: a forced full GC right before a timed step leaves V8
    // with a shrunken young generation and cold code, which no running server has
    const heap = heapMb();
    return { n, mode, ackMs, setMs, updateMs, heapMb: heap, baseHeapMb };
  } catch (e) {
    throw new Error(`${mode} N=${n}: ${String(e)}\n${envoy?.logs().slice(-2000) ?? ''}`);
  } finally {
    await envoy?.stop();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface GcpRow {
  n: number;
  mode: 'sotw' | 'delta';
  ackMs: number;
  /** Consistent() + SetSnapshot() in the Go process. */
  setMs: number;
  updateMs: number;
  rssMb: number;
  heapMb: number;
  baseRssMb: number;
  /** Go heap with the empty snapshot served (Envoy connected): the like of meshd's "before". */
  baseHeapMb: number;
}

/** The same N clusters and listeners served by go-control-plane to the same Envoy. */
async function runGcp(bin: string, n: number, mode: 'sotw' | 'delta'): Promise<GcpRow> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bench-gcp-'));
  const sock = join(dir, 'xds.sock');
  const nodeId = `bench-gcp-${mode}-${n}`;
  const file = (name: string, f: GcpSnapshotFile): string => {
    const path = join(dir, `${name}.json`);
    writeFileSync(path, JSON.stringify(f));
    return path;
  };
  let gcp: GoControlPlane | undefined;
  let envoy: Awaited<ReturnType<typeof startEnvoy>> | undefined;
  try {
    gcp = await GoControlPlane.start(bin, `unix:${sock}`);
    await gcp.set(nodeId, file('empty', { versions: { clusters: 'empty', listeners: 'empty' }, resources: { clusters: [], listeners: [] } }));
    envoy = await startEnvoy({ xds: { kind: 'unix', path: sock }, mode, nodeId });
    await Promise.all([gcp.waitForAck('clusters', 'empty', 30_000), gcp.waitForAck('listeners', 'empty', 30_000)]);
    const { rssMb: baseRssMb, heapMb: baseHeapMb } = await gcp.mem();
    const full = file('full', { versions: { clusters: `n${n}`, listeners: `n${n}` }, resources: resources(n) });
    const { setMs } = await gcp.set(nodeId, full);
    const ackMs = Math.max(...(await Promise.all([gcp.waitForAck('clusters', `n${n}`), gcp.waitForAck('listeners', `n${n}`)])));
    const stats = await envoy.admin('/stats?filter=listener_manager.total_listeners_active$');
    const active = Number(/total_listeners_active: (\d+)/.exec(stats)?.[1]);
    if (active !== n) throw new Error(`Envoy ACKed but has ${active} active listeners, expected ${n}`);

    // the same small change as for meshd; the listeners keep their version
    const changed = resources(n);
    const first = changed.clusters[0];
    if (first) first.connect_timeout = '2s';
    await gcp.set(nodeId, file('update', { versions: { clusters: `n${n}-u`, listeners: `n${n}` }, resources: changed }));
    const updateMs = await gcp.waitForAck('clusters', `n${n}-u`);
    const { rssMb, heapMb: goHeap } = await gcp.mem();
    return { n, mode, ackMs, setMs, updateMs, rssMb, heapMb: goHeap, baseRssMb, baseHeapMb };
  } catch (e) {
    throw new Error(`go-control-plane ${mode} N=${n}: ${String(e)}\n${envoy?.logs().slice(-2000) ?? ''}`);
  } finally {
    await envoy?.stop();
    await gcp?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Envoy given the same resources in its bootstrap: spawn → every listener active. */
async function runStatic(n: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bench-static-'));
  const cfgPath = join(dir, 'bootstrap.json');
  const adminPath = join(dir, 'admin');
  const base = bootstrap({ xds: { kind: 'unix', path: join(dir, 'unused.sock') }, mode: 'sotw', nodeId: 'static' });
  const { clusters, listeners } = resources(n);
  const strip = (r: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(r).filter(([k]) => k !== '@type'));
  const cfg = {
    node: base.node,
    admin: base.admin,
    static_resources: { clusters: clusters.map(strip), listeners: listeners.map(strip) },
  };
  writeFileSync(cfgPath, JSON.stringify(cfg));
  const t0 = performance.now();
  const child = spawn(findEnvoy().path, ['-c', cfgPath, '--admin-address-path', adminPath, '--use-dynamic-base-id', '--concurrency', '1', '-l', 'warning'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`static envoy exited: ${stderr}`);
      let addr = '';
      try {
        addr = readFileSync(adminPath, 'utf8').trim();
      } catch {
        // not yet
      }
      if (addr) {
        try {
          const r = await request(`http://${addr}/stats?filter=listener_manager.total_listeners_active$`);
          const m = /total_listeners_active: (\d+)/.exec(await r.body.text());
          if (Number(m?.[1]) === n) return performance.now() - t0;
        } catch {
          // admin not answering yet
        }
      }
      if (performance.now() - t0 > 600_000) throw new Error('static envoy: timed out');
      await sleep(5);
    }
  } finally {
    const gone = new Promise<void>((res) => (child.exitCode !== null ? res() : child.once('exit', () => res())));
    child.kill('SIGTERM');
    await gone;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The server's phases without Envoy, median of `repeat` runs per cell (each column on its own). */
function phases(): PhaseRow[] {
  const out: PhaseRow[] = [];
  for (const n of phaseSizes) {
    for (const mode of modes) {
      const runs: PhaseRow[] = [];
      for (let i = 0; i < repeat; i++) {
        gc();
        runs.push(runPhases(n, mode, resources));
      }
      const m = (f: (r: PhaseRow) => number): number => median(runs.map(f));
      const row: PhaseRow = {
        n,
        mode,
        packMs: m((r) => r.packMs),
        hashMs: m((r) => r.hashMs),
        buildMs: m((r) => r.buildMs),
        consistencyMs: m((r) => r.consistencyMs),
        publishMs: m((r) => r.publishMs),
        encodeMs: m((r) => r.encodeMs),
        bytes: m((r) => r.bytes),
        change: {
          buildMs: m((r) => r.change.buildMs),
          consistencyMs: m((r) => r.change.consistencyMs),
          publishMs: m((r) => r.change.publishMs),
          encodeMs: m((r) => r.change.encodeMs),
          bytes: m((r) => r.change.bytes),
        },
        sameObjectsBuildMs: m((r) => r.sameObjectsBuildMs),
      };
      out.push(row);
      log(
        `  phases ${mode.padEnd(6)} N=${String(n).padStart(6)}  build ${row.buildMs.toFixed(1)} ms (pack alone ${row.packMs.toFixed(1)}, hash alone ${row.hashMs.toFixed(1)})  consistency ${row.consistencyMs.toFixed(1)}  publish ${row.publishMs.toFixed(1)} (encode ${row.encodeMs.toFixed(1)})  change: build ${row.change.buildMs.toFixed(1)} consistency ${row.change.consistencyMs.toFixed(1)} publish ${row.change.publishMs.toFixed(1)} (encode ${row.change.encodeMs.toFixed(1)})  same objects: build ${row.sameObjectsBuildMs.toFixed(1)}`,
      );
    }
  }
  return out;
}

async function main(): Promise<void> {
  if (phasesOnly) {
    log(`meshd xDS server phases (no Envoy): Node ${process.version}, ${cpus().length} CPUs, N = ${phaseSizes.join(', ')}, median of ${repeat}`);
    const rows = phases();
    log('');
    for (const l of phaseTable(rows)) log(l);
    if (json) process.stdout.write(`${JSON.stringify({ phases: rows })}\n`);
    return;
  }
  const envoy = findEnvoy();
  const version = await envoyVersion(envoy.path);
  log(`meshd xDS benchmark: Envoy ${version}, ${cpus().length} CPUs, Node ${process.version}, N = ${sizes.join(', ')}`);
  const built = withGcp ? await buildGoControlPlane() : ({ ok: false, reason: 'left out (--no-gcp)' } as const);
  log(built.ok ? `go-control-plane: built ${built.module} (bench/go-control-plane)` : `go-control-plane: unavailable: ${built.reason}`);
  const gcpRows: GcpRow[] = [];
  const runGcpLogged = async (n: number, mode: 'sotw' | 'delta'): Promise<void> => {
    if (!built.ok) return;
    const r = await runGcp(built.path, n, mode);
    gcpRows.push(r);
    log(
      `  ${mode.padEnd(6)} N=${String(n).padStart(6)}  go-control-plane: ACK after ${r.ackMs.toFixed(0).padStart(7)} ms (SetSnapshot ${r.setMs.toFixed(0)} ms)  RSS ${r.rssMb.toFixed(1)} MB (Go heap ${r.heapMb.toFixed(1)} MB)  1-cluster update ACKed after ${r.updateMs.toFixed(0)} ms`,
    );
  };
  const rows: Row[] = [];
  const statics = new Map<number, number[]>();
  const emptyStarts: number[] = [];
  for (let round = 1; round <= repeat; round++) {
    log(`round ${round}/${repeat}`);
    for (const n of sizes) {
      for (const mode of modes) {
        // alternate which control plane goes first, round by round
        if (round % 2 === 0) await runGcpLogged(n, mode);
        const r = await runXds(n, mode);
        rows.push(r);
        log(
          `  ${mode.padEnd(6)} N=${String(n).padStart(6)}  meshd: ACK after ${r.ackMs.toFixed(0).padStart(7)} ms (setSnapshot ${r.setMs.toFixed(0)} ms)  heap ${r.heapMb.toFixed(1)} MB  1-cluster update ACKed after ${r.updateMs.toFixed(0)} ms`,
        );
        if (round % 2 === 1) await runGcpLogged(n, mode);
      }
      if (baseline) {
        const ms = await runStatic(n);
        statics.set(n, [...(statics.get(n) ?? []), ms]);
        log(`  static N=${String(n).padStart(6)}  all listeners active ${ms.toFixed(0).padStart(7)} ms after spawn`);
      }
    }
    if (baseline) emptyStarts.push(await runStatic(0));
  }
  const phaseRows = args.includes('--no-phases') ? [] : phases();
  const of = (n: number, m: string): Row[] => rows.filter((r) => r.n === n && r.mode === m);
  const gof = (n: number, m: string): GcpRow[] => gcpRows.filter((r) => r.n === n && r.mode === m);
  const emptyStart = median(emptyStarts);
  const na = built.ok ? 'not measured' : 'unavailable';

  const vsHeader = [
    'N',
    'mode',
    'meshd: set → ACK (ms)',
    'go-control-plane: set → ACK (ms)',
    'meshd ÷ go-control-plane (set → ACK)',
    'meshd ÷ go-control-plane (1 cluster changed → ACK)',
    'meshd: of which setSnapshot (ms)',
    'go-control-plane: of which Consistent + SetSnapshot (ms)',
    'meshd: heap above the empty snapshot (MB)',
    'go-control-plane: Go heap above the empty snapshot (MB)',
    'go-control-plane: RSS (MB) (Go heap)',
    'meshd: 1 cluster changed → ACK (ms)',
    'go-control-plane: 1 cluster changed → ACK (ms)',
  ];
  const vsTable = [
    `| ${vsHeader.join(' | ')} |`,
    `| ${vsHeader.map(() => '---').join(' | ')} |`,
    ...sizes.flatMap((n) =>
      modes.map((m) => {
        const rs = of(n, m);
        const gs = gof(n, m);
        const has = gs.length > 0;
        const ratio = median(rs.map((r) => r.ackMs)) / median(gs.map((r) => r.ackMs));
        const cells = [
          String(n),
          m,
          spread(rs.map((r) => r.ackMs)),
          has ? spread(gs.map((r) => r.ackMs)) : na,
          has ? `${ratio.toFixed(2)}×` : '–',
          has ? `${(median(rs.map((r) => r.updateMs)) / median(gs.map((r) => r.updateMs))).toFixed(2)}×` : '–',
          spread(rs.map((r) => r.setMs)),
          has ? spread(gs.map((r) => r.setMs)) : na,
          median(rs.map((r) => r.heapMb - r.baseHeapMb)).toFixed(1),
          has ? median(gs.map((r) => r.heapMb - r.baseHeapMb)).toFixed(1) : na,
          has ? `${median(gs.map((r) => r.rssMb)).toFixed(1)} (${median(gs.map((r) => r.heapMb)).toFixed(1)})` : na,
          spread(rs.map((r) => r.updateMs)),
          has ? spread(gs.map((r) => r.updateMs)) : na,
        ];
        return `| ${cells.join(' | ')} |`;
      }),
    ),
  ];
  log('');
  for (const l of vsTable) log(l);

  const header = ['N', ...modes.map((m) => `${m}: set → ACK (ms)`), ...modes.map((m) => `${m}: of which setSnapshot (ms)`), ...modes.map((m) => `${m}: heap (MB)`), ...modes.map((m) => `${m}: 1 cluster changed → ACK (ms)`), ...(baseline ? ['static bootstrap: spawn → listeners active (ms)'] : [])];
  const table = [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...sizes.map((n) => {
      const cells = [String(n)];
      for (const m of modes) cells.push(spread(of(n, m).map((r) => r.ackMs)));
      for (const m of modes) cells.push(spread(of(n, m).map((r) => r.setMs)));
      for (const m of modes) {
        const rs = of(n, m);
        cells.push(`${median(rs.map((r) => r.heapMb)).toFixed(1)} (before: ${median(rs.map((r) => r.baseHeapMb)).toFixed(1)})`);
      }
      for (const m of modes) cells.push(spread(of(n, m).map((r) => r.updateMs)));
      if (baseline) cells.push(spread(statics.get(n) ?? []));
      return `| ${cells.join(' | ')} |`;
    }),
  ];
  log('');
  for (const l of table) log(l);
  if (baseline) log(`\n(an empty static bootstrap reaches "ready" ${emptyStart.toFixed(0)} ms after spawn)`);

  const observations = (): string[] => {
    const big = Math.max(...sizes);
    const out: string[] = [];
    for (const m of modes) {
      const gs = gof(big, m);
      if (gs.length === 0) continue;
      const a = median(of(big, m).map((r) => r.ackMs));
      const g = median(gs.map((r) => r.ackMs));
      out.push(
        `At N = ${big} (${m}) in this run, a one-cluster change reached its ACK in ${median(of(big, m).map((r) => r.updateMs)).toFixed(0)} ms from meshd and ${median(gs.map((r) => r.updateMs)).toFixed(0)} ms from go-control-plane.`,
      );
      out.push(
        `At N = ${big} (${m}) in this run, meshd's set → ACK took ${a.toFixed(0)} ms and go-control-plane's ${g.toFixed(0)} ms: ${a <= g ? `meshd ${((1 - a / g) * 100).toFixed(0)}% faster` : `go-control-plane ${((1 - g / a) * 100).toFixed(0)}% faster`}.`,
      );
    }
    const st = statics.get(big);
    const xds = modes.map((m) => median(of(big, m).map((r) => r.ackMs)));
    if (baseline && st && st.length > 0) {
      const ratio = Math.min(...xds) / median(st);
      out.push(
        `At N = ${big} in this run, getting the configuration over xDS took ${ratio.toFixed(2)}× the time Envoy needs to load it from its bootstrap file (start-up included).`,
      );
    }
    if (modes.length === 2) {
      const [s, d] = modes.map((m) => median(of(big, m).map((r) => r.updateMs)));
      if (s !== undefined && d !== undefined) out.push(`A one-cluster change at N = ${big}: SotW ${s.toFixed(0)} ms, delta ${d.toFixed(0)} ms to ACK.`);
    }
    return out.length > 0 ? ['', ...out] : [];
  };
  const pct = (a: number, b: number): string => (b > 0 ? `${Math.round((100 * a) / b)}%` : '–');
  const whereTimeGoes = (): string[] => {
    if (phaseRows.length === 0) return [];
    const shares = phaseRows.map((r) => {
      const server = r.buildMs + r.consistencyMs + r.publishMs;
      return `| ${r.n} | ${r.mode} | ${server.toFixed(1)} | ${pct(r.buildMs, server)} | ${pct(r.consistencyMs, server)} | ${pct(r.encodeMs, server)} | ${pct(r.publishMs - r.encodeMs, server)} | ${(r.change.buildMs + r.change.consistencyMs + r.change.publishMs).toFixed(1)} | ${r.sameObjectsBuildMs.toFixed(1)} |`;
    });
    const envoy = sizes.flatMap((n) =>
      modes.map((m) => {
        const rs = of(n, m);
        return `| ${n} | ${m} | ${spread(rs.map((r) => r.ackMs))} | ${spread(rs.map((r) => r.setMs), 1)} | ${pct(median(rs.map((r) => r.ackMs - r.setMs)), median(rs.map((r) => r.ackMs)))} |`;
      }),
    );
    return [
      '## Where the time goes',
      '',
      'The server\'s steps alone, without Envoy (`npm run bench:xds -- --phases`,',
      'bench/xds-phases.ts): N clusters and N listeners published to one ADS',
      'stream subscribed to both, driven in-process through the same stream',
      'handlers the gRPC server uses, every response ACKed at once. In ms, median',
      `of ${repeat}. "pack alone" and "hash alone" are measured on their own (every`,
      'resource validated and encoded; every resource\'s JSON text and encoding',
      'hashed): the two parts of **build** (`buildSnapshot`, which also reuses',
      'unchanged encodings). **publish** is `SnapshotCache.setSnapshot()` of the',
      'built snapshot: the stream\'s work plus **encode**, the DiscoveryResponse',
      'bytes as the gRPC server writes them. **change** is a snapshot where one',
      'cluster changed, built from fresh objects (as the Envoy runs below do);',
      '**same objects** builds it from the same objects but the changed one (an',
      'agent that keeps its resources).',
      '',
      ...phaseTable(phaseRows),
      '',
      'Shares of the server\'s time for a first push (build + consistency + publish):',
      '',
      '| N | mode | server (ms) | build | consistency | response encoding | per-stream work | change: server (ms) | change, same objects: build (ms) |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...shares,
      '',
      'And with the real Envoy (the runs below): how much of set → ACK is the',
      'server\'s synchronous share (setSnapshot), and how much is the rest, mostly',
      'Envoy building the clusters and listeners, which bounds both servers:',
      '',
      '| N | mode | set → ACK (ms) | of which setSnapshot (ms) | the rest (Envoy, transport) |',
      '| --- | --- | --- | --- | --- |',
      ...envoy,
      '',
      'What the profile (`node --cpu-prof` on `--phases`) named, and what was done',
      '(before and after figures: [xds-profile.md](xds-profile.md)):',
      '',
      '- Response encoding was the largest part of publishing: protobufjs\'s',
      '  `fromObject` + `encode` of the whole DiscoveryResponse, every resource',
      '  wrapped again on every response. Now each resource\'s Any is encoded once',
      '  (`ResourceCodec.pack` builds it so, xds/wire.ts) and a response is one',
      '  size computation and one copy per resource, on every stream and for every',
      '  snapshot the resource survives unchanged.',
      '- The consistency check walked every listener\'s JSON on every snapshot;',
      '  the references (RDS route names, EDS service names) are now found once',
      '  when a resource is encoded, and the check is a lookup per reference.',
      '- A resource object passed again is not hashed, validated or encoded: the',
      '  snapshot remembers what it built from each object (a WeakMap), and a type',
      '  whose entries are all the same keeps its hash without sorting. A fresh',
      '  object is compared with the previous snapshot\'s JSON field by field (no',
      '  text, no hash; what "change: build" measures) and, when equal, keeps',
      '  the previous entry.',
      '- protobufjs resolves a type URL and a type\'s full name by walking its',
      '  namespace tree on every call; the codec keeps both, which took a third',
      '  off packing.',
      '- SotW keeps the last response as the array it sent, not a map rebuilt per',
      '  response; delta already sent only the changed resources and SotW only the',
      '  types whose version moved.',
      '',
      'Packing (validating every field against the schema, then protobufjs\'s',
      'encode) remains most of a first push. go-control-plane has no such step',
      'inside its clock: it is given typed protos (parsed from the same JSON',
      'before its clock starts) and marshals them lazily while writing responses.',
      '',
    ];
  };
  const md = [
    '# xDS benchmark',
    '',
    'How long the xDS server takes to get N clusters and N matching listeners',
    'into a real Envoy, and what holding them costs the server. Produced by',
    '`npm run bench:xds` (bench/xds.ts); numbers from the last run, on the',
    `development machine (shared by several people, 2 CPUs: noisy). Each cell is the median of ${repeat} run(s) with the range in parentheses.`,
    ...(args.includes('--dev-run')
      ? ['', '**Development run** on a loaded machine (other work on the same 2 CPUs): the ratios are indicative, the absolute times are not; re-run on a quiet machine for figures to quote.']
      : []),
    '',
    `Envoy ${version} (\`--concurrency 1\`), Node ${process.version}, ${cpus().length} CPUs, ${new Date().toISOString().slice(0, 10)}.`,
    '',
    '- **set → ACK**: from `XdsServer.setSnapshot()` (encoding and hashing every',
    '  resource included) until Envoy ACKed CDS and LDS at that snapshot, over ADS on',
    '  a unix socket; Envoy was already connected (to an empty snapshot). Each',
    '  listener binds 127.0.0.1 port 0 and proxies TCP to its cluster (STATIC, one',
    '  endpoint); after the ACK the run checks that Envoy has N active listeners.',
    '- **of which setSnapshot**: the server\'s synchronous share: encoding, hashing,',
    '  the consistency check and queueing the responses.',
    '- **1 cluster changed → ACK**: afterwards, a snapshot where one cluster\'s',
    '  connect_timeout changed, until Envoy ACKed CDS (SotW sends all N clusters',
    '  again and Envoy compares them; delta sends the one). Unchanged resources',
    '  reuse their encoding; the server compares each with the previous JSON.',
    '- **heap**: the server process\'s V8 heap after a forced GC with the snapshot',
    '  held, measured after the change (so no forced GC precedes a timed step, on',
    '  either side); before: the same just before setSnapshot, an Envoy connected',
    '  to an empty snapshot. It is the whole process: the loaded Envoy protos',
    '  (~20 MB) are in both numbers.',
    ...(baseline
      ? [
          '- **static bootstrap**: the alternative without a control plane, the same',
          '  clusters and listeners in Envoy\'s bootstrap file; from spawn until all',
          `  listeners are active, so it includes Envoy's own start (an empty bootstrap: ${emptyStart.toFixed(0)} ms).`,
        ]
      : []),
    '',
    '## meshd and go-control-plane',
    '',
    'The same rounds also ran Envoy\'s own Go control plane,',
    ...(built.ok ? [`\`${built.module}\` (its v3 snapshot cache and ADS server),`] : ['`github.com/envoyproxy/go-control-plane` (its v3 snapshot cache and ADS server),']),
    'in a small program of ours (bench/go-control-plane/, built by the benchmark',
    'with `go build`). It serves the same clusters and listeners (written by the',
    'benchmark as protojson, parsed into the v3 types before the clock starts) to',
    'the same Envoy, in the same mode, over a unix socket; which of the two runs',
    'first alternates from round to round.',
    '',
    '- **go-control-plane: set → ACK**: measured inside the Go process, from',
    '  `Snapshot.Consistent()` + `SetSnapshot()` until Envoy\'s requests ACK CDS and',
    '  LDS at the snapshot\'s version (SotW: `version_info`; delta: the nonce of the',
    '  response, no `error_detail`); again checked afterwards: N active listeners.',
    '- **of which Consistent + SetSnapshot** is not meshd\'s setSnapshot share:',
    '  go-control-plane only checks, stores the snapshot and wakes the watches',
    '  there, and marshals the resources later, while building each response',
    '  (inside set → ACK); meshd encodes and hashes every resource up front.',
    '- **go-control-plane: 1 cluster changed**: the same change as for meshd, the',
    '  clusters get a new version, the listeners keep theirs (so SotW resends',
    '  only CDS, as meshd does).',
    '- **meshd ÷ go-control-plane**: ratio of the medians; below 1 means meshd',
    '  was faster.',
    '- **heap above the empty snapshot**, like for like: what holding the N',
    '  clusters and listeners (and having sent them and the change) adds to the heap of the',
    '  server\'s process, each measured after a forced GC, against the same',
    '  process serving the empty snapshot to the connected Envoy, before the',
    '  resources were made (the JSON the server keeps counts, as the typed protos',
    '  held in the Go heap do). meshd: V8\'s',
    '  heapUsed of the benchmark process (the server lives in it; the loaded',
    '  protos are in both figures, so not in the difference); go-control-plane:',
    '  the Go runtime\'s HeapAlloc after `debug.FreeOSMemory()`. The RSS of the Go',
    '  process (whole heap in parentheses) is given as well.',
    ...(built.ok ? [] : ['', `**go-control-plane was unavailable in this run**: ${built.reason}`]),
    '',
    ...vsTable,
    '',
    ...whereTimeGoes(),
    '## meshd in detail, and Envoy\'s static bootstrap',
    '',
    ...table,
    '',
    'Reading it: the server side (encode, hash, send) is a small part of the time;',
    'most of it is Envoy building clusters and listeners, which it also has to do',
    'from a file. A first full push carries the same resources in both modes',
    '(delta adds a name and a version to each); delta pays off on later small',
    'changes, where only changed resources travel.',
    ...observations(),
    '',
  ].join('\n');
  writeFileSync(repoPath('docs', 'benchmarks', 'xds.md'), md);
  log(`\nwrote docs/benchmarks/xds.md`);

  if (json) {
    const ratios = (m: 'sotw' | 'delta', f: (r: { ackMs: number; updateMs: number }) => number): Record<string, number | null> =>
      Object.fromEntries(
        sizes.map((n) => {
          const gs = gof(n, m);
          return [String(n), gs.length > 0 ? Math.round((median(of(n, m).map(f)) / median(gs.map(f))) * 100) / 100 : null];
        }),
      );
    for (const m of modes) {
      const out = {
        ack_ms: Object.fromEntries(sizes.map((n) => [String(n), Math.round(median(of(n, m).map((r) => r.ackMs)))])),
        heap_mb: Object.fromEntries(sizes.map((n) => [String(n), Math.round(median(of(n, m).map((r) => r.heapMb)) * 10) / 10])),
        mode: m,
        gcp_ack_ms: Object.fromEntries(sizes.map((n) => [String(n), gof(n, m).length > 0 ? Math.round(median(gof(n, m).map((r) => r.ackMs))) : null])),
        gcp_rss_mb: Object.fromEntries(sizes.map((n) => [String(n), gof(n, m).length > 0 ? Math.round(median(gof(n, m).map((r) => r.rssMb)) * 10) / 10 : null])),
        heap_above_empty_mb: Object.fromEntries(sizes.map((n) => [String(n), Math.round(median(of(n, m).map((r) => r.heapMb - r.baseHeapMb)) * 10) / 10])),
        gcp_heap_above_empty_mb: Object.fromEntries(
          sizes.map((n) => [String(n), gof(n, m).length > 0 ? Math.round(median(gof(n, m).map((r) => r.heapMb - r.baseHeapMb)) * 10) / 10 : null]),
        ),
      };
      process.stdout.write(`${JSON.stringify(out)}\n`);
    }
    // the last line: meshd ÷ go-control-plane per mode and N (below 1: meshd faster)
    const last = Object.fromEntries(modes.map((m) => [m, { ack_ratio: ratios(m, (r) => r.ackMs), change_ratio: ratios(m, (r) => r.updateMs) }]));
    process.stdout.write(`${JSON.stringify(last)}\n`);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench:xds: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
