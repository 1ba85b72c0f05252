/**
 * The node's flow observer: the store (a FlowRing of flows and lost-event
 * records), GetFlows' semantics (history as last/first N between since and
 * until, then follow), ServerStatus' numbers and the lost-event accounting,
 * independent of any transport. The gRPC server (observer-server.ts) and the
 * metrics hang off it; both only read.
 *
 *   const obs = new FlowObserver({ capacity: 4095, nodeName: 'node-1', version: '0.1.0' });
 *   obs.add(flows);                                   // from the parsers; never waits
 *   obs.noteLost('PERF_EVENT_RING_BUFFER', 12);       // kernel ring buffer overruns
 *   const q = obs.getFlows({ number: 20, follow: true, whitelist, blacklist }, sink);
 *   q.cancel();
 *
 * A follower reads from its own position in the ring and is never waited
 * for: when it is slower than the writer, the writer laps it and it is told
 * how many flows it lost (LostEvent, HUBBLE_RING_BUFFER), as in Hubble.
 */
import { compileFilters } from './filters.js';
import { flowTimeNs, timestampFromNs, type Flow, type LostEvent, type LostEventSource } from './flow.js';
import { FlowRing } from './ring.js';

/**
 * One slot of the store. `encoded` is the entry's GetFlowsResponse in wire form, filled by the first
 * transport that sends it (observer-server.ts) and shared by every later reader: a flow is encoded
 * once however many followers it goes to.
 */
export type StoreEntry = ({ flow: Flow; lost?: undefined } | { flow?: undefined; lost: LostEvent }) & { timeNs: bigint; encoded?: Uint8Array };

/** One GetFlowsResponse as proto-loader encodes it. */
export type FlowsResponse =
  | { response_types: 'flow'; flow: Flow; node_name: string; time: Flow['time'] }
  | { response_types: 'lost_events'; lost_events: LostEvent; node_name: string; time: Flow['time'] };

export interface FlowsSink {
  /**
   * false: the transport's buffer is full; write again after `drained()` resolves. `entry` is the
   * store entry the response was made from (absent for responses made on the way, such as a
   * follower's own lost-event report), so a transport can cache its encoding there.
   */
  write(r: FlowsResponse, entry?: StoreEntry): boolean;
  drained(): Promise<void>;
  end(): void;
}

export interface FlowsQuery {
  number?: number;
  first?: boolean;
  follow?: boolean;
  /** Wall-clock nanoseconds. */
  sinceNs?: bigint;
  untilNs?: bigint;
  whitelist?: readonly unknown[];
  blacklist?: readonly unknown[];
}

export interface ObserverStatus {
  num_flows: string;
  max_flows: string;
  seen_flows: string;
  uptime_ns: string;
  version: string;
  flows_rate: number;
}

export interface LostCounts {
  /** Events the kernel could not put in its ring buffer (reported by the datapath). */
  PERF_EVENT_RING_BUFFER: number;
  /** Flows a follower missed because the store's writer lapped it. */
  HUBBLE_RING_BUFFER: number;
  /** Events the agent dropped before the store (undecodable records, parse failures). */
  OBSERVER_EVENTS_QUEUE: number;
}

export interface FlowObserverOptions {
  capacity: number;
  nodeName: string;
  version: string;
}

export class FlowObserver {
  readonly ring: FlowRing<StoreEntry>;
  readonly startedNs = process.hrtime.bigint();
  readonly lost: LostCounts = { PERF_EVENT_RING_BUFFER: 0, HUBBLE_RING_BUFFER: 0, OBSERVER_EVENTS_QUEUE: 0 };
  private flowsSeen = 0;
  /**
   * Followers that have caught up with the store: each entry is handed to them as it is stored, in
   * the same call, so a burst larger than the ring (a reader's backlog after the process was not
   * scheduled for a while) reaches them whole. A follower whose transport is full leaves this set and
   * reads from the ring again, where the writer may lap it (and it is told so).
   */
  private readonly live = new Set<(e: StoreEntry, pos: number) => void>();
  private readonly flowListeners = new Set<(flows: readonly Flow[]) => void>();

  constructor(private readonly opts: FlowObserverOptions) {
    this.ring = new FlowRing<StoreEntry>(opts.capacity);
  }

  get nodeName(): string {
    return this.opts.nodeName;
  }

  /** Stores a batch and wakes the followers once. Listeners (metrics) see the batch first. */
  add(flows: readonly Flow[]): void {
    if (flows.length === 0) return;
    for (const l of this.flowListeners) l(flows);
    for (const f of flows) this.store({ flow: f, timeNs: flowTimeNs(f), encoded: undefined });
    this.flowsSeen += flows.length;
  }

  /** Records lost events from a source; the followers see them as a LostEvent in their stream. */
  noteLost(source: 'PERF_EVENT_RING_BUFFER' | 'OBSERVER_EVENTS_QUEUE', n: number): void {
    if (n <= 0) return;
    this.lost[source] += n;
    const now = BigInt(Date.now()) * 1_000_000n;
    this.store({ lost: { source, num_events_lost: String(n), first: timestampFromNs(now), last: timestampFromNs(now) }, timeNs: now, encoded: undefined });
  }

  private store(e: StoreEntry): void {
    const pos = this.ring.head;
    this.ring.write(e);
    for (const push of this.live) push(e, pos);
  }

  onFlows(l: (flows: readonly Flow[]) => void): () => void {
    this.flowListeners.add(l);
    return () => this.flowListeners.delete(l);
  }

  status(): ObserverStatus {
    // Hubble's flows_rate: flows per second over the last minute, from the store.
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const from = nowNs - 60_000_000_000n;
    let recent = 0;
    let oldest = nowNs;
    for (let pos = this.ring.head - 1; pos >= this.ring.tail; pos -= 1) {
      const e = this.ring.at(pos);
      if (e.timeNs < from) break;
      if (e.flow) {
        recent += 1;
        if (e.timeNs < oldest) oldest = e.timeNs;
      }
    }
    const uptimeNs = process.hrtime.bigint() - this.startedNs;
    // A store younger than a minute, or one that holds less than a minute, divides by what it covers.
    const windowS = Math.max(1, Math.min(60, Number(uptimeNs / 1_000_000_000n), Number((nowNs - oldest) / 1_000_000_000n) || 1));
    let flowsInStore = 0;
    for (let pos = this.ring.tail; pos < this.ring.head; pos += 1) if (this.ring.at(pos).flow) flowsInStore += 1;
    return {
      num_flows: String(flowsInStore),
      max_flows: String(this.ring.capacity),
      seen_flows: String(this.flowsSeen),
      uptime_ns: String(uptimeNs),
      version: this.opts.version,
      flows_rate: recent / windowS,
    };
  }

  /**
   * Runs one GetFlows request against the sink. Throws FlowFilterError (before anything is sent) for a
   * filter meshd cannot evaluate. The returned promise settles when the request is complete (not
   * following) or cancelled.
   */
  getFlows(q: FlowsQuery, sink: FlowsSink): { done: Promise<void>; cancel(): void } {
    const keep = compileFilters(q.whitelist ?? [], q.blacklist ?? []);
    let cancelled = false;
    let wake: (() => void) | null = null;
    const cancel = () => {
      cancelled = true;
      wake?.();
    };
    const inWindow = (e: StoreEntry) => (q.sinceNs === undefined || e.timeNs >= q.sinceNs) && (q.untilNs === undefined || e.timeNs <= q.untilNs);
    const wanted = (e: StoreEntry) => (e.flow ? keep(e.flow) : true) && inWindow(e);
    const toResponse = (e: StoreEntry): FlowsResponse =>
      e.flow
        ? { response_types: 'flow', flow: e.flow, node_name: this.opts.nodeName, time: e.flow.time }
        : { response_types: 'lost_events', lost_events: e.lost, node_name: this.opts.nodeName, time: timestampFromNs(e.timeNs) };

    const run = async () => {
      const number = q.number ?? 0;
      // History, collected first (references only) so that writes during a slow send do not shift it.
      const history: StoreEntry[] = [];
      const head = this.ring.head;
      if (q.first) {
        for (let pos = this.ring.tail; pos < head && (number === 0 || history.length < number); pos += 1) {
          const e = this.ring.at(pos);
          if (wanted(e)) history.push(e);
        }
      } else if (number > 0 || !q.follow || q.sinceNs !== undefined) {
        for (let pos = head - 1; pos >= this.ring.tail && (number === 0 || history.length < number); pos -= 1) {
          const e = this.ring.at(pos);
          if (wanted(e)) history.push(e);
        }
        history.reverse();
      }
      for (const e of history) {
        if (cancelled) return;
        if (!sink.write(toResponse(e), e)) await sink.drained();
      }
      if (!q.follow || cancelled) return;
      let cursor = head;
      for (;;) {
        // Catch up from the ring.
        while (cursor < this.ring.head) {
          if (cancelled) return;
          const r = this.ring.read(cursor);
          if (r === undefined) break;
          if ('lost' in r) {
            this.lost.HUBBLE_RING_BUFFER += r.lost;
            const now = timestampFromNs(BigInt(Date.now()) * 1_000_000n);
            const lost: FlowsResponse = { response_types: 'lost_events', lost_events: { source: 'HUBBLE_RING_BUFFER', num_events_lost: String(r.lost), first: now, last: now }, node_name: this.opts.nodeName, time: now };
            cursor = r.next;
            if (!sink.write(lost)) await sink.drained();
            continue;
          }
          cursor += 1;
          const e = r.item;
          if (q.untilNs !== undefined && e.timeNs > q.untilNs) return;
          if (wanted(e) && !sink.write(toResponse(e), e)) await sink.drained();
        }
        if (cancelled) return;
        // Caught up: live until the transport is full, `until` is passed, or the request is cancelled.
        const outcome = await new Promise<'full' | 'until' | 'cancelled'>((resolve) => {
          // Called from the writer (add, noteLost): never throws into it.
          const push = (e: StoreEntry, pos: number) => {
            cursor = pos + 1;
            try {
              if (q.untilNs !== undefined && e.timeNs > q.untilNs) stop('until');
              else if (wanted(e) && !sink.write(toResponse(e), e)) stop('full');
            } catch {
              stop('cancelled');
            }
          };
          const stop = (why: 'full' | 'until' | 'cancelled') => {
            this.live.delete(push);
            wake = null;
            resolve(why);
          };
          this.live.add(push);
          wake = () => {
            if (cancelled) stop('cancelled');
          };
        });
        if (outcome !== 'full') return;
        await sink.drained();
      }
    };
    const done = run().finally(() => {
      if (!cancelled) sink.end();
    });
    return { done, cancel };
  }
}

export type { LostEventSource };
