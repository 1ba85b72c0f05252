/**
 * Supervision of the node's one Envoy process.
 *
 *   const sup = new EnvoySupervisor({ bootstrap, workDir });
 *   await sup.start();          // resolves once GET /ready answers LIVE
 *   sup.status();               // { state, pid, version, restarts, … }
 *   await sup.stop();           // drain listeners, SIGTERM, SIGKILL after a grace period
 *
 * If Envoy dies it is started again after a delay that doubles from
 * `backoff.initialMs` up to `backoff.maxMs`, and resets once a process stayed
 * ready for `backoff.resetAfterMs`. A restarted Envoy loses no configuration:
 * it reconnects to meshd's xDS server, which answers with the current
 * snapshot. stop() is idempotent; start() after stop() starts again.
 *
 * Events: 'ready' (pid), 'exit' ({code, signal}), 'restarting' (delayMs),
 * 'log' (line of Envoy's stderr).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { envoyVersion, findEnvoy } from './binary.js';

export type EnvoyState = 'stopped' | 'starting' | 'ready' | 'backoff' | 'stopping';

export interface SupervisorOptions {
  /** Bootstrap in Envoy's JSON shape; its admin address is where readiness is checked. */
  bootstrap: Record<string, unknown>;
  /** Directory for the bootstrap file and the admin address file; created if missing. */
  workDir: string;
  /** Explicit binary path (config); otherwise findEnvoy()'s order applies. */
  binaryPath?: string;
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'critical' | 'off';
  concurrency?: number;
  /** Seconds listeners drain on stop (and on LDS removal). */
  drainTimeS?: number;
  readyTimeoutMs?: number;
  backoff?: { initialMs?: number; maxMs?: number; resetAfterMs?: number };
}

export interface EnvoyStatus {
  state: EnvoyState;
  pid: number | null;
  version: string | null;
  restarts: number;
  readySince: string | null;
  lastExit: { code: number | null; signal: string | null; at: string } | null;
}

export class EnvoySupervisorError extends Error {
  constructor(
    readonly code: 'ENVOY_NOT_READY' | 'ENVOY_EXITED' | 'ENVOY_BAD_BOOTSTRAP',
    message: string,
  ) {
    super(message);
  }
}

type AdminTarget = { socketPath: string } | { portFile: string };

function adminTarget(bootstrap: Record<string, unknown>, workDir: string): AdminTarget {
  const admin = bootstrap.admin;
  if (typeof admin === 'object' && admin !== null && 'address' in admin) {
    const addr = admin.address;
    if (typeof addr === 'object' && addr !== null) {
      if ('pipe' in addr && typeof addr.pipe === 'object' && addr.pipe !== null && 'path' in addr.pipe && typeof addr.pipe.path === 'string') {
        return { socketPath: addr.pipe.path };
      }
      if ('socket_address' in addr) return { portFile: join(workDir, 'admin-address') };
    }
  }
  throw new EnvoySupervisorError('ENVOY_BAD_BOOTSTRAP', 'bootstrap.admin.address: a pipe or a loopback socket_address is required');
}

export class EnvoySupervisor extends EventEmitter {
  private readonly opts: Required<Omit<SupervisorOptions, 'binaryPath' | 'backoff'>> & Pick<SupervisorOptions, 'binaryPath'>;
  private readonly backoff: { initialMs: number; maxMs: number; resetAfterMs: number };
  private readonly admin: AdminTarget;
  private child: ChildProcess | null = null;
  private state: EnvoyState = 'stopped';
  private version: string | null = null;
  private restarts = 0;
  private failures = 0;
  private readySince: number | null = null;
  private lastExit: EnvoyStatus['lastExit'] = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly stderrTail: string[] = [];

  constructor(opts: SupervisorOptions) {
    super();
    this.opts = {
      bootstrap: opts.bootstrap,
      workDir: opts.workDir,
      binaryPath: opts.binaryPath,
      logLevel: opts.logLevel ?? 'warn',
      concurrency: opts.concurrency ?? 2,
      drainTimeS: opts.drainTimeS ?? 5,
      readyTimeoutMs: opts.readyTimeoutMs ?? 30_000,
    };
    this.backoff = { initialMs: 200, maxMs: 30_000, resetAfterMs: 60_000, ...opts.backoff };
    this.admin = adminTarget(opts.bootstrap, opts.workDir);
  }

  status(): EnvoyStatus {
    return {
      state: this.state,
      pid: this.child?.pid ?? null,
      version: this.version,
      restarts: this.restarts,
      readySince: this.readySince === null ? null : new Date(this.readySince).toISOString(),
      lastExit: this.lastExit,
    };
  }

  /** Starts Envoy and resolves when it is ready; rejects (and stops) if it never gets there. */
  async start(): Promise<void> {
    if (this.state !== 'stopped') throw new Error(`EnvoySupervisor.start: already ${this.state}`);
    const bin = findEnvoy(this.opts.binaryPath).path;
    this.version ??= await envoyVersion(bin);
    mkdirSync(this.opts.workDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(this.opts.workDir, 'bootstrap.json'), JSON.stringify(this.opts.bootstrap, null, 2), { mode: 0o600 });
    this.failures = 0;
    this.spawnOnce(bin);
    try {
      await this.waitReady(this.opts.readyTimeoutMs);
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** GET/POST on the admin API. */
  async adminRequest(path: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number; body: string }> {
    const client = this.adminClient();
    try {
      const res = await client.request({ path, method, headersTimeout: 5_000, bodyTimeout: 10_000 });
      return { status: res.statusCode, body: await res.body.text() };
    } finally {
      await client.close();
    }
  }

  async stop(): Promise<void> {
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.child = null;
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (this.opts.drainTimeS > 0) {
      // Stop accepting new connections and let in-flight ones finish first.
      await this.adminRequest('/drain_listeners?graceful', 'POST').catch(() => undefined);
      await Promise.race([exited, sleep(this.opts.drainTimeS * 1000)]);
    }
    child.kill('SIGTERM');
    const killed = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
    if (!killed) {
      child.kill('SIGKILL');
      await exited;
    }
    this.child = null;
    this.state = 'stopped';
    this.readySince = null;
  }

  private adminClient(): Client {
    if ('socketPath' in this.admin) return new Client('http://localhost', { socketPath: this.admin.socketPath });
    const addr = readFileSync(this.admin.portFile, 'utf8').trim();
    return new Client(`http://${addr}`);
  }

  private spawnOnce(bin: string): void {
    if ('socketPath' in this.admin) rmSync(this.admin.socketPath, { force: true });
    else rmSync(this.admin.portFile, { force: true });
    const args = [
      '-c',
      join(this.opts.workDir, 'bootstrap.json'),
      '--use-dynamic-base-id',
      '--log-level',
      this.opts.logLevel,
      '--concurrency',
      String(this.opts.concurrency),
      '--drain-time-s',
      String(this.opts.drainTimeS),
      '--parent-shutdown-time-s',
      String(this.opts.drainTimeS + 5),
    ];
    if ('portFile' in this.admin) args.push('--admin-address-path', this.admin.portFile);
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    this.state = 'starting';
    let partial = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        this.stderrTail.push(line);
        if (this.stderrTail.length > 50) this.stderrTail.shift();
        this.emit('log', line);
      }
    });
    child.once('exit', (code, signal) => this.onExit(child, bin, code, signal));
  }

  private onExit(child: ChildProcess, bin: string, code: number | null, signal: NodeJS.Signals | null): void {
    this.lastExit = { code, signal, at: new Date().toISOString() };
    this.emit('exit', { code, signal });
    if (this.child !== child || this.state === 'stopping' || this.state === 'stopped') return;
    const stableMs = this.readySince === null ? 0 : Date.now() - this.readySince;
    if (stableMs >= this.backoff.resetAfterMs) this.failures = 0;
    const delay = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.failures);
    this.failures += 1;
    this.state = 'backoff';
    this.readySince = null;
    this.child = null;
    this.emit('restarting', delay);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.restarts += 1;
      this.spawnOnce(bin);
      this.waitReady(this.opts.readyTimeoutMs).catch((e: unknown) => this.emit('log', `envoy not ready after restart: ${String(e)}`));
    }, delay);
  }

  /** Polls /ready until it answers 200 LIVE, the process exits, or time runs out. */
  private async waitReady(timeoutMs: number): Promise<void> {
    const child = this.child;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!child || this.child !== child || child.exitCode !== null || child.signalCode !== null) {
        throw new EnvoySupervisorError('ENVOY_EXITED', `envoy exited before it was ready: ${this.stderrTail.slice(-5).join(' | ')}`);
      }
      try {
        const r = await this.adminRequest('/ready');
        if (r.status === 200 && r.body.trim() === 'LIVE') {
          this.state = 'ready';
          this.readySince = Date.now();
          this.emit('ready', child.pid);
          return;
        }
      } catch {
        // admin not listening yet
      }
      await sleep(50);
    }
    throw new EnvoySupervisorError('ENVOY_NOT_READY', `envoy not ready after ${timeoutMs} ms: ${this.stderrTail.slice(-5).join(' | ')}`);
  }
}
