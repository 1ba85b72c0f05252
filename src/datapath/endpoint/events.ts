/**
 * What the endpoint datapath reports back: flow events from the meshd_events
 * ring buffer (decoded by flow-events.ts), conntrack entries and the per-CPU
 * counters. The readers deliver on the JS thread in batches; a malformed
 * record goes to onError and never stops the stream.
 *
 *   const streams = new FlowEventStreams(fds.events);
 *   const sub = streams.subscribe((records) => …, (e) => log(e));
 *   sub.close();  streams.closeAll();   // both idempotent
 */
import { native, type RingBufferReaderHandle } from '../../../native/index.js';
import { CtEntry, CtKey } from '../maps.js';
import { decodeFlowEvent, type FlowRecord } from './flow-events.js';

export type ConntrackEntry = { key: ReturnType<typeof CtKey.decode>; entry: ReturnType<typeof CtEntry.decode> };

export class FlowEventStreams {
  private readonly readers = new Set<RingBufferReaderHandle>();

  constructor(private readonly eventsFd: number) {}

  subscribe(cb: (records: FlowRecord[]) => void, onError?: (e: unknown) => void): { close(): void } {
    const reader = new native.RingBufferReader(this.eventsFd, (bufs) => {
      const out: FlowRecord[] = [];
      for (const b of bufs) {
        try {
          out.push(decodeFlowEvent(b));
        } catch (e) {
          onError?.(e);
        }
      }
      if (out.length > 0) cb(out);
    });
    this.readers.add(reader);
    return {
      close: () => {
        reader.close();
        this.readers.delete(reader);
      },
    };
  }

  closeAll(): void {
    for (const r of this.readers) r.close();
    this.readers.clear();
  }
}

/** Conntrack entries, decoded (diagnostics and tests). */
export function readConntrack(ctFd: number): ConntrackEntry[] {
  return native.mapDump(ctFd).map(([k, v]) => ({ key: CtKey.decode(k), entry: CtEntry.decode(v) }));
}
