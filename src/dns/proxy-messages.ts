/**
 * The messages between the agent's main thread (proxy-thread.ts) and the DNS
 * proxy's worker thread (proxy-worker.ts). Both ends are this process's own
 * code, so they are typed, not validated.
 */
import type { LogLevel } from '../util/log.js';
import type { PolicyDelta } from './policy-mirror.js';
import type { DnsProxyStats, DnsRecord, RejectResponseCode, StageReport } from './proxy.js';

/** workerData of the proxy's worker. */
export interface DnsWorkerData {
  port: number;
  address6?: string | null;
  rejectRcode: RejectResponseCode;
  responseMaxDelayMs: number;
  /** dnsProxy.enableTransparentMode, and whether resolvers off this node have a return path. */
  transparent: { enabled: boolean; offNode: boolean };
  upstreamTimeoutMs?: number;
}

/** The worker's own event-loop delay and GC pauses while stages were traced. */
export interface WorkerLoad {
  loop_p99_ms: number;
  loop_max_ms: number;
  gc_pauses: number;
  gc_max_ms: number;
}

export type WorkerStageReport = StageReport & { worker: WorkerLoad };

export type DnsCall = { m: 'stats' } | { m: 'recent' } | { m: 'traceStages' } | { m: 'stageReport' };
export type DnsCallResult = DnsProxyStats | DnsRecord[] | WorkerStageReport | null | undefined;

export type ToWorker =
  | { t: 'policy'; seq: number; delta: PolicyDelta }
  /** The answer `seq` asked to learn is enforced (or failed: logged on the main thread); release it. */
  | { t: 'learned'; seq: number }
  /** Addresses left the FQDN cache: an answer that repeats them must be learned (and enforced) again. */
  | { t: 'forget' }
  | { t: 'call'; seq: number; call: DnsCall }
  | { t: 'stop' };

export interface LearnRequest {
  endpointId: string;
  names: string[];
  ips: string[];
  ttl: number;
}

export type FromWorker =
  | { t: 'ready'; ipv6: boolean }
  | { t: 'failed'; code: string; message: string }
  | { t: 'ack'; seq: number }
  /** An answer whose addresses are new to the worker: released once 'learned' arrives (or the max delay passed). */
  | ({ t: 'learn'; seq: number } & LearnRequest)
  /** An answer that repeats what was learned: a TTL refresh, released at once. */
  | ({ t: 'refresh' } & LearnRequest)
  | { t: 'result'; seq: number; value: DnsCallResult }
  | { t: 'log'; level: LogLevel; msg: string; fields?: Record<string, unknown> };
