/**
 * The xDS benchmark's other control plane: Envoy's own go-control-plane (its
 * v3 snapshot cache and server), in a small Go program of ours under
 * bench/go-control-plane/ that the benchmark builds with `go build` and
 * drives over stdin/stdout (protocol: bench/go-control-plane/main.go).
 *
 *   const built = await buildGoControlPlane();
 *   if (!built.ok) console.log(built.reason);
 *   const gcp = await GoControlPlane.start(built.path, `unix:${sock}`);
 *   await gcp.set('node-1', fileWith({ versions, resources }));
 *   const ms = await gcp.waitForAck('clusters', 'v1');
 *   await gcp.stop();
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { CommandError, run } from '../src/util/exec.js';
import { repoPath, repoRoot } from '../src/util/paths.js';

export type GcpBuild = { ok: true; path: string; module: string } | { ok: false; reason: string };

/** Builds the Go program (modules come from the Go module proxy or the module cache). */
export async function buildGoControlPlane(): Promise<GcpBuild> {
  const dir = repoPath('bench', 'go-control-plane');
  const out = repoPath('dist', 'bench', 'go-control-plane', 'xds-server');
  let module = 'github.com/envoyproxy/go-control-plane (version unknown)';
  try {
    const m = /^\s*github\.com\/envoyproxy\/go-control-plane (v\S+)\s*$/m.exec(readFileSync(`${dir}/go.mod`, 'utf8'));
    if (m?.[1]) module = `github.com/envoyproxy/go-control-plane ${m[1]}`;
  } catch (e) {
    return { ok: false, reason: `bench/go-control-plane/go.mod: ${String(e)}` };
  }
  try {
    await run('go', ['-C', dir, 'build', '-o', out, '.'], { timeoutMs: 600_000 });
    return { ok: true, path: out, module };
  } catch (e) {
    // the reason goes into docs/benchmarks/xds.md: no paths of this machine
    const why = (e instanceof CommandError ? e.message : String(e)).split(`${repoRoot}/`).join('');
    // `go: downloading …` progress lines would otherwise push the error itself out of the last lines
    const lines = why.trim().split('\n').filter((l) => !l.startsWith('go: downloading '));
    return { ok: false, reason: `go build in bench/go-control-plane failed: ${lines.slice(-5).join(' | ')}` };
  }
}

export type GcpKind = 'clusters' | 'listeners';

/** What the benchmark writes for the Go program: every resource in protojson with its "@type". */
export interface GcpSnapshotFile {
  versions: Record<GcpKind, string>;
  resources: Record<GcpKind, Array<Record<string, unknown>>>;
}

interface Waiter {
  kind: GcpKind;
  version: string;
  resolve: (ms: number) => void;
  reject: (e: Error) => void;
}

export class GoControlPlane {
  private readonly acks = new Map<string, number>();
  private readonly nacks = new Map<string, string>();
  private waiters: Waiter[] = [];
  private pending: Array<{ word: string; resolve: (fields: string[]) => void; reject: (e: Error) => void }> = [];
  private stderr = '';
  private exited = false;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    createInterface({ input: child.stdout }).on('line', (line) => this.onLine(line));
    child.once('exit', (code, signal) => {
      this.exited = true;
      const err = new Error(`go-control-plane server exited (${code ?? signal}): ${this.stderr}`);
      for (const w of this.waiters) w.reject(err);
      for (const p of this.pending) p.reject(err);
      this.waiters = [];
      this.pending = [];
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Spawns the server listening on `unix:<path>` or `<host>:<port>` and waits for "ready". */
  static async start(bin: string, listen: string): Promise<GoControlPlane> {
    const gcp = new GoControlPlane(spawn(bin, ['-listen', listen], { stdio: ['pipe', 'pipe', 'pipe'] }));
    await gcp.expect('ready', 10_000);
    return gcp;
  }

  private onLine(line: string): void {
    const f = line.split(' ');
    const [word, kind, version, rest] = [f[0] ?? '', f[1] ?? '', f[2] ?? '', f.slice(3).join(' ')];
    if ((word === 'ack' || word === 'nack') && (kind === 'clusters' || kind === 'listeners')) {
      const key = `${kind} ${version}`;
      if (word === 'ack') {
        const ms = Number(rest);
        if (!Number.isFinite(ms)) return this.fail(`go-control-plane: bad line "${line}"`);
        this.acks.set(key, ms);
      } else this.nacks.set(key, rest);
      this.settle();
      return;
    }
    if (word === 'error') return this.fail(`go-control-plane: ${f.slice(1).join(' ')}`);
    const i = this.pending.findIndex((p) => p.word === word);
    const p = this.pending[i];
    if (p) {
      this.pending.splice(i, 1);
      p.resolve(f.slice(1));
    }
  }

  private fail(message: string): void {
    const err = new Error(message);
    for (const p of this.pending.splice(0)) p.reject(err);
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private settle(): void {
    this.waiters = this.waiters.filter((w) => {
      const key = `${w.kind} ${w.version}`;
      const nack = this.nacks.get(key);
      if (nack !== undefined) {
        w.reject(new Error(`Envoy NACKed go-control-plane's ${w.kind} at ${w.version}: ${nack}`));
        return false;
      }
      const ms = this.acks.get(key);
      if (ms === undefined) return true;
      w.resolve(ms);
      return false;
    });
  }

  private expect(word: string, timeoutMs: number): Promise<string[]> {
    if (this.exited) return Promise.reject(new Error(`go-control-plane server has exited: ${this.stderr}`));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`go-control-plane: no "${word}" within ${timeoutMs} ms: ${this.stderr}`)), timeoutMs);
      this.pending.push({
        word,
        resolve: (f) => {
          clearTimeout(t);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
    });
  }

  private send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /** Loads a snapshot file (untimed) and sets it for `nodeId`; resolves with the server's own timings. */
  async set(nodeId: string, file: string): Promise<{ loadMs: number; setMs: number }> {
    const loaded = this.expect('loaded', 600_000);
    const set = this.expect('set', 600_000);
    this.send(`set ${nodeId} ${file}`);
    const loadMs = Number((await loaded)[0]);
    const setMs = Number((await set)[0]);
    return { loadMs, setMs };
  }

  /** ms from the last set (measured in the Go process) until Envoy ACKed `kind` at `version`. */
  waitForAck(kind: GcpKind, version: string, timeoutMs = 600_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`go-control-plane: no ${kind} ACK at ${version} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        kind,
        version,
        resolve: (ms) => {
          clearTimeout(t);
          resolve(ms);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.settle();
    });
  }

  /** RSS and Go heap of the server process, after a forced GC that returns free memory to the OS. */
  async mem(): Promise<{ rssMb: number; heapMb: number }> {
    const f = this.expect('mem', 60_000);
    this.send('mem');
    const [rss, heap] = (await f).map(Number);
    if (!Number.isFinite(rss) || !Number.isFinite(heap) || !rss) throw new Error('go-control-plane: could not read its memory');
    return { rssMb: (rss ?? 0) / 1024 / 1024, heapMb: (heap ?? 0) / 1024 / 1024 };
  }

  /** Closes stdin (the server stops), SIGKILL after 3 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((res) => this.child.once('exit', () => res()));
    this.child.stdin.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  }
}
