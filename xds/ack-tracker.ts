/**
 * What each node was sent, ACKed and NACKed, per resource type. Streams
 * report into it; the host reads `status()` (meshd status) or awaits
 * `waitFor()` (e.g. "redirect traffic to this listener only once Envoy
 * applied it").
 *
 * The tracker knows responses, not snapshots: `waitFor` takes a predicate
 * over a node's per-type status and re-evaluates it on every event.
 */
import { XdsError } from './errors.js';
import type { ResourceKind } from './type-urls.js';
import type { NodeInfo } from './watch.js';

export interface ResponseInfo {
  /** version_info (SotW) or system_version_info (delta) sent. */
  version: string;
  snapshotVersion: string;
  /** Snapshot sequence number the response came from. */
  seq: number;
  /** False when removals were held back for make-before-break: not yet the whole snapshot. */
  complete: boolean;
  nonce: string;
  resources: number;
  at: Date;
}

export interface TypeStatus {
  sent?: ResponseInfo;
  acked?: ResponseInfo & { ackedAt: Date };
  nacked?: ResponseInfo & { nackedAt: Date; message: string };
}

export interface NodeStatus {
  node: NodeInfo;
  /** Open streams of this node right now. */
  streams: number;
  types: Partial<Record<ResourceKind, TypeStatus>>;
}

interface NodeEntry {
  node: NodeInfo;
  streams: number;
  types: Map<ResourceKind, TypeStatus>;
  lastNackKey: Map<ResourceKind, string>;
}

export type AckCondition = (status: NodeStatus) => boolean | XdsError;

export class AckTracker {
  private readonly nodes = new Map<string, NodeEntry>();
  private readonly waiters = new Set<() => void>();

  private entry(node: NodeInfo): NodeEntry {
    let e = this.nodes.get(node.id);
    if (!e) {
      e = { node, streams: 0, types: new Map(), lastNackKey: new Map() };
      this.nodes.set(node.id, e);
    }
    return e;
  }

  private typeEntry(node: NodeInfo, kind: ResourceKind): TypeStatus {
    const e = this.entry(node);
    let t = e.types.get(kind);
    if (!t) {
      t = {};
      e.types.set(kind, t);
    }
    return t;
  }

  streamOpened(node: NodeInfo): void {
    const e = this.entry(node);
    e.node = node;
    e.streams++;
    this.changed();
  }

  streamClosed(node: NodeInfo): void {
    const e = this.nodes.get(node.id);
    if (e) e.streams = Math.max(0, e.streams - 1);
    this.changed();
  }

  sent(node: NodeInfo, kind: ResourceKind, info: ResponseInfo): void {
    this.typeEntry(node, kind).sent = info;
    this.changed();
  }

  acked(node: NodeInfo, kind: ResourceKind, info: ResponseInfo): void {
    this.typeEntry(node, kind).acked = { ...info, ackedAt: new Date() };
    this.changed();
  }

  /** Records a NACK; returns true when it is news (not the same version and message as the last NACK). */
  nacked(node: NodeInfo, kind: ResourceKind, info: ResponseInfo, message: string): boolean {
    this.typeEntry(node, kind).nacked = { ...info, nackedAt: new Date(), message };
    const e = this.entry(node);
    const key = `${info.version}\0${message}`;
    const news = e.lastNackKey.get(kind) !== key;
    e.lastNackKey.set(kind, key);
    this.changed();
    return news;
  }

  /**
   * Drops what is known of a node that is gone for good (its Envoy exited):
   * without it the table grows by one entry per Envoy ever replaced or
   * crashed. Not on a stream's close: a node that reconnects (an agent
   * restart) keeps its ACKs. A waiter on the node keeps waiting (its signal
   * or timeout ends it).
   */
  forget(nodeId: string): void {
    this.nodes.delete(nodeId);
  }

  /** Nodes known (streams open or not). */
  get size(): number {
    return this.nodes.size;
  }

  status(nodeId: string): NodeStatus | undefined {
    const e = this.nodes.get(nodeId);
    if (!e) return undefined;
    const types: Partial<Record<ResourceKind, TypeStatus>> = {};
    for (const [k, v] of e.types) types[k] = { ...v };
    return { node: e.node, streams: e.streams, types };
  }

  allStatus(): NodeStatus[] {
    return [...this.nodes.keys()].sort().flatMap((id) => this.status(id) ?? []);
  }

  /**
   * Resolves when `cond` returns true for the node, rejects with the XdsError
   * it returns, or with ACK_TIMEOUT / ABORTED.
   */
  waitFor(nodeId: string, cond: AckCondition, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (err?: XdsError): void => {
        this.waiters.delete(check);
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const check = (): void => {
        const s = this.status(nodeId);
        if (!s) return;
        const r = cond(s);
        if (r === true) done();
        else if (r instanceof XdsError) done(r);
      };
      const onAbort = (): void => done(new XdsError('MESHD_XDS_ABORTED', `waiting for node ${nodeId} aborted`));
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort);
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => done(new XdsError('MESHD_XDS_ACK_TIMEOUT', `node ${nodeId}: not ACKed within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      }
      this.waiters.add(check);
      check();
    });
  }

  /** Re-evaluates every waiter (also called by the server when a snapshot is set). */
  changed(): void {
    for (const w of [...this.waiters]) w();
  }
}
