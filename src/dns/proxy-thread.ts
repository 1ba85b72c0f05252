/**
 * The agent's handle on the DNS proxy's worker thread (proxy-worker.ts):
 * starts it, keeps its policy mirror current, answers its requests to learn
 * addresses, and restarts it on the same port when it exits unexpectedly.
 *
 *   const t = await DnsProxyThread.start({ data, policy: new PolicyMirrorSource(engine), learn, log });
 *   await t.syncPolicy();   // after each reconcile: the worker judges with what the kernel enforces
 *   await t.stats();  await t.recent();  t.forget();  await t.stop();
 *
 * Why a thread: on the agent's main loop every query waited behind reconciles, xDS, the API server's
 * events and the main heap's GC pauses (loop delay p99 ~2.5 ms, pauses up to 10 ms at 1,000 qps), which
 * set the proxy's tail latency. The worker's loop does only DNS, and its heap is small.
 *
 * Ordering: learn() is the toFQDNs path (cache, identities, ipcache, policy maps); the worker releases
 * an answer that brings new addresses only when learn()'s promise resolved, or after
 * dnsProxy.proxyResponseMaxDelay, as the proxy did on the main thread.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../util/log.js';
import type { PolicyMirrorSource } from './policy-mirror.js';
import { DnsProxyError, type DnsProxyStats, type DnsRecord } from './proxy.js';
import type { DnsCall, DnsCallResult, DnsWorkerData, FromWorker, ToWorker, WorkerStageReport } from './proxy-messages.js';

export interface DnsProxyThreadOptions {
  data: DnsWorkerData;
  policy: PolicyMirrorSource;
  /** The toFQDNs path for an answer's addresses: a promise when something is enforced, else undefined. */
  learn(endpointId: string, names: readonly string[], ips: readonly string[], ttl: number): Promise<void> | undefined;
  log: Logger;
  /** Delay before restarting a worker that exited (default 200 ms, doubling to 5 s while it keeps failing). */
  restartDelayMs?: number;
}

const WORKER_URL = new URL('./proxy-worker.js', import.meta.url);
/** The worker's heap: its queries' buffers and records, nothing of the agent's state but the policy mirror. */
const RESOURCE_LIMITS = { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 16 };
const STOP_TIMEOUT_MS = 5000;
/** A reconcile waits at most this long for the worker to take a policy delta (a stuck worker must not stall it). */
const SYNC_TIMEOUT_MS = 2000;
const MAX_RESTART_DELAY_MS = 5000;
/** A worker that ran this long before exiting is restarted after the first delay again. */
const HEALTHY_MS = 30_000;

export class DnsProxyThread {
  private worker: Worker | null = null;
  private seq = 0;
  private readonly calls = new Map<number, { resolve: (v: DnsCallResult) => void; reject: (e: unknown) => void }>();
  private readonly acks = new Map<number, () => void>();
  private stopping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private delay: number;
  private startedAt = 0;
  private ipv6 = false;
  /** Worker restarts after an unexpected exit. */
  restarts = 0;

  private constructor(private readonly o: DnsProxyThreadOptions) {
    this.delay = o.restartDelayMs ?? 200;
  }

  /** Resolves once the worker listens on the port; throws DnsProxyError (MESHD_DNS_PROXY_BIND) when it cannot. */
  static async start(o: DnsProxyThreadOptions): Promise<DnsProxyThread> {
    const t = new DnsProxyThread(o);
    await t.spawn();
    return t;
  }

  get port(): number {
    return this.o.data.port;
  }

  /** The worker's thread id (changes on every restart), or null while none runs. */
  get threadId(): number | null {
    return this.worker?.threadId ?? null;
  }

  private spawn(): Promise<void> {
    const w = new Worker(WORKER_URL, { workerData: this.o.data, resourceLimits: RESOURCE_LIMITS, stdout: false, stderr: false });
    this.worker = w;
    this.startedAt = Date.now();
    // Everything the worker judges with, before it reads its first query.
    this.post(w, { t: 'policy', seq: ++this.seq, delta: this.o.policy.full() });
    return new Promise<void>((resolve, reject) => {
      let up = false;
      w.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          up = true;
          this.ipv6 = m.ipv6;
          resolve();
        } else if (m.t === 'failed') {
          reject(new DnsProxyError('MESHD_DNS_PROXY_BIND', m.message));
        } else {
          this.onMessage(w, m);
        }
      });
      w.on('error', (e) => this.o.log.error('DNS proxy worker failed', { err: e }));
      w.on('exit', (code) => {
        if (this.worker === w) this.worker = null;
        for (const c of this.calls.values()) c.reject(new DnsProxyError('MESHD_DNS_PROXY_BIND', `DNS proxy worker exited (${code})`));
        this.calls.clear();
        for (const a of this.acks.values()) a();
        this.acks.clear();
        if (!up) return reject(new DnsProxyError('MESHD_DNS_PROXY_BIND', `DNS proxy worker exited before listening (${code})`));
        if (!this.stopping) this.restartSoon(code);
      });
    });
  }

  private restartSoon(code: number): void {
    if (Date.now() - this.startedAt >= HEALTHY_MS) this.delay = this.o.restartDelayMs ?? 200;
    this.o.log.error('DNS proxy worker exited; restarting it', { code, port: this.port, inMs: this.delay });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping) return;
      this.restarts++;
      this.spawn().then(
        () => this.o.log.info('DNS proxy worker restarted', { port: this.port }),
        (e: unknown) => this.o.log.error('DNS proxy worker did not restart', { port: this.port, err: e }),
      );
    }, this.delay);
    this.delay = Math.min(MAX_RESTART_DELAY_MS, this.delay * 2);
  }

  private post(w: Worker, m: ToWorker): void {
    w.postMessage(m);
  }

  private onMessage(w: Worker, m: FromWorker): void {
    switch (m.t) {
      case 'ack':
        this.acks.get(m.seq)?.();
        this.acks.delete(m.seq);
        return;
      case 'result':
        this.calls.get(m.seq)?.resolve(m.value);
        this.calls.delete(m.seq);
        return;
      case 'log':
        this.o.log[m.level](m.msg, m.fields);
        return;
      case 'refresh':
        void this.learn(m.endpointId, m.names, m.ips, m.ttl);
        return;
      case 'learn': {
        const seq = m.seq;
        const done = () => {
          if (this.worker === w) this.post(w, { t: 'learned', seq });
        };
        const p = this.learn(m.endpointId, m.names, m.ips, m.ttl);
        if (p) void p.then(done);
        else done();
        return;
      }
      default:
        return;
    }
  }

  /** learn() with its failures logged (the answer is released all the same, as before). */
  private learn(endpointId: string, names: readonly string[], ips: readonly string[], ttl: number): Promise<void> | undefined {
    try {
      return this.o.learn(endpointId, names, ips, ttl)?.catch((e: unknown) => this.o.log.error('toFQDNs update for a DNS answer failed; the answer is released anyway', { names, err: e }));
    } catch (e) {
      this.o.log.error('toFQDNs update for a DNS answer failed; the answer is released anyway', { names, err: e });
      return undefined;
    }
  }

  /**
   * Sends what changed in the policy since the last call; resolves when the worker judges with it, or
   * after SYNC_TIMEOUT_MS (logged: the worker is stuck, and gets the delta when it reads its messages).
   */
  syncPolicy(): Promise<void> {
    const w = this.worker;
    if (!w) return Promise.resolve(); // a restarting worker gets everything when it starts
    const delta = this.o.policy.delta();
    if (!delta) return Promise.resolve();
    const seq = ++this.seq;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.acks.delete(seq);
        this.o.log.warn('DNS proxy worker did not take the policy update in time', { port: this.port, ms: SYNC_TIMEOUT_MS });
        resolve();
      }, SYNC_TIMEOUT_MS);
      this.acks.set(seq, () => {
        clearTimeout(timer);
        resolve();
      });
      this.post(w, { t: 'policy', seq, delta });
    });
  }

  /** Addresses left the FQDN cache: the worker learns them again before releasing an answer with them. */
  forget(): void {
    if (this.worker) this.post(this.worker, { t: 'forget' });
  }

  private call(call: DnsCall): Promise<DnsCallResult> {
    const w = this.worker;
    if (!w) return Promise.reject(new DnsProxyError('MESHD_DNS_PROXY_BIND', `DNS proxy worker on port ${this.port} is not running`));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.calls.set(seq, { resolve, reject });
      this.post(w, { t: 'call', seq, call });
    });
  }

  async stats(): Promise<DnsProxyStats> {
    if (!this.worker) return { port: this.port, ipv6: this.ipv6, queries: 0, allowed: 0, rejected: 0, malformed: 0, upstreamErrors: 0, delayedPastMax: 0, tcpConnections: 0, receiveDrops: 0 };
    return (await this.call({ m: 'stats' })) as DnsProxyStats;
  }

  async recent(): Promise<DnsRecord[]> {
    return (await this.call({ m: 'recent' })) as DnsRecord[];
  }

  async traceStages(): Promise<void> {
    await this.call({ m: 'traceStages' });
  }

  /** The stage timings since traceStages(), with the worker's own loop delay and GC pauses; stops timing. */
  async stageReport(): Promise<WorkerStageReport | null> {
    return (await this.call({ m: 'stageReport' })) as WorkerStageReport | null;
  }

  /** Ends the worker as a crash would (the restart path; for tests and `meshd` diagnostics). */
  async kill(): Promise<void> {
    await this.worker?.terminate();
  }

  /** Idempotent. Queries in flight are answered by no one (clients retry). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const w = this.worker;
    if (!w) return;
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    this.post(w, { t: 'stop' });
    const timer = setTimeout(() => void w.terminate(), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}
