/**
 * The node's Envoys, decoupled from the agent's life: `replicas` instances
 * active-active on the same proxy ports, their records in
 * `<workDir>/instances.json`, so that the next agent adopts them instead of
 * starting new ones.
 *
 *   const sup = new ProxySupervisor({ workDir, replicas: 1, bootstrap: (id) => …, configured: (nodeId) => … });
 *   await sup.start();     // adopts the recorded Envoys that run the same binary and bootstrap, starts the rest
 *   await sup.restart();   // planned replacement, one instance at a time: new one configured, old one drained
 *   await sup.detach();    // the agent goes, the Envoys stay (SIGTERM, upgrade)
 *   await sup.stop();      // drains and stops every instance
 *
 * Steering (steering.ts): every instance binds each proxy port with
 * SO_REUSEPORT, so the instances form one reuseport group per port; `steer`
 * is called with the live instances whenever that set changes (an instance
 * got live, one starts draining, one exited), before the drain starts, so
 * that new connections go only to live instances. A closed listener leaves
 * the group at once, and with `tcp_migrate_req` the connections queued on a
 * closing listener move to a remaining one.
 *
 * Make before break: an instance is "live" (counted, asked for ACKs) only
 * once it is ready and `configured()` resolved for it (it ACKed the current
 * snapshot and has no listener warming); a replaced one leaves the live set
 * before it drains. A live instance that exits is replaced after a backoff
 * that doubles from `backoff.initialMs` to `backoff.maxMs`.
 *
 * Events: 'exit' ({id, pid, at}), 'live' (record), 'retired' (record),
 * 'gone' (record: the instance's process is gone, whatever the way: crash,
 * failed start, retirement; once per instance), 'log' (line).
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { envoyVersion, findEnvoy } from '../../envoy/binary.js';
import { stopProcesses } from '../../envoy/orphans.js';
import { MeshdError } from '../util/errors.js';
import { readStateFile, warnCorrupt, writeStateFile } from '../util/state-file.js';
import {
  adminRequest,
  bootstrapHash,
  envoysOfWorkDir,
  type InstanceRecord,
  instanceRecordSchema,
  logTail,
  processAlive,
  signalAndWait,
  spawnEnvoy,
  statSum,
} from './supervisor-process.js';

export type SupervisorErrorCode = 'MESHD_PROXY_ENVOY_NOT_READY' | 'MESHD_PROXY_ENVOY_EXITED' | 'MESHD_PROXY_SUPERVISOR_STOPPED';

export class SupervisorError extends MeshdError {
  constructor(
    override readonly code: SupervisorErrorCode,
    message: string,
    cause?: unknown,
  ) {
    super(code, message, { kind: 'unavailable', cause });
  }
}

export interface InstanceSpec {
  /** Bootstrap of this instance (its xDS node id and admin socket are its own). */
  bootstrap: Record<string, unknown>;
  nodeId: string;
  adminSocket: string;
}

export interface ProxySupervisorOptions {
  workDir: string;
  /** How many Envoys run active-active (proxy.replicas). */
  replicas: number;
  /** The bootstrap, node id and admin socket of instance `id`. */
  instance: (id: string) => InstanceSpec;
  /** Resolves once the instance with this xDS node id applied the current configuration. */
  configured: (nodeId: string, signal: AbortSignal) => Promise<void>;
  binaryPath?: string;
  concurrency?: number;
  /** Seconds of Envoy's graceful drain (discouraging requests) before a replaced instance closes its listeners. */
  drainTimeS?: number;
  /** After the drain: how long connections that are still open (TCP, Kafka, long requests) may take to finish. */
  drainTimeoutMs?: number;
  readyTimeoutMs?: number;
  backoff?: { initialMs?: number; maxMs?: number; resetAfterMs?: number };
  log?: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
  /** Points new connections at exactly these instances (steering.ts); called on every change of the live set, one call at a time. */
  steer?: (live: InstanceRecord[]) => void | Promise<void>;
  /** Called at once (before `steer`) when instance `id` is seen exiting: no new connection may go to it. */
  unsteer?: (id: string) => void;
}

export type InstanceState = 'starting' | 'live' | 'draining';

export interface InstanceStatus {
  id: string;
  pid: number;
  nodeId: string;
  state: InstanceState;
  adopted: boolean;
  startedAt: string;
  liveSince: string | null;
}

interface Instance {
  rec: InstanceRecord;
  state: InstanceState;
  adopted: boolean;
  liveSince: number | null;
  /** Aborted when the process is gone (waits for its ACK end). */
  gone: AbortController;
  /** Set once its drain started: retiring twice waits for the one drain. */
  retiring?: Promise<void>;
}

const stateSchema = z.strictObject({ version: z.literal(1), nextId: z.number().int().positive(), instances: z.array(instanceRecordSchema) });

export interface SupervisorStatus {
  state: 'stopped' | 'starting' | 'ready' | 'backoff' | 'stopping';
  /** The oldest live instance (what the single-Envoy status fields show). */
  pid: number | null;
  version: string | null;
  restarts: number;
  readySince: string | null;
  lastExit: { code: number | null; signal: string | null; at: string } | null;
  instances: InstanceStatus[];
  /** Planned replacements done (meshd proxy restart, binary or bootstrap change). */
  replacements: number;
  /** Milliseconds without any live instance, summed since start. */
  unavailableMs: number;
}

export class ProxySupervisor extends EventEmitter {
  private readonly instances = new Map<string, Instance>();
  private nextId = 1;
  private running: 'stopped' | 'starting' | 'running' | 'stopping' = 'stopped';
  private monitor: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private restarts = 0;
  private replacements = 0;
  private lastExit: SupervisorStatus['lastExit'] = null;
  private version: string | null = null;
  private binary = '';
  private unavailableSince: number | null = null;
  private unavailableMs = 0;
  private readonly backoff: { initialMs: number; maxMs: number; resetAfterMs: number };
  private readonly stateFile: string;
  private ensuring: Promise<void> | null = null;
  private steering: Promise<void> = Promise.resolve();
  /** Set by holdRestarts(), or when the state directory went away: exited instances are not started again. */
  private restartsHeld: 'owner' | 'workdir-gone' | null = null;

  constructor(private readonly o: ProxySupervisorOptions) {
    super();
    this.backoff = { initialMs: 200, maxMs: 10_000, resetAfterMs: 60_000, ...o.backoff };
    this.stateFile = join(o.workDir, 'instances.json');
  }

  private log(level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void {
    this.o.log?.(level, msg, fields);
  }

  private args(): string[] {
    const drain = this.o.drainTimeS ?? 2;
    return [
      '--use-dynamic-base-id',
      '--log-level',
      'warn',
      '--concurrency',
      String(this.o.concurrency ?? 2),
      '--drain-time-s',
      String(drain),
      '--parent-shutdown-time-s',
      String(drain + 5),
    ];
  }

  private persist(): void {
    // The state directory removed under a stopping supervisor (uninstall, tests) is not created again.
    if (!existsSync(this.o.workDir)) return;
    writeStateFile(this.stateFile, { version: 1, nextId: this.nextId, instances: [...this.instances.values()].map((i) => i.rec) });
  }

  /** The records a previous agent left (empty when none, or when the file was corrupt: it is moved aside). */
  private readRecords(): InstanceRecord[] {
    const r = readStateFile(this.stateFile, stateSchema);
    if (r.state === 'corrupt') {
      warnCorrupt(r.problem);
      return [];
    }
    if (r.state === 'missing') return [];
    this.nextId = Math.max(this.nextId, r.data.nextId);
    return r.data.instances;
  }

  /**
   * Adopts what can be adopted, starts the missing instances, replaces the
   * adopted ones that run another binary or bootstrap, and resolves once
   * `replicas` instances are live. Rejects (having stopped what it started) if
   * no instance gets live.
   */
  async start(): Promise<void> {
    if (this.running !== 'stopped') throw new Error(`ProxySupervisor.start: already ${this.running}`);
    this.running = 'starting';
    mkdirSync(this.o.workDir, { recursive: true, mode: 0o700 });
    this.binary = findEnvoy(this.o.binaryPath).path;
    this.version = await envoyVersion(this.binary).catch(() => null);
    const outdated: InstanceRecord[] = [];
    for (const rec of this.readRecords()) {
      if (!processAlive(rec)) continue;
      const spec = this.o.instance(rec.id);
      const same = rec.binary === this.binary && rec.bootstrapHash === bootstrapHash(spec.bootstrap) && rec.adminSocket === spec.adminSocket;
      const ready = same && (await this.isReady(rec));
      if (!ready) {
        outdated.push(rec);
        continue;
      }
      const inst: Instance = { rec, state: 'starting', adopted: true, liveSince: null, gone: new AbortController() };
      this.instances.set(rec.id, inst);
      this.log('info', 'adopting the running Envoy', { id: rec.id, pid: rec.pid });
    }
    // Envoys of this state directory that no record names (an agent killed between spawn and record): stopped.
    const known = new Set([...this.instances.values(), ...outdated.map((rec) => ({ rec }))].map((i) => i.rec.pid));
    const strays = envoysOfWorkDir(this.o.workDir).filter((pid) => !known.has(pid));
    if (strays.length > 0) {
      this.log('warn', 'stopping Envoys no record names', { pids: strays });
      await stopProcesses(strays);
    }
    // Outdated ones keep serving (they are in the reuseport group) until their replacements are live.
    for (const rec of outdated) this.instances.set(rec.id, { rec, state: 'draining', adopted: true, liveSince: null, gone: new AbortController() });
    this.persist();
    // Often: an exited Envoy's leader is a zombie well before the kernel closes its listeners (see check()).
    this.monitor = setInterval(() => this.check(), 10);
    this.monitor.unref();
    try {
      // Adopted instances: they already run the configuration; confirm it (the xDS stream reconnects by itself).
      await Promise.all(
        [...this.instances.values()].filter((i) => i.state === 'starting').map((i) => this.makeLive(i).catch((e: unknown) => this.drop(i, e))),
      );
      const extra = [...this.instances.values()].filter((i) => i.state === 'live').slice(this.o.replicas);
      while (this.live().length < this.o.replicas) await this.startInstance();
      this.running = 'running';
      for (const i of [...outdated.map((r) => this.instances.get(r.id)), ...extra]) if (i) void this.retire(i);
    } catch (e) {
      this.running = 'running';
      await this.stop();
      throw e;
    }
  }

  private async isReady(rec: InstanceRecord): Promise<boolean> {
    try {
      const r = await adminRequest(rec.adminSocket, '/ready');
      return r.status === 200 && r.body.trim() === 'LIVE';
    } catch {
      return false;
    }
  }

  /** Live instances, oldest first. */
  live(): InstanceRecord[] {
    return [...this.instances.values()].filter((i) => i.state === 'live').sort((a, b) => (a.liveSince ?? 0) - (b.liveSince ?? 0)).map((i) => i.rec);
  }

  /** Aborted when instance `id` exits (or at once if it is unknown). */
  goneSignal(id: string): AbortSignal {
    return this.instances.get(id)?.gone.signal ?? AbortSignal.abort();
  }

  private async startInstance(): Promise<Instance> {
    const id = `e${this.nextId}`;
    this.nextId += 1;
    const spec = this.o.instance(id);
    const rec = spawnEnvoy({ id, nodeId: spec.nodeId, binary: this.binary, bootstrap: spec.bootstrap, adminSocket: spec.adminSocket, workDir: this.o.workDir, args: this.args() });
    const inst: Instance = { rec, state: 'starting', adopted: false, liveSince: null, gone: new AbortController() };
    this.instances.set(id, inst);
    this.persist();
    try {
      await this.makeLive(inst);
    } catch (e) {
      this.drop(inst, e);
      await signalAndWait(rec, 'SIGKILL', 2_000);
      throw e;
    }
    return inst;
  }

  /** Waits until the instance is ready and configured, then counts it live. */
  private async makeLive(inst: Instance): Promise<void> {
    const deadline = Date.now() + (this.o.readyTimeoutMs ?? 30_000);
    while (!(await this.isReady(inst.rec))) {
      if (!processAlive(inst.rec)) throw new SupervisorError('MESHD_PROXY_ENVOY_EXITED', `envoy ${inst.rec.id} exited before it was ready: ${logTail(this.o.workDir, inst.rec.id)}`);
      if (Date.now() > deadline) throw new SupervisorError('MESHD_PROXY_ENVOY_NOT_READY', `envoy ${inst.rec.id} not ready: ${logTail(this.o.workDir, inst.rec.id)}`);
      await sleep(50);
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), Math.max(1_000, deadline - Date.now()));
    const onGone = () => ac.abort();
    inst.gone.signal.addEventListener('abort', onGone);
    try {
      await this.o.configured(inst.rec.nodeId, ac.signal);
      // ACKed is accepted; listeners still warming are not bound yet.
      while ((await statSum(inst.rec.adminSocket, /^listener_manager\.total_listeners_warming$/)) > 0) {
        if (ac.signal.aborted) throw new SupervisorError('MESHD_PROXY_ENVOY_NOT_READY', `envoy ${inst.rec.id}: listeners still warming`);
        await sleep(20);
      }
    } catch (e) {
      if (inst.gone.signal.aborted) throw new SupervisorError('MESHD_PROXY_ENVOY_EXITED', `envoy ${inst.rec.id} exited before it was configured: ${logTail(this.o.workDir, inst.rec.id)}`, e);
      if (ac.signal.aborted) throw new SupervisorError('MESHD_PROXY_ENVOY_NOT_READY', `envoy ${inst.rec.id} did not apply the configuration in time`, e);
      throw e;
    } finally {
      clearTimeout(timer);
      inst.gone.signal.removeEventListener('abort', onGone);
    }
    inst.state = 'live';
    inst.liveSince = Date.now();
    if (this.unavailableSince !== null) {
      this.unavailableMs += Date.now() - this.unavailableSince;
      this.unavailableSince = null;
    }
    await this.steer();
    this.emit('live', inst.rec);
  }

  /**
   * Points new connections at the live instances now (after the previous
   * call finished). A failure is logged: the previous steering stays, and the
   * kernel's lookup serves ports without an entry.
   */
  steer(): Promise<void> {
    const run = this.steering.then(async () => {
      if (!this.o.steer) return;
      try {
        await this.o.steer(this.live());
      } catch (e) {
        this.log('warn', 'proxy steering not updated', { err: e instanceof Error ? e.message : String(e) });
      }
    });
    this.steering = run;
    return run;
  }

  private drop(inst: Instance, why: unknown): void {
    this.log('warn', 'envoy instance dropped', { id: inst.rec.id, pid: inst.rec.pid, err: why instanceof Error ? why.message : String(why) });
    this.forget(inst);
    this.persist();
  }

  /** The instance's process is gone: waits on it end, it leaves the table, 'gone' tells the owner (once). */
  private forget(inst: Instance): void {
    inst.gone.abort();
    if (this.instances.get(inst.rec.id) !== inst) return;
    this.instances.delete(inst.rec.id);
    this.emit('gone', inst.rec);
  }

  /** Polled: an instance whose process is gone leaves at once; missing live ones are started again. */
  private check(): void {
    for (const inst of [...this.instances.values()]) {
      if (processAlive(inst.rec)) continue;
      this.forget(inst);
      if (inst.state === 'draining') continue;
      // A killed process closes its sockets only after its memory is torn down (tens of ms for Envoy):
      // its entries go now, before anything else; the set is rewritten without it below.
      if (inst.state === 'live') {
        try {
          this.o.unsteer?.(inst.rec.id);
        } catch (e) {
          this.log('warn', 'proxy steering: removing an exited Envoy', { id: inst.rec.id, err: e instanceof Error ? e.message : String(e) });
        }
      }
      this.lastExit = { code: null, signal: null, at: new Date().toISOString() };
      this.log('warn', 'envoy exited', { id: inst.rec.id, pid: inst.rec.pid });
      this.emit('exit', { id: inst.rec.id, pid: inst.rec.pid, at: this.lastExit.at });
      if (inst.state === 'live') void this.steer();
      const stableMs = inst.liveSince === null ? 0 : Date.now() - inst.liveSince;
      if (stableMs >= this.backoff.resetAfterMs) this.failures = 0;
      this.persist();
    }
    if (this.live().length === 0 && this.unavailableSince === null && this.running === 'running') this.unavailableSince = Date.now();
    if (this.running !== 'running' || this.restartsHeld || this.restartTimer || this.ensuring) return;
    if (!existsSync(this.o.workDir)) {
      // Removed under us (uninstall, a test's teardown): a new Envoy could not even write its bootstrap there.
      this.restartsHeld = 'workdir-gone';
      this.log('warn', 'the Envoy state directory is gone: exited Envoys are not restarted', { workDir: this.o.workDir });
      return;
    }
    const missing = this.o.replicas - [...this.instances.values()].filter((i) => i.state !== 'draining').length;
    if (missing <= 0) return;
    const delay = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.failures);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.running !== 'running' || this.restartsHeld) return;
      this.failures += 1;
      this.restarts += 1;
      this.ensuring = this.startInstance()
        .then(() => undefined)
        .catch((e: unknown) => this.log('warn', 'envoy restart failed', { err: e instanceof Error ? e.message : String(e) }))
        .finally(() => {
          this.ensuring = null;
        });
    }, delay);
  }

  /**
   * Planned replacement of every live instance, one at a time: a new
   * instance joins the reuseport groups and gets live (ready, configured),
   * then the old one leaves the live set and drains. Resolves when every old
   * instance is gone.
   */
  async restart(): Promise<{ replaced: number }> {
    if (this.running !== 'running') throw new SupervisorError('MESHD_PROXY_SUPERVISOR_STOPPED', 'the proxy supervisor is not running');
    await this.ensuring;
    const old = [...this.instances.values()].filter((i) => i.state === 'live');
    const retiring: Array<Promise<void>> = [];
    for (const inst of old) {
      await this.startInstance();
      retiring.push(this.retire(inst));
    }
    await Promise.all(retiring);
    this.replacements += old.length;
    return { replaced: old.length };
  }

  /**
   * Drains one instance: it leaves the live set, Envoy's graceful drain
   * discourages requests (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY) for
   * drainTimeS while its listeners still accept, then closes its listeners;
   * connections still open may finish up to drainTimeoutMs; then SIGTERM,
   * SIGKILL after 5 s.
   */
  private retire(inst: Instance): Promise<void> {
    inst.retiring ??= this.drainAndStop(inst);
    return inst.retiring;
  }

  private async drainAndStop(inst: Instance): Promise<void> {
    inst.state = 'draining';
    this.persist();
    const rec = inst.rec;
    // New connections go to the live instances from now on; this one only finishes what it has.
    await this.steer();
    try {
      await adminRequest(rec.adminSocket, '/drain_listeners?graceful&skip_exit', 'POST');
      await sleep((this.o.drainTimeS ?? 2) * 1000);
      // The graceful drain does not close the listeners by itself (skip_exit): stopping them takes the
      // instance's sockets out of the reuseport groups; what was queued on them migrates (tcp_migrate_req).
      await adminRequest(rec.adminSocket, '/drain_listeners', 'POST');
      const deadline = Date.now() + (this.o.drainTimeoutMs ?? 10_000);
      while (Date.now() < deadline && processAlive(rec)) {
        // Not the listeners' own gauges: a stopped listener's stats go with it while its connections live on.
        const open = await statSum(rec.adminSocket, /^server\.total_connections$/).catch(() => 0);
        if (open === 0) break;
        await sleep(50);
      }
      if (Date.now() >= deadline) {
        const active = await adminRequest(rec.adminSocket, '/stats?filter=cx_active|total_connections').catch(() => ({ body: '' }));
        this.log('warn', 'envoy drain timed out with connections open', { id: rec.id, stats: active.body.split('\n').filter((l) => !l.endsWith(': 0')).join('; ') });
      }
    } catch (e) {
      this.log('warn', 'envoy drain', { id: rec.id, err: e instanceof Error ? e.message : String(e) });
    }
    if (!(await signalAndWait(rec, 'SIGTERM', 5_000))) await signalAndWait(rec, 'SIGKILL', 5_000);
    this.forget(inst);
    rmSync(rec.bootstrapPath, { force: true });
    this.persist();
    this.emit('retired', rec);
  }

  status(): SupervisorStatus {
    const live = this.live();
    const first = live[0];
    const firstInst = first ? this.instances.get(first.id) : undefined;
    const state: SupervisorStatus['state'] =
      this.running === 'stopped' ? 'stopped' : this.running === 'stopping' ? 'stopping' : live.length > 0 ? 'ready' : this.running === 'starting' ? 'starting' : 'backoff';
    return {
      state,
      pid: first?.pid ?? null,
      version: this.version,
      restarts: this.restarts,
      readySince: firstInst?.liveSince ? new Date(firstInst.liveSince).toISOString() : null,
      lastExit: this.lastExit,
      instances: [...this.instances.values()].map((i) => ({
        id: i.rec.id,
        pid: i.rec.pid,
        nodeId: i.rec.nodeId,
        state: i.state,
        adopted: i.adopted,
        startedAt: i.rec.startedAt,
        liveSince: i.liveSince === null ? null : new Date(i.liveSince).toISOString(),
      })),
      replacements: this.replacements,
      unavailableMs: this.unavailableMs + (this.unavailableSince === null ? 0 : Date.now() - this.unavailableSince),
    };
  }

  /**
   * From now on no exited instance is started again (the owner is stopping or
   * leaving: an apply it still waits for must not bring one back); what runs
   * keeps running. Idempotent; cleared by nothing (a supervisor starts once).
   */
  holdRestarts(): void {
    this.restartsHeld ??= 'owner';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
  }

  private halt(): void {
    if (this.monitor) clearInterval(this.monitor);
    this.monitor = null;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
  }

  /** The agent leaves; the Envoys keep serving and stay recorded for the next agent. Idempotent. */
  async detach(): Promise<void> {
    if (this.running === 'stopped') return;
    this.running = 'stopping';
    this.halt();
    await this.ensuring;
    // An instance still starting may never be configured by anyone: stopped rather than left unconfigured.
    for (const i of [...this.instances.values()].filter((x) => x.state === 'starting')) {
      await signalAndWait(i.rec, 'SIGKILL', 2_000);
      this.instances.delete(i.rec.id);
    }
    this.persist();
    this.instances.clear();
    this.running = 'stopped';
  }

  /** Drains and stops every instance and forgets them. Idempotent. */
  async stop(): Promise<void> {
    if (this.running === 'stopped') return;
    this.running = 'stopping';
    this.halt();
    await this.ensuring;
    await Promise.all([...this.instances.values()].map((i) => this.retire(i)));
    this.instances.clear();
    this.persist();
    this.running = 'stopped';
  }
}
