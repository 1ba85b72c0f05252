/**
 * The node's flow observability as the agent runs it: parsers → store →
 * observer API, flow metrics and agent metrics, from the agent's
 * configuration (hubble.*, prometheus.*).
 *
 *   const hubble = await Hubble.start({ config, engine, epIdOf, agentMetrics });
 *   hubble.addDatapath(records);   // the datapath's ring-buffer records
 *   hubble.addHttp(records);       // Envoy access-log records
 *   // the kernel's lost-event counter (agent.datapath().eventsLost) is read every second and
 *   // reported as lost events from PERF_EVENT_RING_BUFFER
 *   await hubble.close();          // idempotent
 *
 * Parsing and storing run on the agent's thread in the callbacks that deliver
 * the records; nothing here is on the packet path or on Envoy's request path.
 */
import { join } from 'node:path';
import type { AgentConfig } from '../agent/config.js';
import type { FlowRecord } from '../datapath/endpoint/flow-events.js';
import type { PolicyEngine } from '../policy/index.js';
import type { L7FlowRecord } from '../proxy/access-log-server.js';
import { agentMetrics, FlowMetrics, serveMetrics, type AgentMetricsSource } from './metrics.js';
import { FlowObserver } from './observer.js';
import { ObserverServer } from './observer-server.js';
import { FlowParser } from './parser.js';
import { AgentResolver } from './resolver.js';

export interface HubbleOptions {
  config: AgentConfig;
  engine: PolicyEngine;
  version: string;
  epIdOf?: (endpointId: string) => number | undefined;
  workloadOf?: (endpointId: string) => { name: string; kind: string } | undefined;
  /** What the agent metrics read (prometheus.enabled). */
  agent?: Omit<AgentMetricsSource, 'observer'>;
}

export function hubbleSocketPath(config: AgentConfig): string {
  return config['hubble.socketPath'] ?? join(config.stateDir, 'hubble.sock');
}

/**
 * Turns a cumulative kernel counter of lost ring-buffer events into lost-event reports: the first
 * reading is the baseline (losses from before this agent's start are not this store's), each later
 * increase is reported once.
 *
 *   const poll = kernelLossPoller(() => datapath.metrics().eventsLost, (n) => observer.noteLost('PERF_EVENT_RING_BUFFER', n));
 *   poll();   // every second
 */
export function kernelLossPoller(read: () => bigint | undefined, report: (n: number) => void): () => void {
  let seen: bigint | undefined;
  return () => {
    let now: bigint | undefined;
    try {
      now = read();
    } catch {
      return; // the datapath is closing or not open yet: the next reading catches up
    }
    if (now === undefined) return;
    // A smaller value: the maps were re-created (counters start at 0 again).
    if (seen !== undefined && now > seen) report(Number(now - seen));
    seen = now;
  };
}

/** How often the kernel's lost-event counter is read. */
const KERNEL_LOSS_POLL_MS = 1000;

export class Hubble {
  readonly observer: FlowObserver;
  readonly parser: FlowParser;
  readonly metrics: FlowMetrics;
  private server: ObserverServer | null = null;
  private readonly closers: Array<() => Promise<void>> = [];
  private closed = false;

  private constructor(readonly opts: HubbleOptions) {
    const c = opts.config;
    this.observer = new FlowObserver({ capacity: c['hubble.eventBufferCapacity'], nodeName: c.nodeName, version: `meshd ${opts.version}` });
    this.parser = new FlowParser({
      nodeName: c.nodeName,
      version: opts.version,
      resolver: new AgentResolver({ engine: opts.engine, ...(opts.epIdOf ? { epIdOf: opts.epIdOf } : {}), ...(opts.workloadOf ? { workloadOf: opts.workloadOf } : {}) }),
    });
    this.metrics = new FlowMetrics(c['hubble.metrics.enabled']);
    if (this.metrics.handlers > 0) this.observer.onFlows((flows) => this.metrics.process(flows));
  }

  /** Starts the observer API and the metrics servers the configuration asks for; on failure nothing stays open. */
  static async start(opts: HubbleOptions): Promise<Hubble> {
    const h = new Hubble(opts);
    const c = opts.config;
    try {
      h.server = new ObserverServer({ observer: h.observer, socketPath: hubbleSocketPath(c), ...(c['hubble.listenAddress'] ? { listenAddress: c['hubble.listenAddress'] } : {}) });
      await h.server.listen();
      if (h.metrics.handlers > 0) {
        const s = await serveMetrics(h.metrics.registry, c['hubble.metrics.port']);
        h.closers.push(() => s.close());
      }
      const datapath = opts.agent?.datapath;
      if (datapath) {
        const poll = kernelLossPoller(
          () => datapath()?.eventsLost,
          (n) => h.observer.noteLost('PERF_EVENT_RING_BUFFER', n),
        );
        poll();
        const t = setInterval(poll, KERNEL_LOSS_POLL_MS);
        t.unref();
        h.closers.push(async () => clearInterval(t));
      }
      if (c['prometheus.enabled'] && opts.agent) {
        const s = await serveMetrics(agentMetrics({ ...opts.agent, observer: h.observer }), c['prometheus.port']);
        h.closers.push(() => s.close());
      }
    } catch (e) {
      await h.close();
      throw e;
    }
    return h;
  }

  addDatapath(records: readonly FlowRecord[]): void {
    this.observer.add(records.map((r) => this.parser.fromDatapath(r)));
  }

  /** Envoy access-log records, stored as one batch (a request and a response flow each). */
  addHttp(records: readonly L7FlowRecord[]): void {
    const flows = [];
    for (const r of records) flows.push(...this.parser.fromHttp(r));
    this.observer.add(flows);
  }

  /** Records the datapath or the proxy delivered that could not become flows. */
  noteUnparsed(n = 1): void {
    this.observer.noteLost('OBSERVER_EVENTS_QUEUE', n);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.server?.close();
    for (const c of this.closers) await c().catch(() => undefined);
  }
}
