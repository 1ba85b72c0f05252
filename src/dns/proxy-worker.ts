/**
 * The DNS proxy's worker thread: the data path (sockets, parse, judge,
 * forward, reply; proxy.ts) on its own event loop and heap, away from the
 * agent's reconciles, policy computations and GC pauses. Started by
 * proxy-thread.ts with DnsWorkerData; judges with a PolicyMirror the main
 * thread keeps current after every reconcile.
 *
 * An allowed answer whose (endpoint, name) addresses the worker has not
 * seen learned goes to the main thread ('learn'), and is released when the
 * main thread says they are enforced or after proxyResponseMaxDelay; an
 * answer that repeats learned addresses (a TTL refresh, the common case) is
 * released at once and the refresh is sent without waiting. The main thread
 * sends 'forget' whenever addresses leave its FQDN cache, so a repeat of a
 * removed address is learned and enforced again before its answer goes.
 */
import { type IntervalHistogram, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { ReservedIdentity } from '../identity/reserved.js';
import { MeshdError } from '../util/errors.js';
import type { Logger, LogLevel } from '../util/log.js';
import { DnsJudge } from './dns-policy.js';
import type { DnsWorkerData, FromWorker, LearnRequest, ToWorker, WorkerStageReport } from './proxy-messages.js';
import { PolicyMirror } from './policy-mirror.js';
import { DnsProxy } from './proxy.js';

const port = parentPort;
if (!port) throw new Error('proxy-worker.js runs as a worker thread');
const data = workerData as DnsWorkerData;
const post = (m: FromWorker): void => port.postMessage(m);

/** Errors do not survive the structured clone with their codes: sent as { message, code }. */
function plain(fields: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!fields) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = v instanceof Error ? { message: v.message, ...('code' in v ? { code: v.code } : {}) } : v;
  return out;
}
const logger = (): Logger => {
  const emit = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    const f = plain(fields);
    post(f ? { t: 'log', level, msg, fields: f } : { t: 'log', level, msg });
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error'), child: () => logger() };
};
const log = logger();

const mirror = new PolicyMirror();
const judge = new DnsJudge(mirror);

/** (endpoint, name) → the addresses the main thread learned for it, as one sorted string. */
const MAX_KNOWN = 65536;
let known = new Map<string, string>();
const knownKey = (endpointId: string, name: string) => `${endpointId}\n${name}`;
const waiting = new Map<number, { resolve: () => void; req: LearnRequest; ips: string }>();
let seq = 0;

function onAnswer(endpointId: string, names: readonly string[], ips: readonly string[], ttl: number): Promise<void> | undefined {
  const req: LearnRequest = { endpointId, names: [...names], ips: [...ips], ttl };
  const joined = [...ips].sort().join(',');
  if (names.every((n) => known.get(knownKey(endpointId, n)) === joined)) {
    post({ t: 'refresh', ...req });
    return undefined;
  }
  const s = ++seq;
  return new Promise<void>((resolve) => {
    waiting.set(s, { resolve, req, ips: joined });
    post({ t: 'learn', seq: s, ...req });
  });
}

const transparentTo = (ip: string): boolean =>
  mirror.endpointByIp(ip) !== undefined ? true : data.transparent.offNode && mirror.identityOfIp(ip) !== ReservedIdentity.host;

let proxy: DnsProxy | null = null;

/** This thread's loop delay and GC pauses while stages are traced (the bench's "where the time goes"). */
let load: { loop: IntervalHistogram; gcs: number[]; obs: PerformanceObserver } | null = null;
function traceStages(p: DnsProxy): undefined {
  load?.obs.disconnect();
  const gcs: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push(e.duration);
  });
  obs.observe({ entryTypes: ['gc'] });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  load = { loop, gcs, obs };
  p.traceStages();
  return undefined;
}
function stageReport(p: DnsProxy): WorkerStageReport | null {
  const r = p.stageReport();
  const l = load;
  load = null;
  if (!l) return null;
  l.loop.disable();
  l.obs.disconnect();
  const ms = (ns: number) => Number((ns / 1e6).toFixed(3));
  const worker = { loop_p99_ms: ms(l.loop.percentile(99)), loop_max_ms: ms(l.loop.max), gc_pauses: l.gcs.length, gc_max_ms: Number(Math.max(0, ...l.gcs).toFixed(3)) };
  return r ? { ...r, worker } : null;
}

port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'policy':
      mirror.apply(m.delta);
      post({ t: 'ack', seq: m.seq });
      return;
    case 'learned': {
      const w = waiting.get(m.seq);
      if (!w) return;
      waiting.delete(m.seq);
      if (known.size >= MAX_KNOWN) known = new Map();
      for (const n of w.req.names) known.set(knownKey(w.req.endpointId, n), w.ips);
      w.resolve();
      return;
    }
    case 'forget':
      known = new Map();
      return;
    case 'call': {
      const p = proxy;
      const value = !p ? null : m.call.m === 'stats' ? p.stats() : m.call.m === 'recent' ? p.recent() : m.call.m === 'stageReport' ? stageReport(p) : traceStages(p);
      post({ t: 'result', seq: m.seq, value });
      return;
    }
    case 'stop':
      void (proxy?.stop() ?? Promise.resolve()).finally(() => port.close());
      return;
  }
});

try {
  proxy = await DnsProxy.start({
    port: data.port,
    ...(data.address6 === undefined ? {} : { address6: data.address6 }),
    judge: (f) => judge.judge(f),
    onAnswer: (v, _q, a) => (v.endpointId === null || a.ips.length === 0 ? undefined : onAnswer(v.endpointId, a.names, a.ips, a.ttl)),
    rejectRcode: data.rejectRcode,
    responseMaxDelayMs: data.responseMaxDelayMs,
    ...(data.transparent.enabled ? { transparent: transparentTo } : {}),
    ...(data.upstreamTimeoutMs === undefined ? {} : { upstreamTimeoutMs: data.upstreamTimeoutMs }),
    log,
  });
  post({ t: 'ready', ipv6: proxy.stats().ipv6 });
} catch (e) {
  post({ t: 'failed', code: e instanceof MeshdError ? e.code : 'MESHD_DNS_PROXY_BIND', message: e instanceof Error ? e.message : String(e) });
  port.close();
}
